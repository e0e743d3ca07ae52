"""The real tokenizer on videos made with ffmpeg and on clips no one here encoded."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import decord
from testbed.cli.main import main
from testbed.models.encoder import make_encoder, tiny_encoder
from testbed.tokenizer.decode import decode, iter_frames_decord, iter_keyframes
from concurrent.futures import ThreadPoolExecutor

from testbed.tokenizer.pipeline import Tokenizer, _pipelined, tokenize
from testbed.tokenizer.preprocess import preprocess
from testbed.tokenizer.sampling import DEFAULT_SAMPLER, KEYFRAME_SAMPLER, Sampler, fps_indices, sample_indices
from testbed.tokenizer.video import VideoError, probe
from tests.videos import ffmpeg_frames, psnr


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder()


def test_probe_reads_the_gop(videos):
    m = probe(videos["long"])
    assert (m.n_frames, m.fps, m.width, m.height) == (18000, 30.0, 320, 180)
    assert m.keyframes == tuple(range(0, 18000, 150))
    assert probe(videos["medium"]).keyframes == tuple(range(0, 3600, 150))
    assert probe(videos["single_key"]).keyframes == (0,)


@pytest.mark.parametrize("name", ["bikes", "bigbuckbunny", "long"])
def test_keyframes_agree_with_decord(videos, name):
    """PyAV packet flags (our probe) and decord's index are independent readings of one container."""
    assert list(probe(videos[name]).keyframes) == list(decord.VideoReader(str(videos[name])).get_key_indices())


def test_algorithm_1_on_real_files(videos):
    def alg1(name):
        m = probe(videos[name])
        return m, sample_indices(m.n_frames, m.fps, m.keyframe_array, KEYFRAME_SAMPLER)

    m, idx = alg1("long")  # 120 keyframes: use them all
    assert idx.tolist() == list(m.keyframes)
    m, idx = alg1("medium")  # 24 keyframes < N_min: 1 FPS by design (120 s -> 120 frames)
    assert idx.tolist() == fps_indices(3600, 30.0, 1.0, 64, 512).tolist() and len(idx) == 120
    m, idx = alg1("clip")  # 60 frames < N_min: every frame
    assert idx.tolist() == list(range(60))
    m, idx = alg1("bikes")  # 250 frames, 6 scene-cut keyframes: fixed-rate fallback, clamped to 64
    assert len(idx) == 64
    m, idx = alg1("bigbuckbunny")  # one keyframe
    assert m.keyframes == (0,) and len(idx) == 64


@pytest.mark.parametrize("name,which", [("medium", "fps"), ("medium", "keyframes"), ("bikes", "fps"),
                                        ("bikes", "keyframes"), ("bigbuckbunny", "fps")])
def test_decoded_frames_match_ffmpeg(videos, name, which):
    m = probe(videos[name])
    idx = (list(m.keyframes) if which == "keyframes"
           else sample_indices(m.n_frames, m.fps, m.keyframe_array, Sampler("uniform", count=9)).tolist())
    ours = decode(videos[name], m, idx)
    ref = ffmpeg_frames(videos[name], idx, m.width, m.height)
    assert ours.shape == ref.shape
    assert psnr(ours, ref) > 40


def test_keyframe_path_equals_decord(videos):
    m = probe(videos["long"])
    a = np.concatenate(list(iter_keyframes(videos["long"], m, m.keyframes[:20], 8)))
    b = np.concatenate(list(iter_frames_decord(videos["long"], list(m.keyframes[:20]), 8)))
    assert np.array_equal(a, b)


BAD = ["truncated", "random", "empty", "audio_only"]


@pytest.mark.parametrize("name", BAD)
def test_bad_files_raise_the_documented_error(videos, name, encoder):
    with pytest.raises(VideoError) as err:
        tokenize(videos[name], KEYFRAME_SAMPLER, encoder, time.perf_counter)
    assert err.value.path == str(videos[name]) and err.value.reason


@pytest.mark.parametrize("name", BAD + ["missing"])
def test_bad_files_end_the_cli_with_one_line(videos, name):
    path = videos.get(name, "/nonexistent/video.mp4")
    proc = subprocess.run([sys.executable, "-m", "testbed.cli", "tokenize", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    ours = [line for line in proc.stderr.splitlines() if line.startswith("testbed: error:")]
    assert len(ours) == 1 and "Traceback" not in proc.stderr


def test_decord_errors_become_video_errors(videos):
    with pytest.raises(VideoError):
        list(iter_frames_decord(videos["random"], [0], 1))
    with pytest.raises(VideoError, match="out of range"):
        list(iter_frames_decord(videos["clip"], [0, 60], 1))


def test_pipelined_equals_sequential(videos, encoder):
    for sampler in (KEYFRAME_SAMPLER, DEFAULT_SAMPLER):
        a = tokenize(videos["medium"], sampler, encoder, time.perf_counter, pipelined=True, chunk_frames=7)
        b = tokenize(videos["medium"], sampler, encoder, time.perf_counter, pipelined=False, chunk_frames=7)
        assert torch.equal(a.tokens, b.tokens)
        assert a.tokens.shape == (len(a.indices), encoder.tokens_per_frame, encoder.dim)
        assert set(a.stage_s) == {"decode", "preprocess", "encode"} and a.wall_s > 0


def test_keyframe_tokenizer_decodes_only_keyframes(videos, encoder):
    r = tokenize(videos["long"], KEYFRAME_SAMPLER, encoder, time.perf_counter)
    assert r.keyframe_path and r.decoded == r.frames == 120
    r = tokenize(videos["long"], DEFAULT_SAMPLER, encoder, time.perf_counter)
    assert not r.keyframe_path and r.decoded > 15000


def test_a_failing_stage_stops_the_pipeline(encoder):
    def chunks():
        yield np.zeros((4, 32, 32, 3), np.uint8)
        raise VideoError("x.mp4", "truncated mid-stream")

    with ThreadPoolExecutor(2) as pool:
        with pytest.raises(VideoError, match="truncated mid-stream"):
            _pipelined(chunks(), encoder, time.perf_counter, {"decode": 0.0, "preprocess": 0.0, "encode": 0.0}, pool)
        # the pool's threads are free again: a second run goes through
        out = _pipelined(iter([np.zeros((2, 32, 32, 3), np.uint8)]), encoder, time.perf_counter,
                         {"decode": 0.0, "preprocess": 0.0, "encode": 0.0}, pool)
        assert len(out) == 1


def test_preprocess_by_hand():
    frames = np.full((2, 10, 20, 3), 255, np.uint8)
    frames[1] = 0
    x = preprocess(frames, 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (2, 3, 8, 8)
    assert torch.allclose(x[0], torch.ones(3, 8, 8)) and torch.allclose(x[1], -torch.ones(3, 8, 8))
    with pytest.raises(ValueError):
        preprocess(np.zeros((10, 10, 3), np.uint8), 8, (0.5,) * 3, (0.5,) * 3)


def test_tiny_encoder_is_deterministic():
    x = torch.randn(3, 3, 64, 64)
    assert torch.equal(tiny_encoder(seed=1).encode(x), tiny_encoder(seed=1).encode(x))
    assert not torch.equal(tiny_encoder(seed=1).encode(x), tiny_encoder(seed=2).encode(x))


def test_local_checkpoint_round_trip(tmp_path):
    enc = tiny_encoder(seed=3)
    enc.model.save_pretrained(tmp_path)
    loaded = make_encoder(str(tmp_path))
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(loaded.encode(x), enc.encode(x))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_stays_flat_over_200_tokenizations(videos, encoder):
    """decord has reported leaks across get_batch calls (#157, #208). Allocator arenas make RSS
    step up by ~20 MB now and then around a plateau, so compare the median RSS early and late in
    the run. One batch of frames is 16 x 320x180x3 = 2.8 MB; a leak of even a tenth of a batch per
    call would add 50 MB over the 180 calls compared here."""
    sampler = Sampler("uniform", count=16)  # arbitrary indices: the decord path
    samples = []
    with Tokenizer(encoder, time.perf_counter) as tok:
        for i in range(200):
            tok(videos["single_key"], sampler)
            if i % 10 == 9:
                samples.append(_rss_mb())
    early, late = np.median(samples[4:10]), np.median(samples[-6:])
    print(f"RSS MB every 10 tokenizations: {[round(x) for x in samples]}")
    assert late - early < 50, samples


def test_cli_tokenize(videos, capsys):
    assert main(["tokenize", str(videos["long"]), "--sampler", "keyframe"]) == 0
    out = capsys.readouterr().out
    assert "(120, 64, 64)" in out and "keyframe packets only" in out


@pytest.fixture(scope="module")
def short_files(tmp_path_factory):
    """Files that declare more frames than they hold: one frame (common in AVI), and cut in the middle."""
    from tests.videos import cut, declare_extra_frames, encode

    d = tmp_path_factory.mktemp("short")
    avi = encode(d / "full.avi", 4, fps=25, size="160x90", gop=25)
    mkv = encode(d / "full.mkv", 4, fps=25, size="160x90", gop=25)
    mp4 = encode(d / "faststart.mp4", 4, fps=25, size="160x90", gop=25, container_args=("-movflags", "+faststart"))
    return {"plus_one": declare_extra_frames(avi, d / "plus_one.avi"), "half_avi": cut(avi, d / "half.avi", 0.5),
            "half_mkv": cut(mkv, d / "half.mkv", 0.5), "half_mp4": cut(mp4, d / "half.mp4", 0.5)}


def test_one_frame_fewer_than_declared_tokenizes_without_a_note(short_files, encoder):
    notes = []
    m = probe(short_files["plus_one"], notes)
    assert m.n_frames == 100 and notes == []
    r = tokenize(short_files["plus_one"], Sampler("uniform", count=100), encoder, time.perf_counter, meta=m)
    assert r.tokens.shape[0] == 100


@pytest.fixture(scope="module")
def sparse_files(tmp_path_factory):
    """A sparse AVI (68 frames over 444 frame intervals, as tree.avi) and the same file cut in the middle."""
    from tests.videos import cut, sparse_avi

    d = tmp_path_factory.mktemp("sparse")
    whole = sparse_avi(d / "sparse.avi", frames=68, span=444, fps=30)
    return {"whole": whole, "half": cut(whole, d / "sparse_half.avi", 0.5)}


def test_a_sparse_avi_is_whole_not_cut_short(sparse_files, encoder):
    """Every frame it holds is kept and no note is made; its duration is the span of its timestamps
    (444 intervals at 30 fps: 14.8 s), so fps is the frames it holds per second of that span."""
    import av

    with av.open(str(sparse_files["whole"])) as c:  # the file is what it should be: 444 declared, 68 present
        assert c.streams.video[0].frames == 444
        assert sum(1 for p in c.demux(video=0) if p.size) == 68
    notes: list[str] = []
    m = probe(sparse_files["whole"], notes)
    assert notes == []
    assert m.n_frames == 68
    assert m.duration_s == pytest.approx(444 / 30)
    assert m.fps == pytest.approx(68 / (444 / 30))
    r = tokenize(sparse_files["whole"], Sampler("uniform", count=68), encoder, time.perf_counter, meta=m)
    assert r.tokens.shape[0] == 68


def test_a_sparse_avi_cut_in_the_middle_is_cut_short(sparse_files):
    """Its timestamps end early: the declared count, not the frames present, tells it from a whole sparse file."""
    notes: list[str] = []
    m = probe(sparse_files["half"], notes)
    assert len(notes) == 1 and "cut short" in notes[0]
    assert 20 <= m.n_frames < 68


def test_a_manifest_notes_a_cut_file_once_and_a_sparse_one_never(sparse_files, tmp_path):
    """Two questions on each file: the cut one is noted once, not once per question."""
    import json

    from testbed.workload.manifest import read_manifest

    lines = [{"query_id": f"{name}{i}", "video": str(sparse_files[name]), "question": "q?", "options": ["a", "b"],
              "answer": 0} for name in ("whole", "half") for i in range(2)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    wl = read_manifest(tmp_path / "m.jsonl")
    assert len(wl.records) == 4
    (note,) = wl.notes
    assert "sparse_half.avi" in note and "cut short" in note


def test_the_cli_makes_no_note_for_a_sparse_avi(sparse_files):
    proc = subprocess.run([sys.executable, "-m", "testbed.cli", "tokenize", str(sparse_files["whole"]),
                           "--sampler", "uniform", "--count", "8"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("note:")] == []


@pytest.mark.parametrize("name", ["half_avi", "half_mkv", "half_mp4"])
def test_a_file_cut_in_the_middle_tokenizes_the_frames_present(short_files, encoder, name):
    notes = []
    m = probe(short_files[name], notes)
    assert 40 <= m.n_frames <= 51
    assert len(notes) == 1 and "cut short" in notes[0] and "\n" not in notes[0]
    for sampler in (KEYFRAME_SAMPLER, Sampler("uniform", count=100)):
        r = tokenize(short_files[name], sampler, encoder, time.perf_counter, meta=m)
        assert r.tokens.shape[0] == m.n_frames  # every frame present, none invented


def test_the_cli_warns_in_one_line_about_a_cut_file(short_files):
    proc = subprocess.run([sys.executable, "-m", "testbed.cli", "tokenize", str(short_files["half_avi"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("note:")]  # notes: testbed/notes.py
    assert len(warnings) == 1 and "cut short" in warnings[0]
