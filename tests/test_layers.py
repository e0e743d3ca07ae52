"""The two interpreters share their run logic through the core (testbed/experiment.py), not by
copy: no run of six or more code lines stands in both sim/ and live/, word for word or in the same
shape with other names, strings and numbers (imports and docstrings aside)."""

from __future__ import annotations

import io
import keyword
import tokenize
from pathlib import Path

from testbed.scenario import REPO_ROOT

WINDOW = 6
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
_FSTRING_PARTS = {getattr(tokenize, n) for n in ("FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)


def shape_lines(source: str) -> list[tuple[str, int]]:
    """(shape, line number) of each code line: names as N, strings as S, numbers as 0, keywords and
    operators kept; import lines, lines that are a string alone (docstrings) and annotated names
    (a dataclass's fields) left out."""
    lines: dict[int, list[str]] = {}
    for t in tokenize.generate_tokens(io.StringIO(source).readline):
        if t.type in _SKIP or t.type in _FSTRING_PARTS:
            continue
        if t.type == tokenize.NAME and not keyword.iskeyword(t.string):
            s = "N"
        elif t.type == tokenize.STRING or t.type == _FSTRING_START:
            s = "S"
        elif t.type == tokenize.NUMBER:
            s = "0"
        else:
            s = t.string
        lines.setdefault(t.start[0], []).append(s)
    return [(" ".join(v), n) for n, v in sorted(lines.items())
            if v[0] not in ("import", "from") and v != ["S"] and v[:2] != ["N", ":"]]


def windows(files: list[Path], root: Path) -> dict[tuple[str, ...], str]:
    """Every run of WINDOW shaped lines in `files` -> where it first stands."""
    found: dict[tuple[str, ...], str] = {}
    for path in files:
        lines = shape_lines(path.read_text())
        for k in range(len(lines) - WINDOW + 1):
            found.setdefault(tuple(s for s, _ in lines[k:k + WINDOW]), f"{path.relative_to(root)}:{lines[k][1]}")
    return found


def test_the_check_finds_a_block_copied_with_other_names(tmp_path):
    """A block pasted with its names changed is found; one whose logic differs is not."""
    block = "\n".join(f"x{i} = f(x{i - 1}, 'a')" for i in range(1, 8))
    (tmp_path / "a.py").write_text('"""doc"""\nimport os\n' + block + "\n")
    (tmp_path / "b.py").write_text("# copy\n\n" + block.replace("x", "y").replace("'a'", "'b'") + "\nprint(1)\n")
    (tmp_path / "c.py").write_text(block.replace("x4 = f(x3, 'a')", "x4 = f(x3) + 1") + "\n")
    a, b, c = (windows([tmp_path / f"{n}.py"], tmp_path) for n in "abc")
    assert a.keys() & b.keys()
    assert not a.keys() & c.keys()


def test_no_block_of_six_lines_stands_in_both_interpreters():
    sim = windows(sorted((REPO_ROOT / "sim").rglob("*.py")), REPO_ROOT)
    live = windows(sorted((REPO_ROOT / "live").rglob("*.py")), REPO_ROOT)
    shared = sorted(f"{sim[k]} ~ {live[k]}" for k in sim.keys() & live.keys())
    assert not shared, "blocks in both sim/ and live/ (move them to the core): " + "; ".join(shared)
