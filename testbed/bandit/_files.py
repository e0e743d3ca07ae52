"""One on-disk format for every bandit file: raw arrays in an .npz (never pickled) next to a
JSON card that names the format and version, lists each array's shape and dtype, and holds the
.npz's SHA-256, so a truncated, edited or swapped file is caught before anything is used.

`path` is the .npz; its card is the same path with the suffix .json. Writes go through a
temporary file and a rename, so an interrupted save leaves the previous pair intact (the card
is renamed last, and a card that does not match its arrays is refused)."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Callable

import numpy as np

from testbed.bandit.errors import CorruptFileError, MismatchError
from testbed.cache import write_atomic


def card_path(path: Path | str) -> Path:
    return Path(path).with_suffix(".json")


def write_npz_card(path: Path | str, arrays: dict[str, np.ndarray], card: dict[str, Any]) -> None:
    """Write the arrays and their card; `card` must hold "format" and "version"."""
    path = Path(path)
    buf = io.BytesIO()
    # numpy's stubs type **kwds as its allow_pickle flag; numpy 1.26 has no such flag, so none is passed
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    data = buf.getvalue()
    full = {**card, "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            "sha256": hashlib.sha256(data).hexdigest()}
    write_atomic(path, data)
    write_atomic(card_path(path), (json.dumps(full, indent=1, sort_keys=True) + "\n").encode())


def read_npz_card(path: Path | str, fmt: str, version: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and check a pair written by `write_npz_card`; every problem is one CorruptFileError
    or MismatchError naming the file."""
    path = Path(path)
    cpath = card_path(path)
    try:
        card = json.loads(cpath.read_text())
    except FileNotFoundError:
        raise CorruptFileError(cpath, f"card not found (it is written next to {path.name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(cpath, f"card is not readable JSON ({exc})") from None
    if not isinstance(card, dict):
        raise CorruptFileError(cpath, "card is not a JSON object")
    if card.get("format") != fmt:
        what = f"is a {card['format']!r} file" if card.get("format") else "names no format"
        raise MismatchError(cpath, f"{what}, expected a {fmt!r} card")
    if card.get("version") != version:
        raise MismatchError(cpath, f"format version {card.get('version')!r}, this testbed reads {version}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptFileError(path, "not found") from None
    except OSError as exc:
        raise CorruptFileError(path, f"not readable ({exc})") from None
    if hashlib.sha256(data).hexdigest() != card.get("sha256"):
        raise CorruptFileError(path, f"contents do not match the SHA-256 in {cpath.name} (truncated, corrupt or "
                                     "replaced)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CorruptFileError(path, f"not a readable .npz ({exc})") from None
    declared = card.get("arrays")
    if not isinstance(declared, dict) or set(declared) != set(arrays):
        raise CorruptFileError(path, f"holds arrays {sorted(arrays)}, its card lists "
                                     f"{sorted(declared) if isinstance(declared, dict) else declared}")
    for k, v in arrays.items():
        want = declared[k]
        if not isinstance(want, dict):
            raise CorruptFileError(cpath, f"card entry for array {k!r} is not a table of shape and dtype")
        if list(v.shape) != want.get("shape") or str(v.dtype) != want.get("dtype"):
            raise CorruptFileError(path, f"array {k!r} is {v.dtype}{list(v.shape)}, its card says "
                                         f"{want.get('dtype')}{want.get('shape')}")
    return arrays, card


def require(path: Path | str, arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]],
            may_be_nan: tuple[str, ...] = ()) -> None:
    """Every named array is present, of the expected shape, and finite (NaN allowed in
    `may_be_nan`)."""
    for k, shape in shapes.items():
        if k not in arrays:
            raise CorruptFileError(path, f"has no array {k!r}")
        v = arrays[k]
        if v.shape != shape:
            raise MismatchError(path, f"array {k!r} has shape {list(v.shape)}, expected {list(shape)}")
        bad = np.isinf(v) if k in may_be_nan else ~np.isfinite(v)
        if v.dtype.kind == "f" and bad.any():
            raise CorruptFileError(path, f"array {k!r} holds NaN or infinite values")


Loader = TypeVar("Loader", bound=Callable[..., Any])


def card_loader(fn: Loader) -> Loader:
    """A loader of a file with a card: a card field of the wrong type or shape (the checksum covers
    the arrays, not the card) is one CorruptFileError naming the card, not a traceback."""
    @functools.wraps(fn)
    def load(path: Path | str, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(path, *args, **kwargs)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            raise CorruptFileError(card_path(path), f"a field has the wrong form ({type(exc).__name__}: {exc})") \
                from None
    return load  # type: ignore[return-value]
