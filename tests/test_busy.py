"""The foreign CPU share a live run and a profile record, and the fidelity note it gives."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from testbed.live.busy import Sample, foreign_share, machine_busy_s, sample
from testbed.profiles import load_profile, mismatch_notes

STAT = "cpu  100 20 30 800 50 5 5 10 0 0\ncpu0 50 10 15 400 25 2 3 5 0 0\n"


def test_busy_seconds_count_user_nice_system_irq_softirq_steal():
    hz = os.sysconf("SC_CLK_TCK")
    assert machine_busy_s(STAT) == pytest.approx((100 + 20 + 30 + 5 + 5 + 10) / hz)  # idle 800, iowait 50 left out
    with pytest.raises(ValueError):
        machine_busy_s("intr 1 2 3\n")


def test_foreign_share_is_what_the_machine_spent_beyond_us():
    a, b = Sample(wall=10.0, machine=100.0, own=5.0), Sample(wall=12.0, machine=104.0, own=6.0)
    assert foreign_share(a, b, cpus=2) == pytest.approx((4.0 - 1.0) / (2.0 * 2))
    assert foreign_share(a, Sample(12.0, 100.5, 6.0), cpus=2) == 0.0  # never negative (rounding of ticks)
    assert foreign_share(None, b) is None and foreign_share(b, a) is None


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
def test_a_process_burning_a_cpu_shows_as_foreign_load():
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 5: pass"])
    try:
        time.sleep(0.3)
        start = sample()
        time.sleep(1.0)
        end = sample()
    finally:
        burner.kill()
        burner.wait()
    share = foreign_share(start, end)
    assert share is not None and share >= 0.6 / (os.cpu_count() or 1)  # one busy core of n, less scheduling slack


def test_fidelity_notes_a_busy_profile_or_run(tmp_path):
    path = tmp_path / "p.toml"
    stage = '{size = [0.0, 1.0], seconds = [0.0, 0.001]}'
    stages = "\n".join(f"{s} = {stage}" for s in ("decode", "seek", "preprocess", "encode", "prefill", "generate",
                                                   "merge", "compress", "decompress"))
    path.write_text(f'[meta]\nschema_version = 1\nname = "p"\nprovenance = "measured:h:tiny@cpu"\n'
                    f'[meta.measured]\nlocal_device = "cpu X"\nforeign_cpu_share = 0.4\n'
                    f'[local]\ndescription = "l"\n{stages}\n[edge]\ndescription = "e"\n{stages}\n')
    profile = load_profile(path)
    notes = mismatch_notes(profile, {"local_device": "cpu X", "foreign_cpu_share": 0.02})
    assert len(notes) == 1 and "40% of this machine's CPUs during the profiling of p" in notes[0]
    notes = mismatch_notes(profile, {"local_device": "cpu X", "foreign_cpu_share": 0.5})
    assert any("50%" in n and "the live run" in n for n in notes)
