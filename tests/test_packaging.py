"""The installable package: pyproject.toml names every package folder, a wheel holds one top-level
name (testbed; the interpreters and the command line as testbed.sim, testbed.live, testbed.cli) and the
shipped scenarios, traces and fits as package data, and a command missing an optional dependency says
which extra installs it. The slow test installs the wheel, without extras, into a fresh virtual
environment and runs `testbed sim default` from an empty folder."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from testbed.scenario import REPO_ROOT

def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_the_interpreters_and_data_are_linked_into_the_package():
    """testbed/sim, testbed/live and testbed/cli are the top-level folders (links), and testbed/_shipped/
    links the shipped scenarios and traces: what the wheel installs under the one name."""
    for folder in ("sim", "live", "cli"):
        link = REPO_ROOT / "testbed" / folder
        assert link.is_symlink() and link.resolve() == (REPO_ROOT / folder).resolve()
    for folder in ("scenarios", "traces"):
        assert (REPO_ROOT / "testbed" / "_shipped" / folder).resolve() == (REPO_ROOT / folder).resolve()
    project = _pyproject()
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["testbed*"]
    core = " ".join(project["project"]["dependencies"])
    assert not any(m in core for m in ("torch", "transformers", "decord", "pyroute2", "pyzmq"))  # the sim alone
    assert {"models", "live", "pocket", "gpu", "ray"} <= set(project["project"]["optional-dependencies"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    had_build = (REPO_ROOT / "build").exists()
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out)], capture_output=True, text=True, timeout=300, cwd=out)
    if not had_build:  # setuptools builds in the tree: leave no second copy of the package behind
        import shutil

        shutil.rmtree(REPO_ROOT / "build", ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_the_wheel_installs_one_name_and_ships_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"testbed", "vlm_edge_testbed-0.1.0.dist-info"}
    for path in ("testbed/sim/engine.py", "testbed/live/edge_server.py", "testbed/cli/main.py",
                 "testbed/_shipped/scenarios/default.toml", "testbed/_shipped/traces/profiles/paper-fitted.toml",
                 "testbed/_shipped/traces/models/pocket/pocket-video.parquet"):
        assert path in names, path
    shipped = {p.name for p in (REPO_ROOT / "scenarios").glob("*.toml")}
    assert {Path(n).name for n in names if n.startswith("testbed/_shipped/scenarios/")} == shipped
    assert any(n.startswith("testbed/_shipped/traces/backbones/backbone-") for n in names)


def test_the_default_scenario_finds_its_shipped_fit(tmp_path, monkeypatch):
    """With an empty cache, default's backbone comes from traces/backbones/ (what a torch-less install
    relies on), and it is the fit training gives."""
    from testbed.experiment import profiling_fit
    from testbed.router.calibration import scenario_calibration
    from testbed.scenario import load_scenario
    from testbed.sim.engine import _frames, load_workload

    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path))
    monkeypatch.setattr("testbed.experiment._FITS", {})
    sc = load_scenario("default")
    split = load_workload(sc).split("profile")
    cal, _ = scenario_calibration(sc, split)
    fit = profiling_fit(split, _frames(split), cal, sc.seed)
    assert fit.cached and not list(tmp_path.glob("backbones/*.npz"))


def test_a_command_missing_an_optional_module_names_its_extra(monkeypatch, capsys):
    import testbed.cli.main as cli_main

    def needs_zmq(args):
        raise ModuleNotFoundError("No module named 'zmq'", name="zmq")

    monkeypatch.setattr(cli_main, "_cmd_soak", needs_zmq)
    assert cli_main.main(["soak"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("testbed: error: this command needs the 'live' extra (missing module zmq): "
                   "pip install 'vlm-edge-testbed[live]'")


@pytest.mark.slow
def test_a_wheel_without_extras_runs_the_default_scenario_from_an_empty_folder(wheel, tmp_path):
    """pip install WHEEL (no extras) into a fresh venv, then testbed sim default from an empty folder:
    a results folder, no torch installed, and the summary of an install with torch (the shipped fit)."""
    import venv

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    pip = subprocess.run([env / "bin" / "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                         timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = tmp_path / "empty"
    work.mkdir()
    run = subprocess.run([env / "bin" / "testbed", "sim", "default", "--out", "X"], cwd=work, capture_output=True,
                         text=True, timeout=900, env={"PATH": "/usr/bin:/bin", "TESTBED_CACHE": str(tmp_path / "c")})
    assert run.returncode == 0, run.stderr[-2000:]
    (folder,) = (work / "X" / "default").iterdir()
    show = subprocess.run([env / "bin" / "pip", "show", "torch"], capture_output=True, text=True)
    assert show.returncode != 0  # not installed
    here = subprocess.run([sys.executable, "-m", "testbed.cli.main", "sim", "default", "--out", "Y"], cwd=work,
                          capture_output=True, text=True, timeout=900)
    assert here.returncode == 0, here.stderr[-2000:]
    (with_torch,) = (work / "Y" / "default").iterdir()
    assert (folder / "summary.csv").read_bytes() == (with_torch / "summary.csv").read_bytes()
