"""Every command, fed generated bad input (flags, values, files, scenario files), answers with exit
code 2 and exactly one line on stderr naming the culprit: no traceback, nothing written.

Commands are enumerated from the argument parser, so a command added later is covered too; what a
flag accepts comes from its `type` (testbed.argtypes), so bad values are generated, not listed.
`make test` runs 100 cases per command; `pytest -m slow` 500.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import os
import warnings
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings, strategies as st

from testbed.cli.main import main, parser
from testbed.argtypes import InputDir, InputFile, Integer, Number, Output
from testbed.scenario import NetworkConfig, Scenario

FAST = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SLOW = settings(max_examples=500, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def commands() -> dict[str, argparse.ArgumentParser]:
    p = parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    out = dict(sub.choices)
    from testbed.live.edge_server import build_parser

    out["edge"] = build_parser()  # `testbed edge` hands its argv to the edge server's own parser
    return out


COMMANDS = sorted(commands())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Files the valid parts of a command line point at; tests write nothing next to them."""
    d = tmp_path_factory.mktemp("fuzz")
    files = {"dir": d / "a-folder", "file": d / "a-file.txt", "empty": d / "empty.bin", "junk": d / "junk.bin",
             "cooked": d / "cooked.txt"}
    files["dir"].mkdir()
    files["file"].write_text("not a folder\n")
    files["empty"].write_bytes(b"")
    files["junk"].write_bytes(os.urandom(2048))
    files["cooked"].write_text("0 1.0\n1 2.0\n")
    files["out"] = d / "outputs"  # where outputs go: must stay empty
    files["out"].mkdir()
    return files


def base_argv(command: str, w: dict[str, Path]) -> list[str]:
    """A command line that is valid but for what a case breaks (its required parts filled in)."""
    out = w["out"]
    return {
        "sim": ["--out", str(out / "r")], "live": ["--out", str(out / "r")], "validate": [str(w["file"])],
        "synth": [str(out / "s.parquet")], "convert-trace": [str(w["cooked"]), str(out / "c.mahi")],
        "fit-profile": ["--out", str(out / "p.toml")], "tokenize": [str(w["junk"])], "edge": ["--bind",
                                                                                              "tcp://127.0.0.1:0"],
        "record": ["default", "--out", str(out / "t.parquet")], "profile": ["--out", str(out / "p.toml")],
        "fidelity": [str(w["dir"])], "synth-streams": [str(out / "s.parquet")], "ope": [str(w["junk"]), "--agent",
                                                                                      "fixed8"],
        "pocket-workload": [str(out / "w")],
    }.get(command, [])


def _bad_value(action: argparse.Action, w: dict[str, Path]) -> st.SearchStrategy[str]:
    """Values `action` must refuse."""
    t = action.type
    words = st.sampled_from(["x", "", "ten", "1e", "--", "0x1g"])
    if isinstance(t, Integer):
        bad = [words, st.sampled_from(["1.5", "nan", "inf", "3,000"])]
        if t.lo is not None:
            bad.append(st.integers(max_value=t.lo - 1, min_value=t.lo - 10**6).map(str))
        if t.hi is not None:
            bad.append(st.integers(min_value=t.hi + 1, max_value=t.hi + 10**6).map(str))
        return st.one_of(*bad)
    if isinstance(t, Number):
        bad = [words, st.sampled_from(["nan", "inf", "-inf", "NaN"])]
        if t.ge is not None:
            bad.append(st.floats(max_value=t.ge, exclude_max=True, allow_nan=False, allow_infinity=False,
                                 min_value=t.ge - 1e6).map(repr))
        if t.gt is not None:
            bad.append(st.floats(max_value=t.gt, allow_nan=False, allow_infinity=False, min_value=t.gt - 1e6).map(repr))
        if t.le is not None:
            bad.append(st.floats(min_value=t.le, exclude_min=True, allow_nan=False, allow_infinity=False,
                                 max_value=t.le + 1e6).map(repr))
        return st.one_of(*bad)
    if isinstance(t, InputFile):
        return st.sampled_from([str(w["dir"]), str(w["dir"] / "missing.bin"), str(w["file"]) + "/x"])
    if isinstance(t, InputDir):
        return st.sampled_from([str(w["file"]), str(w["dir"] / "missing")])
    if isinstance(t, Output):
        return st.sampled_from([str(w["file"] / "x"), str(w["file"] / "deep" / "x")])
    if action.choices:
        return st.text(alphabet="abcdefghij-", min_size=1, max_size=8).filter(lambda v: v not in action.choices)
    raise LookupError


def _flag_cases(p: argparse.ArgumentParser, w: dict[str, Path]) -> list[st.SearchStrategy[tuple[str, str]]]:
    """(flag or positional name, bad value) for every argument whose bad values can be told."""
    cases = []
    for a in p._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        try:
            bad = _bad_value(a, w)
        except LookupError:
            continue
        name = a.option_strings[0] if a.option_strings else f"@{a.dest}"
        cases.append(st.tuples(st.just(name), bad))
    return cases


def _scenario_values() -> list[tuple[str, Any]]:
    """(key path, a bad value) for scenario keys: wrong types, non-finite or out-of-bound numbers."""
    out: list[tuple[str, Any]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.metadata.get("internal") or f.metadata.get("tables") or f.name == "sweep":
                continue
            tp, key = hints[f.name], f"{prefix}{f.name}"
            if dataclasses.is_dataclass(tp):
                walk(tp, key + ".")  # type: ignore[arg-type]
                out.append((key, 3))  # a number where a table goes
                continue
            if tp is float:
                out.extend([(key, "fast"), (key, math.nan), (key, math.inf), (key, [1.0])])
            elif tp is int:
                out.extend([(key, 1.5), (key, "3"), (key, True)])
            elif tp is bool:
                out.extend([(key, "yes"), (key, 1)])
            elif tp is str or get_origin(tp) is not None:
                out.append((key, 12.5))
            for k, shift in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
                if k in f.metadata:
                    v = f.metadata[k] + shift
                    out.append((key, int(v) if tp is int else float(v)))
            if get_origin(tp) is tuple and get_args(tp)[0] is str:
                out.append((key, ["no-such-name-xyz"]))
    walk(Scenario, "")
    return out


SCENARIO_VALUES = _scenario_values()
NETWORK_KEYS = {f.name for f in dataclasses.fields(NetworkConfig)}


def _scenario_file(w: dict[str, Path], case: tuple[str, Any]) -> Path:
    kind, payload = case
    path = w["dir"].parent / f"bad-{abs(hash((kind, repr(payload)))) % 10**9}.toml"
    if kind == "syntax":
        path.write_text(payload)
    elif kind == "unknown":
        path.write_text(tomli_w.dumps({"network": {payload: 1.0}}))
    else:
        key, value = payload
        node: dict[str, Any] = {}
        cur = node
        parts = key.split(".")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
        path.write_text(_toml_with_nonfinite(node))
    return path


def _toml_with_nonfinite(data: dict[str, Any]) -> str:
    """tomli_w refuses nan/inf; TOML spells them nan and inf."""
    def fix(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: fix(v) for k, v in x.items()}
        if isinstance(x, float) and not math.isfinite(x):
            return f"__{'nan' if math.isnan(x) else ('inf' if x > 0 else '-inf')}__"
        return x
    text = tomli_w.dumps(fix(data))
    for token in ("nan", "inf", "-inf"):
        text = text.replace(f'"__{token}__"', token)
    return text


def scenario_cases() -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        st.tuples(st.just("syntax"), st.sampled_from(["[network\nup_mbps = 5\n", "seed = = 1\n", "x = [1,\n"])),
        st.tuples(st.just("unknown"), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12)
                  .filter(lambda k: k not in NETWORK_KEYS)),
        st.tuples(st.just("value"), st.sampled_from(SCENARIO_VALUES)))


SCENARIO_ARG = {"sim": None, "live": None, "validate": None, "record": "workload", "fit-profile": "--scenario"}
"""Commands that read a scenario, and where it goes on their command line (None: the positional)."""


def _argv(command: str, w: dict[str, Path], case: tuple[str, Any]) -> list[str]:
    """The command line of one bad case."""
    base = base_argv(command, w)
    kind, payload = case
    if kind == "flag-unknown":
        return [command, *base, f"--{payload}"]
    if kind == "scenario":
        path = str(_scenario_file(w, payload))
        where = SCENARIO_ARG[command]
        if where is None:
            return [command, path, *[a for a in base if a != str(w["file"])]]
        if where == "workload":
            return [command, path, *base[1:]]
        return [command, *base, where, path]
    if kind == "file-content":  # an input file that exists but holds junk, or nothing
        name, junk = payload
        return _replace(command, base, name, junk)
    name, value = payload
    return _replace(command, base, name, value)


def _replace(command: str, base: list[str], name: str, value: str) -> list[str]:
    p = commands()[command]
    if name.startswith("@"):  # a positional: put the bad value where it goes
        positionals = [a for a in p._actions if not a.option_strings and not isinstance(a, argparse._HelpAction)]
        index = [a.dest for a in positionals].index(name[1:])
        flags_with_values: list[str] = []
        args: list[str] = []
        rest = list(base)
        while rest:
            a = rest.pop(0)
            if a.startswith("--"):
                flags_with_values += [a, rest.pop(0)] if rest and not rest[0].startswith("--") else [a]
            else:
                args.append(a)
        while len(args) <= index:
            args.append("x")
        args[index] = value
        return [command, *args, *flags_with_values]
    out = list(base)
    if name in out:
        i = out.index(name)
        out[i + 1] = value
    else:
        action = next(a for a in p._actions if name in a.option_strings)
        out += [name, value] * (1 if not isinstance(action.nargs, int) else 1) + (
            [value] * (action.nargs - 1) if isinstance(action.nargs, int) and action.nargs > 1 else [])
    return [command, *out]


def cases(command: str, w: dict[str, Path]) -> st.SearchStrategy[tuple[str, Any]]:
    p = commands()[command]
    options = [st.tuples(st.just("flag-unknown"), st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=2,
                                                          max_size=14).filter(lambda s: not s.startswith("-")))]
    flags = _flag_cases(p, w)
    if flags:
        options.append(st.tuples(st.just("flag"), st.one_of(*flags)))
    if command in SCENARIO_ARG:
        options.append(st.tuples(st.just("scenario"), scenario_cases()))
    inputs = [a for a in p._actions if isinstance(a.type, InputFile)]
    if inputs:
        names = [a.option_strings[0] if a.option_strings else f"@{a.dest}" for a in inputs]
        options.append(st.tuples(st.just("file-content"), st.tuples(st.sampled_from(names),
                                                                     st.sampled_from([str(w["empty"]),
                                                                                      str(w["junk"])]))))
    return st.one_of(*options)


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def check(command: str, w: dict[str, Path], case: tuple[str, Any]) -> None:
    argv = _argv(command, w, case)
    before = _files(w["out"])
    cwd_results = Path("results").exists()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        code = main(argv)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert not shown, (argv, [str(x.message) for x in shown])  # a warning would be a second line
    assert code == 2, (argv, code, err.getvalue()[-2000:])
    assert len(lines) == 1, (argv, lines)
    assert "error" in lines[0] and "Traceback" not in err.getvalue(), (argv, lines)
    assert _files(w["out"]) == before, (argv, _files(w["out"]) - before)
    assert Path("results").exists() == cwd_results, argv


def _fuzz(command: str, w: dict[str, Path], budget: settings) -> int:
    seen = []

    @budget
    @given(case=cases(command, w))
    def run(case):
        seen.append(case)
        check(command, w, case)

    run()
    return len(seen)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_bad_input_in_one_line(command, world):
    assert _fuzz(command, world, FAST) >= 100


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_bad_input_in_one_line_at_length(command, world):
    assert _fuzz(command, world, SLOW) >= 500
