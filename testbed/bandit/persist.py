"""Saving and restoring an agent's learned state together with the run's random generator.

A run that saves after query i, loads, and continues makes the same choices as one that never
stopped: the posterior arrays are stored exactly (float64 .npz, including A^-1, so no inverse
is recomputed) and so is the generator's bit-generator state (JSON in the card).

The file pair is `path` (.npz) and its card (.json, see `_files`). `load_agent_state` restores
into an agent the caller has built for this run, and refuses a file made for another agent type,
other densities, another feature size or backbone, or other hyper-parameters, naming what
differs; a truncated or corrupt file is refused before anything changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from testbed.bandit._files import card_loader, read_npz_card, require, write_npz_card
from testbed.bandit.agents import Agent
from testbed.bandit.errors import CorruptFileError, MismatchError

FORMAT = "testbed.bandit.agent_state"
VERSION = 1
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def save_agent_state(path: Path | str, agent: Agent, rng: np.random.Generator, extra: dict[str, Any] | None = None
                     ) -> None:
    """Write the agent's state and the generator's state; `extra` (JSON-able, e.g. the query
    index reached) is stored in the card and returned by `load_agent_state`."""
    card = {"format": FORMAT, "version": VERSION, "kind": agent.kind, "config": agent.state_config(),
            "rng": rng.bit_generator.state, "extra": extra or {}}
    write_npz_card(path, agent.state_arrays(), card)


def _describe(key: str, saved: Any, here: Any) -> str:
    if key == "densities":
        return f"densities {saved} in the file, {here} in this run"
    if key == "feature_dim":
        return f"feature size {saved} in the file, {here} in this run"
    if key == "features":
        return f"made on another feature map or backbone (fingerprint {saved}, this run's is {here})"
    return f"{key} is {saved!r} in the file, {here!r} in this run"


@card_loader
def load_agent_state(path: Path | str, agent: Agent) -> tuple[np.random.Generator, dict[str, Any]]:
    """Restore a saved state into `agent` (built with the same configuration) and return the
    generator to continue with and the card's `extra`. Raises MismatchError or CorruptFileError."""
    arrays, card = read_npz_card(path, FORMAT, VERSION)
    if card.get("kind") != agent.kind:
        raise MismatchError(path, f"holds a {card.get('kind')!r} agent's state, this run's agent is {agent.kind!r}")
    saved, here = card.get("config", {}), agent.state_config()
    for key in sorted(set(saved) | set(here), key=lambda k: (k != "densities", k != "feature_dim", k)):
        if saved.get(key) != here.get(key):
            raise MismatchError(path, _describe(key, saved.get(key), here.get(key)))
    expected = agent.state_arrays()
    if set(arrays) != set(expected):
        raise CorruptFileError(path, f"holds arrays {sorted(arrays)}, a {agent.kind} state has {sorted(expected)}")
    require(path, arrays, {k: v.shape for k, v in expected.items()})
    rng = _generator(path, card.get("rng"))
    agent.set_state(arrays)
    return rng, dict(card.get("extra", {}))


def _generator(path: Path | str, state: Any) -> np.random.Generator:
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise CorruptFileError(path, f"generator state names bit generator {name!r}, expected one of "
                                     f"{list(_BIT_GENERATORS)}")
    bitgen = getattr(np.random, name)()
    try:
        bitgen.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise CorruptFileError(path, f"generator state is not valid ({exc})") from None
    return np.random.Generator(bitgen)
