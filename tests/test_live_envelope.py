"""The live envelope: round trips without copying payloads; every malformed input is one EnvelopeError
with a one-line reason, found before anything is allocated for it."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.live import envelope as env
from testbed.live.envelope import MAGIC, VERSION, Kind, Limits
from testbed.live.errors import EnvelopeError

SMALL = Limits(max_message_bytes=4096, max_header_bytes=512, max_frames=4)


def header(**fields):
    base = {"magic": MAGIC, "v": VERSION, "kind": "request", "id": 7, "sizes": [], "meta": {}}
    base.update(fields)
    return msgpack.packb({k: v for k, v in base.items() if v is not ...}, use_bin_type=True)


def test_round_trip_keeps_meta_payloads_and_deadline():
    arr = np.arange(1000, dtype=np.float32)
    frames = env.encode(Kind.REQUEST, 42, {"question": "why?", "options": ["a", "b"], "n": 3}, [b"abc", arr],
                        deadline_ms=250.0)
    msg = env.decode(frames)
    assert (msg.kind, msg.id, msg.deadline_ms) == (Kind.REQUEST, 42, 250.0)
    assert msg.meta == {"question": "why?", "options": ["a", "b"], "n": 3}
    assert bytes(msg.payloads[0]) == b"abc"
    assert np.array_equal(np.frombuffer(msg.payloads[1], dtype=np.float32), arr)
    assert msg.payload_bytes == 3 + arr.nbytes


def test_payloads_are_not_copied():
    big = bytearray(1 << 20)
    frames = env.encode(Kind.REPLY, 1, {}, [big], timing={"queue_s": 0.5, "service_s": 1})
    assert frames[1].obj is big  # encode hands the caller's buffer to ZeroMQ as it is
    msg = env.decode(frames)
    big[0] = 9
    assert msg.payloads[0][0] == 9  # decode views the received frame
    assert msg.timing == {"queue_s": 0.5, "service_s": 1.0}


def test_encode_rejects_what_cannot_travel():
    with pytest.raises(TypeError):
        env.encode(Kind.REQUEST, 1, {"x": object()})
    with pytest.raises(ValueError):
        env.encode(Kind.REQUEST, -1)
    with pytest.raises(ValueError):
        env.encode(Kind.REQUEST, 1, deadline_ms=0)


MALFORMED = {
    "no frames": ([], "malformed"),
    "empty header": ([b""], "malformed"),
    "not msgpack": ([b"\xc1\xc1"], "malformed"),
    "truncated msgpack": ([header()[:-3]], "malformed"),
    "trailing bytes": ([header() + b"\x00"], "malformed"),
    "a list": ([msgpack.packb([1, 2])], "malformed"),
    "bad magic": ([header(magic="pickle")], "malformed"),
    "old version": ([header(v=0)], "version"),
    "future version": ([header(v=2)], "version"),
    "no version": ([header(v=...)], "version"),
    "unknown kind": ([header(kind="exec")], "malformed"),
    "bool id": ([header(id=True)], "malformed"),
    "negative id": ([header(id=-1)], "malformed"),
    "unknown field": ([header(extra=1)], "malformed"),
    "sizes not a list": ([header(sizes=3)], "malformed"),
    "negative size": ([header(sizes=[-1]), b""], "malformed"),
    "fewer frames than sizes": ([header(sizes=[3, 3]), b"abc"], "length"),
    "more frames than sizes": ([header(sizes=[3]), b"abc", b"def"], "length"),
    "short frame": ([header(sizes=[10]), b"abc"], "length"),
    "long frame": ([header(sizes=[1]), b"abc"], "length"),
    "declared oversize": ([header(sizes=[10**12]), b"x"], "oversize"),
    "actual oversize": ([header(sizes=[3000, 3000]), bytes(3000), bytes(3000)], "oversize"),
    "too many frames": ([header(sizes=[1] * 5)] + [b"x"] * 5, "oversize"),
    "header too long": ([header(meta={"q": "x" * 600})], "oversize"),
    "meta not a map": ([header(meta=[1])], "malformed"),
    "bad deadline": ([header(deadline_ms=-5)], "malformed"),
    "nan deadline": ([header(deadline_ms=float("nan"))], "malformed"),
    "bad timing": ([header(timing={"queue_s": "soon"})], "malformed"),
    "huge array claim": ([b"\xdd\xff\xff\xff\xff"], "malformed"),
    "huge str claim": ([b"\xdb\xff\xff\xff\xff"], "malformed"),
    "deep nesting": ([b"\x91" * 400], "malformed"),
    "ext type": ([msgpack.packb({"magic": MAGIC, "t": msgpack.ExtType(5, b"xx")})], "malformed"),
    "timestamp": ([msgpack.packb({"magic": msgpack.Timestamp(1, 0)}, datetime=False)], "malformed"),
    "binary map key": ([msgpack.packb({b"magic": MAGIC}, use_bin_type=True)], "malformed"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_is_one_error_with_one_line(name):
    frames, code = MALFORMED[name]
    with pytest.raises(EnvelopeError) as info:
        env.decode(frames, SMALL)
    assert info.value.code == code, str(info.value)
    assert "\n" not in str(info.value) and str(info.value)


def test_error_carries_the_id_when_the_header_had_one():
    with pytest.raises(EnvelopeError) as info:
        env.decode([header(id=99, v=3)], SMALL)
    assert info.value.request_id == 99


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=600), min_size=0, max_size=6))
def test_random_frames_never_raise_anything_else(frames):
    try:
        env.decode(frames, SMALL)
    except EnvelopeError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 40))
def test_corrupted_valid_headers_never_raise_anything_else(noise, at):
    good = header(sizes=[3], meta={"q": "what", "o": [1.5, 2]})
    bad = bytearray(good)
    bad[at % len(bad):at % len(bad) + len(noise)] = noise
    try:
        env.decode([bytes(bad), b"abc"], SMALL)
    except EnvelopeError as exc:
        assert "\n" not in str(exc)
