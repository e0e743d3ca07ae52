"""The link's framing (live/framing.py): records round-trip through any chunking; a length over the limit
or past the budget is refused from its prefix and its bytes skipped, never kept; random bytes give
records or FramingErrors and nothing else (1,000 hypothesis cases each)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testbed.live import framing
from testbed.live.framing import Budget, FramingError, Reader

FRAMES = st.lists(st.binary(max_size=300), min_size=0, max_size=5)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    at, out = 0, []
    for c in sorted({c % (len(data) + 1) for c in cuts}):
        out.append(data[at:c])
        at = c
    return [*out, data[at:]]


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAMES, min_size=1, max_size=4), st.lists(st.integers(0, 10_000), max_size=12))
def test_records_round_trip_through_any_chunking(messages, cuts):
    stream = b"".join(framing.record(framing.pack(m)) for m in messages)
    reader = Reader(10_000)
    got = [item for chunk in chunked(stream, cuts) for item in reader.feed(chunk)]
    assert [[bytes(f) for f in framing.unpack(b, 10)] for b in got] == messages
    assert reader.pending == 0


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FRAMES, min_size=1, max_size=4), st.lists(st.integers(0, 10_000), max_size=12))
def test_uncopied_parts_write_the_same_bytes_as_one_record(messages, cuts):
    """The sender's zero-copy parts are the record byte for byte, and a reader gets the frames back
    whatever the chunking (its in-body fast path included)."""
    stream = b"".join(b"".join(bytes(p) for p in framing.parts(m)) for m in messages)
    assert stream == b"".join(framing.record(framing.pack(m)) for m in messages)
    reader = Reader(10_000)
    got = [item for chunk in chunked(stream, cuts) for item in reader.feed(chunk)]
    assert [[bytes(f) for f in framing.unpack(b, 10)] for b in got] == messages


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8))
def test_random_bytes_give_records_or_framing_errors_only(data, cuts):
    reader = Reader(500, Budget(800))
    for chunk in chunked(data, cuts):
        for item in reader.feed(chunk):
            if isinstance(item, FramingError):
                assert item.code in ("oversize", "busy") and "\n" not in str(item)
                continue
            assert len(item) <= 500
            try:
                framing.unpack(item, 8)
            except FramingError as exc:
                assert exc.code == "malformed" and "\n" not in str(exc)


def test_an_oversize_record_is_refused_from_its_prefix_and_skipped():
    reader = Reader(100)
    out = list(reader.feed(framing.PREFIX.pack(2**32 - 1)))  # the largest length the prefix can say
    assert len(out) == 1 and out[0].code == "oversize" and "4294967295 bytes" in out[0].reason
    assert reader.pending == 2**32 - 1  # to be skipped as it arrives: nothing is allocated for it
    assert list(reader.feed(bytes(1000))) == [] and reader.pending == 2**32 - 1 - 1000


def test_the_budget_counts_records_until_given_back_and_refuses_past_it():
    budget = Budget(250)
    reader = Reader(200, budget)
    one = framing.record(bytes(150))
    first = list(reader.feed(one))
    assert [len(b) for b in first] == [150] and budget.used == 150  # held until the caller gives it back
    refused = list(reader.feed(one))
    assert len(refused) == 1 and refused[0].code == "busy" and budget.used == 150
    budget.give(150)
    assert [len(b) for b in reader.feed(one)] == [150]


def test_a_strict_reader_raises_on_a_record_past_its_limit():
    reader = Reader(framing.MAX_HANDSHAKE, strict=True)
    with pytest.raises(FramingError, match="the limit is 256"):
        list(reader.feed(framing.record(bytes(257))))


def test_frame_counts_and_sizes_are_checked():
    body = framing.pack([b"ab", b"cde"])
    assert [bytes(f) for f in framing.unpack(body, 2)] == [b"ab", b"cde"]
    with pytest.raises(FramingError, match="at most 1"):
        framing.unpack(body, 1)
    with pytest.raises(FramingError, match="add up"):
        framing.unpack(body[:-1], 2)
