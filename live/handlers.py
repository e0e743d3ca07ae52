"""Handlers that need no model: the link self-check, tests and benchmarks plug these into the edge
server. The real one (the large model's edge steps) comes from the live interpreter.

`probe` understands meta["op"]:
  "echo"   -> the request's meta and payloads back
  "sink"   -> {"bytes": payload bytes received, "received_at": the edge's monotonic receipt time}
  "source" -> meta["bytes"] zero bytes back (at most SOURCE_MAX)
  "sleep"  -> waits meta["seconds"] (at most SLEEP_MAX), then as "sink"
  "fail"   -> raises, to test error replies
"""

from __future__ import annotations

import time

from testbed.live.messages import Reply, Request

SOURCE_MAX = 256 * 2**20
SLEEP_MAX = 60.0


def echo(request: Request) -> Reply:
    return Reply(dict(request.meta), request.payloads)


def _sink(request: Request) -> Reply:
    return Reply({"bytes": sum(p.nbytes for p in request.payloads), "received_at": request.received_at})


def probe(request: Request) -> Reply:
    op = request.meta.get("op", "echo")
    if op == "echo":
        return echo(request)
    if op == "sink":
        return _sink(request)
    if op == "source":
        n = request.meta.get("bytes", 0)
        if not isinstance(n, int) or not 0 <= n <= SOURCE_MAX:
            raise ValueError(f"source bytes must be an integer in 0..{SOURCE_MAX}")
        return Reply({"bytes": n}, [bytes(n)])
    if op == "sleep":
        seconds = request.meta.get("seconds", 0.0)
        if not isinstance(seconds, (int, float)) or not 0 <= seconds <= SLEEP_MAX:
            raise ValueError(f"sleep seconds must be in 0..{SLEEP_MAX}")
        time.sleep(seconds)
        return _sink(request)
    if op == "fail":
        raise RuntimeError("failing on purpose (probe op 'fail')")
    raise ValueError(f"unknown probe op {op!r}")
