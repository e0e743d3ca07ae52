"""What an edge handler receives and returns (`Request`, `Reply`), and the two strings an edge
process and its parent agree on: the line that says it listens, and its scratch folders' prefix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Mapping, Sequence

if TYPE_CHECKING:
    from typing_extensions import Buffer


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler gets. Times are this host's monotonic clock (time.monotonic())."""

    id: int
    meta: Mapping[str, Any]
    payloads: tuple[memoryview, ...]  # zero-copy views of the received frames; copy what you keep
    received_at: float
    deadline: float | None  # the latest start the client asked for; the server checks it first


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler returns: plain msgpack-able meta and binary payloads (sent without a copy)."""

    meta: Mapping[str, Any] = field(default_factory=dict)
    payloads: Sequence[Buffer] = ()


Handler = Callable[[Request], Reply]
READY = "edge listening on "
"""An edge process prints this and its endpoint once it listens."""
WORKDIR_PREFIX = "testbed-edge-"
"""A model edge's scratch folder is `<tmp>/testbed-edge-<pid>-*`: spawn_edge removes it after the edge
exits, in case it died without doing so (killed)."""
