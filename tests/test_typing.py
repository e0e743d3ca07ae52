"""The core and the sim type-check (STYLE.md: catch base/subclass signatures that drift apart)."""

import subprocess
import sys

from testbed.scenario import REPO_ROOT


def test_mypy_passes():
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "testbed", "sim", "cli", "live"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
