"""The cache's atomic writes: an entry is replaced whole or left as it was."""

from __future__ import annotations

import pytest

from testbed.cache import atomic_file, write_atomic


def test_an_entry_is_replaced_whole_or_left_as_it_was(tmp_path):
    path = tmp_path / "deep" / "entry.bin"
    write_atomic(path, b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(RuntimeError), atomic_file(path) as f:
        f.write(b"half of the sec")
        raise RuntimeError("killed while writing")
    assert path.read_bytes() == b"first"  # the old entry stands, and no temporary file is left
    assert [p.name for p in path.parent.iterdir()] == ["entry.bin"]
    with atomic_file(path) as f, atomic_file(path) as g:  # two writers of one entry: each its own file
        f.write(b"from f")
        g.write(b"from g")
    assert path.read_bytes() == b"from f"  # the last to finish wins, whole
    assert [p.name for p in path.parent.iterdir()] == ["entry.bin"]
