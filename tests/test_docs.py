"""The documentation cannot drift from the code: every `testbed` and `make` command shown in README.md,
ARCHITECTURE.md and docs/*.md parses (a code block's through the real argparse parser, an inline one's
command and flag names), every scenario it names exists, every relative link resolves, and the generated
reference pages (docs/cli.md, docs/scenario-keys.md) are what `python -m testbed.cli.reference` writes."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import pytest

from testbed.cli import reference

ROOT = Path(__file__).resolve().parent.parent
GENERATED = {ROOT / p for p in reference.pages()}
PAGES = sorted([ROOT / "README.md", ROOT / "ARCHITECTURE.md", *(ROOT / "docs").glob("*.md"),
                *(ROOT / "traces").glob("**/README.md")])
CHECKED = [p for p in PAGES if p not in GENERATED]
SHELL_BLOCKS = {"", "sh", "bash", "shell", "console"}
_TESTBED = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:\$\s+)?(?:\S*/)?(?:testbed|python3? -m cli\.main)(?=\s|$)")
_MAKE = re.compile(r"^(?:\$\s+)?make(?=\s|$)")


@dataclass(frozen=True)
class Command:
    """A command as the page shows it: where, whether it sits in a code block (full parse) or inline."""

    page: str
    line: int
    text: str
    block: bool

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def extract(page: str, text: str) -> Iterator[Command]:
    """Every `testbed ...` and `make ...` command of a Markdown text: a line of a shell code block
    (continuation lines joined, comments dropped) or an inline code span outside blocks (a span may
    run over a line break; it is numbered by its paragraph's first line)."""
    fence: str | None = None
    pending = ""
    paragraph: list[tuple[int, str]] = []

    def spans() -> Iterator[Command]:
        if paragraph:
            joined = " ".join(line for _, line in paragraph)
            for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", joined):
                span = " ".join(span.split())
                if (_TESTBED.match(span) and " " in span) or _MAKE.match(span):
                    yield Command(page, paragraph[0][0], span, False)
            paragraph.clear()

    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*(```+|~~~+)\s*(\S*)", line)
        if m and (fence is None or m.group(1).startswith(fence.lstrip("#"))):
            yield from spans()
            fence = None if fence is not None else (m.group(1) if m.group(2) in SHELL_BLOCKS else "#" + m.group(1))
            continue
        if fence is None:
            if line.strip():
                paragraph.append((number, line.strip()))
            else:
                yield from spans()
            continue
        if fence.startswith("#"):
            continue
        body = pending + line.strip()
        if body.endswith("\\"):
            pending = body[:-1] + " "
            continue
        pending = ""
        body = " ".join(re.sub(r"\s+#(\s.*)?$", "", body).split())
        if _TESTBED.match(body) or _MAKE.match(body):
            yield Command(page, number, body, True)
    yield from spans()


def _without_path_checks(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser with its input/output path checks off (a page's paths need not exist here)."""
    from testbed.argtypes import InputDir, InputFile, Output

    for action in parser._actions:
        if isinstance(action.type, (InputFile, InputDir, Output)):
            action.type = None
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _without_path_checks(sub)
    return parser


def _parsers() -> dict[str, argparse.ArgumentParser]:
    return {name: _without_path_checks(p) for name, p, _ in reference.commands()}


def _argv(text: str) -> list[str]:
    """The arguments after `testbed` (env assignments, a `$ ` prompt and the program dropped)."""
    words = shlex.split(text)
    while words and (words[0] == "$" or re.match(r"^[A-Z_][A-Z0-9_]*=", words[0])):
        words.pop(0)
    words.pop(0)
    if words[:2] == ["-m", "testbed.cli.main"]:
        words = words[2:]
    return words


def _scenario_problem(value: str) -> str | None:
    """A scenario a command names: a bare name must be scenarios/NAME.toml, a scenarios/ path must exist
    (a path elsewhere is the reader's own file)."""
    if "/" not in value and not value.endswith((".toml", ".jsonl")) and not re.fullmatch(r"[A-Z_]+", value):
        if not (ROOT / "scenarios" / f"{value}.toml").is_file():
            return f"no scenario {value!r} in scenarios/"
    elif value.startswith("scenarios/") and not (ROOT / value).is_file():
        return f"no file {value}"
    return None


def check_testbed(cmd: Command, parsers: dict[str, argparse.ArgumentParser]) -> str | None:
    """None if the command parses, else why not: a code block's through the real parser (paths need not
    exist), an inline span's subcommand and flag names (it may be a fragment or a synopsis)."""
    try:
        argv = _argv(cmd.text)
    except ValueError as exc:
        return f"cannot split: {exc}"
    if not cmd.block:
        argv = [w for w in (t.strip("[]") for t in argv) if w and w != "..."]
        if not argv:  # the program alone, named in prose
            return None
    name, i = "testbed", 0
    while i < len(argv) and f"{name} {argv[i]}" in parsers:
        name, i = f"{name} {argv[i]}", i + 1
    if name == "testbed":
        return f"no such command: testbed {argv[0] if argv else ''}".rstrip()
    parser, rest = parsers[name], argv[i:]
    if not cmd.block:
        flags = {s for a in parser._actions for s in a.option_strings}
        unknown = [w.split("=")[0] for w in rest if w.startswith("-") and w.split("=")[0].split("|")[0] not in flags]
        if unknown:
            return f"{name} has no option {unknown[0]}"
        positional = next((w for w in rest if not w.startswith("-")), None)
        first = next((a for a in parser._actions if not a.option_strings), None)
        if positional and first is not None and first.dest in ("scenario", "workload", "scenarios"):
            return _scenario_problem(positional.split("|")[0])
        return None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = parser.parse_args(rest)
    except SystemExit as exc:
        return None if exc.code == 0 else err.getvalue().strip() or f"exit {exc.code}"
    for dest in ("scenario", "workload", "scenarios"):
        values = getattr(ns, dest, None)
        for value in [values] if isinstance(values, str) else values or []:
            problem = _scenario_problem(value)
            if problem:
                return problem
    return None


def makefile() -> tuple[set[str], set[str]]:
    """The Makefile's targets and the variables it sets."""
    text = (ROOT / "Makefile").read_text()
    targets = {t for line in re.findall(r"^([A-Za-z0-9_.\- ]+):(?!=)", text, re.M) for t in line.split()}
    variables = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[?:]?=", text, re.M))
    return targets, variables


def check_make(cmd: Command, targets: set[str], variables: set[str]) -> str | None:
    """None if every target exists and every variable is one the Makefile sets (scenario=NAME: a scenario)."""
    words = [w.strip("[]") for w in shlex.split(cmd.text)[1:]]
    for w in words:
        if not w or w.startswith("-"):
            continue
        if "=" in w:
            var, value = w.split("=", 1)
            if var not in variables:
                return f"the Makefile has no variable {var}"
            if var == "scenario":
                problem = _scenario_problem(value)
                if problem:
                    return problem
        elif w not in targets:
            return f"the Makefile has no target {w}"
    return None


@pytest.fixture(scope="module")
def commands() -> list[Command]:
    return [c for p in CHECKED for c in extract(str(p.relative_to(ROOT)), p.read_text())]


def test_every_command_in_readme_and_docs_parses(commands: list[Command]) -> None:
    parsers = _parsers()
    targets, variables = makefile()
    bad = []
    for cmd in commands:
        problem = (check_make(cmd, targets, variables) if _MAKE.match(cmd.text)
                   else check_testbed(cmd, parsers))
        if problem:
            bad.append(f"{cmd}\n    -> {problem}")
    assert not bad, "commands in the documentation that do not parse:\n" + "\n".join(bad)
    # the check sees the pages' commands: blocks and inline ones, in the README and in docs/
    assert sum(c.block for c in commands) >= 40 and sum(not c.block for c in commands) >= 40
    assert {c.page for c in commands} >= {"README.md", "docs/live.md", "docs/seed-003-crop.md"}


def test_the_checks_refuse_what_does_not_parse() -> None:
    """A page with known mistakes: each is caught, and the correct commands pass."""
    page = "\n".join([
        "Run `testbed sim default --seed 3` or `testbed sim --no-such-flag`, `make sim scenario=low_bw`,",
        "`make nope`, `make sim scenario=no_such_scenario`, `testbed live [SCENARIO] [--inproc]`.",
        "```sh", "testbed sim low_bw --queries 100   # a comment", "testbed sim low_bw --queries 0",
        "OMP_NUM_THREADS=1 .venv/bin/testbed models tiny qwen2_5_vl D/small \\", "  --role large",
        "testbed models tiny no_such_family D", "testbed sim no_such_scenario", "testbed fly",
        "make test TESTWORKERS=1",
        "testbed edge --bind tcp://127.0.0.1:5555 --models tiny", "testbed edge --models tiny", "```",
        "```toml", "testbed = 'not a command'", "```"])
    found = list(extract("page.md", page))
    parsers, (targets, variables) = _parsers(), makefile()
    verdict = {c.text: (check_make(c, targets, variables) if _MAKE.match(c.text) else check_testbed(c, parsers))
               for c in found}
    ok = {"testbed sim default --seed 3", "make sim scenario=low_bw", "testbed live [SCENARIO] [--inproc]",
          "testbed sim low_bw --queries 100",
          "OMP_NUM_THREADS=1 .venv/bin/testbed models tiny qwen2_5_vl D/small --role large",
          "testbed edge --bind tcp://127.0.0.1:5555 --models tiny"}
    assert set(verdict) == ok | {"testbed sim --no-such-flag", "make nope", "make sim scenario=no_such_scenario",
                                 "testbed sim low_bw --queries 0", "testbed models tiny no_such_family D",
                                 "testbed sim no_such_scenario", "testbed fly", "make test TESTWORKERS=1",
                                 "testbed edge --models tiny"}
    assert {t for t, v in verdict.items() if v is None} == ok, verdict


def test_the_generated_reference_is_current() -> None:
    for path, text in reference.pages().items():
        on_disk = (ROOT / path).read_text() if (ROOT / path).exists() else ""
        assert on_disk == text, f"{path} is stale: regenerate it with `{reference.REGENERATE}` (make docs)"


def test_the_reference_lists_every_command_and_key() -> None:
    """Independent of the generator: each subcommand the parser accepts and each key `testbed keys`
    prints has its own section or row."""
    from testbed.cli.main import parser

    top = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    cli_md = (ROOT / reference.CLI_PAGE).read_text()
    for name in top.choices:
        assert f"\n## testbed {name}\n" in cli_md
    assert "## testbed models tiny\n" in cli_md and "`--bind`" in cli_md  # nested, and the edge's own parser
    keys_md = (ROOT / reference.KEYS_PAGE).read_text()
    for key in ("seed", "workload.kind", "network.up_mbps", "policies.quickgrasp.tau_route",
                "policies.entropy-crop.h_min_threshold"):
        assert f"| `{key}` |" in keys_md


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_relative_link_resolves() -> None:
    bad = []
    for page in PAGES:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"```.*?```", "", text, flags=re.S)):
            if re.match(r"^[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and dest.suffix == ".md":
                anchors = {_slug(h) for h in re.findall(r"^#+ (.*)$", dest.read_text(), re.M)}
                if anchor not in anchors:
                    bad.append(f"{page.relative_to(ROOT)}: {target}: no such heading")
    assert not bad, "\n".join(bad)
