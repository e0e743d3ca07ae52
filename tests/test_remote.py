"""An Offload crosses the wire as plain data and comes back the same; a peer's bad maps are refused."""

import re

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from testbed.policies.effects import Decompress, Infer, Offload, Payload, Tokenize
from testbed.policies.remote import RemoteError, offload_from_request, offload_request
from testbed.query import VideoMeta
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER

VIDEO = VideoMeta(10.0, 30.0, 300, 320, 180, 6, (0, 150), "/tmp/v.mp4")
TOKENS = Payload("tokens", 5, 4096, 8, 16, "small", data=b"VTOK!")
MEDIA = Payload("video", 6, media=VIDEO, data=b"\x00mp4\x00\x01")


def _media_for(i, kind, data):
    assert kind == "video" and bytes(data) == MEDIA.data
    return VIDEO


@pytest.mark.parametrize("off", [
    Offload((TOKENS,), (Decompress(TOKENS), Infer("large", None, 16, "What?", ("a", "b", "c")))),
    Offload((MEDIA,), (Tokenize(VIDEO, DEFAULT_SAMPLER, False, "large"), Infer("large", None, 16, "Q", ("x", "y")))),
    Offload((MEDIA,), (Tokenize(VIDEO, KEYFRAME_SAMPLER, True, "small"), Infer("large", None, 4, "Q", ("x", "y")))),
])
def test_an_offload_round_trips_through_msgpack(off):
    meta, frames = offload_request(off)
    meta = msgpack.unpackb(msgpack.packb(meta), raw=False)  # what the edge really gets
    back = offload_from_request(meta, [memoryview(f) for f in frames], _media_for)
    for a, b in zip(back.steps, off.steps):
        if isinstance(a, Infer):
            assert (a.model, a.density, a.question, a.options, a.tokens) == (b.model, b.density, b.question,
                                                                              b.options, None)
        elif isinstance(a, Tokenize):
            assert (a.sampler, a.pipelined, a.encoder, a.media) == (b.sampler, b.pipelined, b.encoder, b.media)
        else:
            assert a.payload.data == b.payload.data and a.payload.density == b.payload.density
    assert [p.nbytes for p in back.payloads] == [p.nbytes for p in off.payloads]


def _good():
    return offload_request(Offload((TOKENS,), (Decompress(TOKENS), Infer("large", None, 16, "q", ("a", "b")))))


@pytest.mark.parametrize("mutate,message", [
    (lambda m, f: m.update(v=9), "steps version 9"),
    (lambda m, f: m["steps"].clear(), "1 to 16 steps"),
    (lambda m, f: f.append(b"x"), "1 payloads described, 2 frames"),
    (lambda m, f: m["steps"][0].update(payload=5), "payload 5 does not exist"),
    (lambda m, f: m["steps"][0].update(op="format-disk"), "op 'format-disk'"),
    (lambda m, f: m["steps"][1].update(model="huge"), "model 'huge'"),
    (lambda m, f: m["steps"][1].update(options="ab"), "wrong type"),
    (lambda m, f: m["payloads"][0].update(kind="pickle"), "kind 'pickle'"),
    (lambda m, f: m["steps"].reverse(), "needs tokens"),
    (lambda m, f: m["steps"][1].update(density=0), "step 1: 'density' is 0; it must be in [1, 4096]"),
    (lambda m, f: m["steps"][1].update(density=-1), "'density' is -1"),
    (lambda m, f: m["payloads"][0].update(frames=0), "payload 0: 'frames' is 0; it must be in [1, 4096]"),
    (lambda m, f: m["payloads"][0].update(density=10**12), "'density' is 1000000000000"),
])
def test_bad_requests_are_refused_with_one_line(mutate, message):
    meta, frames = _good()
    mutate(meta, frames)
    with pytest.raises(RemoteError) as err:
        offload_from_request(meta, frames, _media_for)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_sampler_asking_for_a_billion_frames_is_refused_before_it_runs():
    meta, frames = offload_request(Offload((MEDIA,), (Tokenize(VIDEO, DEFAULT_SAMPLER, False, "large"),
                                                      Infer("large", None, 16, "Q", ("x", "y")))))
    meta["steps"][0]["sampler"].update(kind="uniform", count=10**9)
    with pytest.raises(RemoteError, match="'count' is 1000000000; it must be in"):
        offload_from_request(meta, frames, _media_for)


@pytest.mark.parametrize("shape,payload,says", [
    ((2, 16, 32), Payload("tokens", 5, 0, 1, 16, "small"), "frames is 2, expected 1"),  # the map says 1 frame
    ((1, 16, 32), Payload("tokens", 5, 0, 1, 8, "small"), "density is 16, expected 8"),
    ((1, 16, 48), Payload("tokens", 5, 0, 1, 16, "small"), "dim (the encoder's token width) is 48, expected 32"),
])
def test_decoded_tokens_must_match_their_map_and_the_encoders_width(shape, payload, says):
    from testbed.live.real import check_tokens

    with pytest.raises(RemoteError, match=re.escape(says)):
        check_tokens(shape, payload, 32)
    check_tokens((payload.frames, payload.density, 32), payload, 32)  # as the map says: fine


_maps = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                     max_leaves=12)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_peer_map_is_an_offload_or_one_remote_error(data):
    """A peer's request maps, mutated anywhere (a field replaced by any msgpack-able value), rebuild into an
    Offload or raise RemoteError in one line; nothing else escapes."""
    meta, frames = _good()
    meta = msgpack.unpackb(msgpack.packb(meta), raw=False)
    target = data.draw(st.sampled_from([meta, meta["payloads"][0], meta["steps"][0], meta["steps"][1]]))
    key = data.draw(st.sampled_from(sorted(target)) | st.text(max_size=8))
    target[key] = data.draw(_maps)
    try:
        offload_from_request(meta, frames, _media_for)
    except RemoteError as exc:
        assert "\n" not in str(exc)
