"""Generated media shared by concurrent runs: each file is made once, under a lock, never read half-written,
and a failed make leaves nothing behind."""

import subprocess
import sys
import textwrap

import pytest

from testbed.live.videos import made_once
from testbed.errors import TestbedError

MAKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from testbed.live.videos import made_once

    def make(tmp):
        with open(sys.argv[2], "a") as log:
            log.write("made\\n")
        tmp.write_text("half")
        time.sleep(0.5)  # a reader now would see half a file, were it at the final name
        tmp.write_text("whole")

    print(made_once(Path(sys.argv[1]), make).read_text())
""")


def test_two_processes_make_a_shared_file_once_and_both_read_it_whole(tmp_path):
    target, log = tmp_path / "cache" / "clip.mp4", tmp_path / "log"
    procs = [subprocess.Popen([sys.executable, "-c", MAKER, str(target), str(log)], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["whole", "whole"]
    assert log.read_text() == "made\n"  # the second waited for the first, then found the file
    assert sorted(p.name for p in target.parent.iterdir()) == [".clip.mp4.lock", "clip.mp4"]  # no temporary


def test_a_failed_make_leaves_no_file_and_no_temporary(tmp_path):
    def fail(tmp):
        tmp.write_bytes(b"partial")
        raise TestbedError("ffmpeg could not make clip.mp4")

    with pytest.raises(TestbedError):
        made_once(tmp_path / "clip.mp4", fail)
    assert [p.name for p in tmp_path.iterdir()] == [".clip.mp4.lock"]
    assert made_once(tmp_path / "clip.mp4", lambda tmp: tmp.write_text("ok")).read_text() == "ok"  # a retry makes it
