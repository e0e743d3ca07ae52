"""live/ type-checks (the edge server's handler and the client's API are what the interpreter builds on)."""

import subprocess
import sys

from testbed.scenario import REPO_ROOT


def test_mypy_passes_on_live():
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "live"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
