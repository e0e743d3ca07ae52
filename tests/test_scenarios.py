"""Scenario files validate; bad keys, types and files fail with one line naming the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from testbed.cli.main import main
from testbed.errors import ConfigError
from testbed.scenario import REPO_ROOT, load_scenario

FILES = sorted((REPO_ROOT / "scenarios").glob("*.toml"))


def test_there_are_the_issue_scenarios():
    names = {p.stem for p in FILES}
    assert {"default", "low_bw", "high_rtt", "contention", "sweep_uplink_tau", "trace_hsdpa", "trace_fcc",
            "trace_puffer"} <= names


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_scenario_validates(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,path,hint", [
    ("[network]\nup_mbs = 5.0\n", "network.up_mbs", "allowed here: down_mbps"),
    ("[netwrk]\nup_mbps = 5.0\n", "netwrk", "allowed here"),
    ("[network]\nup_mbps = 'fast'\n", "network.up_mbps", "expected a number"),
    ("[network]\nup_mbps = -1.0\n", "network.up_mbps", "must be > 0"),
    ("[arrivals]\nkind = 'bursty'\n", "arrivals.kind", "'closed' | 'poisson'"),
    ("[policies]\nrun = ['quickgrasp-fixed17']\n", "policies.run", "quickgrasp-fixed16"),
    ("[sweep]\n'network.up' = [1.0]\n", "sweep.network.up", "not a key path"),
    ("[sweep]\n'network.up_mbps' = [1.0, 'x']\n", "sweep.network.up_mbps", "expected a number"),
    ("[workload]\nbenchmarks = ['mvbench', 'kinetics']\n", "workload.benchmarks", "allowed: mvbench"),
    ("[policies]\ntau_route = 0.5\n", "policies.tau_route", "a table per policy with its knobs"),
    ("[policies.quickgrasp-fixed16]\ntau = 0.5\n", "policies.quickgrasp-fixed16.tau",
     "allowed here: target_accuracy, target_local_share, tau_route"),
    ("[policies.quickgrasp-fixed16]\ntau_route = 1.5\n", "policies.quickgrasp-fixed16.tau_route", "in [0, 1]"),
    ("[policies]\nrun = ['device-native']\n[policies.nosharing]\ntau_route = 0.5\n", "policies.nosharing",
     "neither run nor a baseline"),
    ("[policies]\nbaselines = ['foo']\n", "policies.baselines", "unknown policy 'foo'"),
    ("[workload]\nkind = 'manifest'\n", "workload.path", "required"),
    ("[workload]\nqueries_per_benchmark = 100000000\n", "workload.queries_per_benchmark", "in [10, 100000]"),
    ("[arrivals]\nclients = 1000000000\n", "arrivals.clients", "in [1, 10000]"),
    ("[policies]\nrun = " + str(["device-native"] * 10_000) + "\n", "policies.run",
     "'device-native' is named 10000 times"),
    ("replications = 1\n", "replications", "at least 2"),
])
def test_bad_scenarios_name_the_key(tmp_path, text, path, hint):
    with pytest.raises(ConfigError) as err:
        load_scenario(str(_write(tmp_path, text)))
    assert f"bad.toml: {path}" in str(err.value) and hint in str(err.value)


def test_missing_files_are_one_line_errors(tmp_path, capsys):
    assert main(["sim", "no_such_scenario"]) == 2
    assert "available: " in capsys.readouterr().err
    p = _write(tmp_path, "[nodes]\nprofile = 'nope.toml'\n")
    assert main(["validate", str(p)]) == 2
    assert "file not found" in capsys.readouterr().err
    p = _write(tmp_path, "[workload]\nkind = 'trace'\npath = 'nope.parquet'\n")
    assert main(["sim", str(p)]) == 2
    assert "trace file not found" in capsys.readouterr().err


def test_cli_error_is_one_line_without_traceback(tmp_path):
    p = _write(tmp_path, "[network]\nup_mbs = 5.0\n")
    proc = subprocess.run([sys.executable, "-m", "testbed.cli", "sim", str(p)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "network.up_mbs" in proc.stderr


def test_invalid_toml_is_reported(tmp_path, capsys):
    p = _write(tmp_path, "[network\nup_mbps = 5\n")
    assert main(["validate", str(p)]) == 2
    assert "invalid TOML" in capsys.readouterr().err


def test_bytes_that_are_not_utf8_and_an_empty_scenario_are_one_line_errors(tmp_path, capsys):
    bad = b'description = "caf\xe9"\n'  # Latin-1, not UTF-8
    (tmp_path / "latin.toml").write_bytes(bad)
    (tmp_path / "profile.toml").write_bytes(bad)
    (tmp_path / "trace.mahi").write_bytes(b"1\n2\n\xff\xfe\n")
    (tmp_path / "empty.toml").write_text("")
    (tmp_path / "uses.toml").write_text("[nodes]\nprofile = 'profile.toml'\n")
    (tmp_path / "link.toml").write_text("[network]\nup_trace = 'trace.mahi'\n")
    for name, says in (("latin.toml", "not UTF-8"), ("uses.toml", "not UTF-8"), ("link.toml", "not a mahimahi trace"),
                       ("empty.toml", "an empty scenario")):
        proc = subprocess.run([sys.executable, "-m", "testbed.cli", "validate", str(tmp_path / name)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (name, proc.stderr)
        assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr and says in proc.stderr, name


def test_knobs_reach_the_policy_and_show_in_the_resolved_scenario(tmp_path):
    from testbed.scenario import resolved_toml

    p = _write(tmp_path, "[policies]\nrun = ['quickgrasp-fixed8', 'nosharing']\n"
                         "[policies.quickgrasp-fixed8]\ntau_route = 0.7\n")
    sc = load_scenario(str(p))
    assert sc.policies.knobs_for("quickgrasp-fixed8").tau_route == 0.7
    assert sc.policies.knobs_for("nosharing").tau_route == 0.6  # the default, filled in
    text = resolved_toml(sc)
    assert "[policies.quickgrasp-fixed8]\ntau_route = 0.7" in text and "[policies.nosharing]\ntau_route = 0.6" in text
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert load_scenario(str(again)).policies == sc.policies


def test_the_json_schema_accepts_every_shipped_scenario_and_refuses_bad_values(tmp_path):
    """Editors check scenario files against `testbed schema`; it must agree with the loader."""
    import json
    import tomllib

    import jsonschema

    assert main(["schema", "--out", str(tmp_path / "s.json")]) == 0
    schema = json.loads((tmp_path / "s.json").read_text())
    for path in FILES:
        jsonschema.validate(tomllib.loads(path.read_text()), schema)
    for bad in ({"network": {"up_mbps": -1.0}}, {"network": {"up_mbs": 5.0}}, {"seed": -3},
                {"arrivals": {"kind": "bursty"}}, {"network": {"loss": 1.0}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


@pytest.mark.parametrize("argv, hint", [
    (["sim", "lowbw"], "did you mean 'low_bw'?"),
    (["simm", "default"], "did you mean 'sim'?"),
])
def test_a_misspelt_scenario_or_command_names_the_closest(argv, hint, capsys):
    from testbed.cli.main import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit for a bad command
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert hint in err and len(err.strip().splitlines()) == 1


def test_a_misspelt_key_or_policy_names_the_closest(scenario_factory):
    with pytest.raises(ConfigError) as err:
        scenario_factory({"netwrk": {"up_mbps": 3.0}})
    assert "did you mean 'network'?" in err.value.message
    with pytest.raises(ConfigError) as err:
        scenario_factory({"policies": {"run": ["quickgrap"], "baselines": []}})
    assert "did you mean 'quickgrasp'?" in err.value.message
    with pytest.raises(ConfigError) as err:
        scenario_factory({"network": {"zzz": 1}})
    assert "did you mean" not in err.value.message  # nothing close: no guess


def test_validate_refuses_a_missing_manifest_and_says_what_it_counts(tmp_path, capsys):
    p = _write(tmp_path, "[workload]\nkind = 'manifest'\npath = 'nope.jsonl'\n")
    assert main(["validate", str(p)]) == 2
    assert "workload.path: no manifest file" in capsys.readouterr().err
    assert main(["validate", str(REPO_ROOT / "scenarios" / "sweep_uplink_tau.toml")]) == 0
    assert "(a sweep of 15 runs, one per grid point)" in capsys.readouterr().out


def test_keys_shows_table_names_as_text(capsys):
    assert main(["keys"]) == 0
    out = capsys.readouterr().out
    assert "camera streams ([stream])" in " ".join(out.split()) and "()" not in out
