"""The package type-checks with no untyped definitions (pyproject.toml's [tool.mypy]): the core, the
interpreters and the command line, as `mypy -p testbed` sees them through the package's links."""

import subprocess
import sys

from testbed.scenario import REPO_ROOT


def test_mypy_passes():
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "-p", "testbed"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
