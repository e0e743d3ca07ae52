"""Errors of the live transport, edge server and link shaping. Every one a user or a peer can cause
is a TestbedError, so the CLI prints it as one line (exit code 2)."""

from __future__ import annotations

from testbed.errors import TestbedError
from testbed.policies.effects import EdgeUnavailable

__all__ = ["EdgeError", "EdgeUnavailable", "EnvelopeError"]  # EdgeUnavailable: the core's one class


class EnvelopeError(TestbedError):
    """A message that is not a well-formed envelope: bad msgpack, magic, version, kind, id, sizes,
    or more bytes than the receiver accepts. `code` names the class of problem for error replies
    ("malformed", "version", "oversize", "length"); `request_id` is the id when the header held one."""

    def __init__(self, reason: str, code: str = "malformed", request_id: int | None = None) -> None:
        self.reason = reason
        self.code = code
        self.request_id = request_id
        super().__init__(reason)


class EdgeError(TestbedError):
    """The edge answered with an error: the request was malformed or its handler failed.
    `code` is the edge's error code, the message its one-line reason."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"edge error ({code}): {reason}")


class ShapingError(TestbedError):
    """Link shaping could not be set up as asked (a backend not available here, bad link values)."""
