"""An edge server in a child process: started (inside a network namespace when asked), awaited
until it listens, and stopped with a clean drain; its scratch folder removed even if it was killed."""

from __future__ import annotations

import contextlib
import selectors
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Sequence

from testbed.live.messages import READY, WORKDIR_PREFIX
from testbed.errors import TestbedError


@dataclass
class EdgeProcess:
    """An edge server in a child process (spawn_edge)."""

    proc: subprocess.Popen[bytes]
    endpoint: str
    _stderr: deque[str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident set size of the edge process, from /proc."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.proc.pid}")

    def stderr_tail(self) -> str:
        return "".join(self._stderr)


@contextlib.contextmanager
def spawn_edge(bind: str, handler: str = "testbed.live.handlers:probe", *, netns_name: str | None = None,
               max_queue: int = 8, workers: int = 1, extra_args: Sequence[str] = (), ready_timeout_s: float = 30.0,
               stop_timeout_s: float = 10.0) -> Iterator[EdgeProcess]:
    """Run `python -m testbed.live.edge_server` in a child (inside `netns_name` when given) and wait until it
    listens. On exit: SIGTERM, a clean drain, SIGKILL only if it overstays `stop_timeout_s`. The child
    also stops when this process dies (its stdin closes). Raises TestbedError if it does not start."""
    cmd = [sys.executable, "-m", "testbed.live.edge_server", "--bind", bind, "--handler", handler, "--max-queue",
           str(max_queue), "--workers", str(workers), "--stop-on-stdin-eof",
           *(["--netns", netns_name] if netns_name else []), *extra_args]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tail: deque[str] = deque(maxlen=40)
    assert proc.stdout is not None and proc.stderr is not None
    drain = threading.Thread(target=_collect, args=(proc.stderr, tail), daemon=True)
    drain.start()
    try:
        endpoint = _wait_ready(proc, ready_timeout_s, tail)
        yield EdgeProcess(proc, endpoint, tail)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        drain.join(timeout=1.0)
        proc.stderr.close()
        _remove_scratch(proc.pid)


def _remove_scratch(pid: int) -> None:
    """The scratch folder of a model edge that is gone (a killed one could not remove its own)."""
    import shutil
    import tempfile

    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{pid}-*"):
        shutil.rmtree(path, ignore_errors=True)


def _collect(pipe: Any, tail: deque[str]) -> None:
    for raw in iter(pipe.readline, b""):
        tail.append(raw.decode(errors="replace"))


def _wait_ready(proc: subprocess.Popen[bytes], timeout_s: float, tail: deque[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline().decode(errors="replace")
            if line.startswith(READY):
                return line[len(READY):].split()[0]
            if not line:  # EOF: the child exited
                proc.wait()
                time.sleep(0.05)  # let the stderr reader catch the last line
                raise TestbedError(f"edge exited with code {proc.returncode}: {''.join(tail).strip() or 'no output'}")
    raise TestbedError(f"edge did not start listening within {timeout_s:g} s")
