"""The local node's EdgeLink over ZeroMQ: an Offload goes to the edge as a request (its payload
bytes as frames, its steps as plain maps) and its answer comes back with the edge's stage times.

Time is split into uplink, edge queue, edge compute and downlink. On one host (the shaped link's
two namespaces share one monotonic clock, checked by boot id) the edge's receipt time splits the
round trip exactly; across hosts the transfer time (round trip minus the edge's queue and service
time) is split in proportion to what each direction should take on the configured link.
An edge that is down, busy, late or answers with an error raises EdgeUnavailable into the policy,
which falls back to the device; the time waited is booked as edge queue.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from collections.abc import Callable

import numpy as np

from testbed.live.client import EdgeClient
from testbed.live.edge_node import boot_id
from testbed.live.errors import EdgeError, EnvelopeError
from testbed.live.real import RealInterpreter
from testbed.policies.effects import EdgeUnavailable, Inference, Offload
from testbed.policies.remote import offload_request
from testbed.ledger import Run, fallback_key

Split = Callable[[int, int], float]
"""(bytes up, bytes down) -> the share of the transfer time the uplink takes."""


def rate_split(up_mbps: float, down_mbps: float) -> Split:
    def share(up: int, down: int) -> float:
        t_up, t_down = up / up_mbps, down / down_mbps
        return t_up / (t_up + t_down) if t_up + t_down > 0 else 0.5
    return share


class ZmqEdge:
    """Carries Offloads to an edge server through `client`, at most `timeout_s` each."""

    def __init__(self, client: EdgeClient, timeout_s: float, split: Split) -> None:
        self.client, self.timeout_s, self.split = client, timeout_s, split
        self.boot_id = boot_id()

    def offload(self, interp: RealInterpreter, off: Offload, run: Run) -> Inference:
        # a media payload travels as the file's bytes (read here unless a Crop already holds them);
        # the copy keeps the same media object, which is how the Offload's Tokenize step names it
        payloads = tuple(replace(p, data=Path(p.media.path).read_bytes()) if p.media is not None and p.data is None
                         else p for p in off.payloads)
        offload, frames = offload_request(Offload(payloads, off.steps))
        meta = {"query_id": run.request_id, "offload": offload}
        t0 = time.monotonic()
        try:
            resp = self.client.request(meta, frames, timeout_s=self.timeout_s)
        except (EdgeUnavailable, EdgeError, EnvelopeError) as exc:
            with interp.lock:
                waited = time.monotonic() - t0
                run.ledger.edge_queue_s += waited
                run.ledger.bytes_up += sum(len(f) for f in frames)
                run.ledger.stage(fallback_key(run.ledger.round_trips), waited)
            raise EdgeUnavailable(f"edge did not answer: {exc}", getattr(exc, "reason", "unavailable")) from None
        m = resp.meta
        queue_s = float(resp.timing.get("queue_s", 0.0)) + float(m.get("edge_queue_s", 0.0))
        service_s = float(resp.timing.get("service_s", 0.0))
        edge_s = max(0.0, service_s - float(m.get("edge_queue_s", 0.0)))
        rt = resp.round_trip_s
        if m.get("boot_id") == self.boot_id and "received_at" in m:
            up = max(0.0, float(m["received_at"]) - resp.sent_at)
            down = max(0.0, rt - up - float(resp.timing.get("queue_s", 0.0)) - service_s)
        else:
            transfer = max(0.0, rt - float(resp.timing.get("queue_s", 0.0)) - service_s)
            up = transfer * self.split(resp.request_bytes, resp.reply_bytes)
            down = transfer - up
        with interp.lock:
            ledger = run.ledger
            ledger.bytes_up += resp.request_bytes
            ledger.bytes_down += resp.reply_bytes
            ledger.uplink_s += up
            ledger.downlink_s += down
            ledger.edge_queue_s += queue_s
            ledger.edge_s += edge_s
            for key, seconds in dict(m.get("stages", {})).items():
                ledger.stage(str(key), float(seconds))
            if m.get("frames"):
                ledger.frames, ledger.decoded = int(m["frames"]), int(m.get("decoded", 0))
            ledger.edge_prefill_tokens += int(m.get("prefill_tokens", 0))
        roi = m.get("roi")
        if roi is not None and (not isinstance(roi, list) or len(roi) != 4 or not all(isinstance(v, int) for v in roi)):
            raise EdgeUnavailable(f"edge answered with a malformed region of interest {roi!r}")
        rois = m.get("rois") or []
        if not isinstance(rois, list) or not all(isinstance(r, list) and len(r) == 5
                                                 and all(isinstance(v, int) for v in r) for r in rois):
            raise EdgeUnavailable(f"edge answered with malformed regions {rois!r}")
        logits = np.asarray(m["logits"], dtype=np.float64)
        return Inference(str(m.get("model", "large")), logits,  # type: ignore[arg-type]
                         roi=tuple(roi) if roi is not None else None,  # type: ignore[arg-type]
                         rois=tuple((r[0], tuple(r[1:])) for r in rois))  # type: ignore[misc]
