"""Video reading: which frame each sample time picks, chunking, and errors people can act on.

Every test video has frames of flat colours that encode the frame index (tests/video_utils.py),
so the frame a sample came from is read back from its pixels. The expected frame for a time ``t``
is worked out from the times the writer used: the last frame whose start is <= t.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from g2l.video.decoding import (
    SamplingRateError,
    VideoInfo,
    VideoReadError,
    check_sampling_fps,
    frames_at_times,
    probe_video,
    read_video_frames,
    reset_is_cheap,
    sample_times,
)

from tests.video_utils import decode_index, write_test_video


def expected_frames(written_starts_s: np.ndarray, times_s: np.ndarray) -> list[int]:
    """Independent reference: the last written frame starting at or before each time."""
    return [max(i for i, start in enumerate(written_starts_s) if start <= t + 1e-9) for t in times_s]


def read_all(path, **kwargs):
    chunks = list(read_video_frames(path, **kwargs))
    frames = np.concatenate([c.frames for c in chunks])
    return frames, np.concatenate([c.times_s for c in chunks]), np.concatenate([c.frame_idx for c in chunks])


# --- the sampling rule, by hand ---------------------------------------------------------------------


def test_sample_times_are_window_centres():
    np.testing.assert_allclose(sample_times(2.5, 1.0), [0.5, 1.5])  # the trailing half window is dropped
    np.testing.assert_allclose(sample_times(2.0, 2.0), [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_allclose(sample_times(3.0, 1.0), [0.5, 1.5, 2.5])  # 3.0 * 1.0 exactly: 3 samples
    np.testing.assert_allclose(sample_times(0.3, 1.0), [0.15])  # shorter than one window: its midpoint
    with pytest.raises(ValueError, match="positive"):
        sample_times(2.0, 0.0)


def test_frames_at_times_picks_the_covering_interval():
    starts = np.array([0.0, 0.3, 0.35, 0.45, 0.75])
    times = np.array([0.0, 0.1, 0.3, 0.34, 0.5, 0.8, 9.0])
    assert frames_at_times(starts, times).tolist() == [0, 0, 1, 1, 3, 4, 4]
    # Unsorted starts: indices refer to the original order.
    shuffled = np.array([0.75, 0.0, 0.45, 0.3, 0.35])
    assert frames_at_times(shuffled, times).tolist() == [1, 1, 3, 3, 2, 0, 0]
    # A time before the first frame maps to the first frame.
    assert frames_at_times(np.array([0.2, 0.4]), np.array([0.1])).tolist() == [0]


# --- real files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("native_fps", [25.0, 29.97, 12.5])
@pytest.mark.parametrize("fps", [1.0, 3.0])
def test_sampling_at_constant_frame_rates(tmp_path, native_fps, fps):
    path = tmp_path / "cfr.mp4"
    written = write_test_video(path, duration_s=3.0, fps=native_fps)
    duration_s = len(written) / (30000 / 1001 if native_fps == 29.97 else native_fps)
    frames, times_s, frame_idx = read_all(path, fps=fps, size=None)

    assert len(times_s) == math.floor(duration_s * fps + 1e-6)
    np.testing.assert_allclose(times_s, (np.arange(len(times_s)) + 0.5) / fps)
    expected = expected_frames(written, times_s)
    assert frame_idx.tolist() == expected
    assert [decode_index(f) for f in frames] == expected
    assert frames.dtype == np.uint8 and frames.shape[1:] == (48, 64, 3)


def test_odd_rate_differs_from_index_over_fps():
    """At 29.97 fps frame i starts at i * 1001 / 30000 s: t = 33.5 s falls in frame 1003
    (33.4668 .. 33.5001 s), while index = t * 30 (a nominal rate) says 1005."""
    starts = np.arange(1100) * 1001 / 30000
    assert starts[1003] <= 33.5 < starts[1004]
    assert frames_at_times(starts, np.array([33.5])).tolist() == [1003]
    assert int(33.5 * 30) == 1005


def test_variable_frame_rate_uses_timestamps(tmp_path):
    path = tmp_path / "vfr.mp4"
    written = write_test_video(path, duration_s=4.0, fps=10.0, vfr=True)
    assert len(set(np.round(np.diff(written), 3))) > 1  # really variable
    frames, times_s, frame_idx = read_all(path, fps=4.0, size=None)
    expected = expected_frames(written, times_s)
    assert frame_idx.tolist() == expected
    assert [decode_index(f) for f in frames] == expected
    naive = np.floor(times_s * len(written) / probe_video(path).duration_s).astype(int).tolist()
    assert naive != expected  # index = t * average fps would pick other frames


def test_bframes_and_audio_track(tmp_path):
    plain, with_audio = tmp_path / "plain.mp4", tmp_path / "audio.mp4"
    written = write_test_video(plain, duration_s=2.0, fps=25.0, bframes=2)
    write_test_video(with_audio, duration_s=2.0, fps=25.0, bframes=2, audio=True)
    for path in (plain, with_audio):
        frames, times_s, frame_idx = read_all(path, fps=2.0, size=None)
        assert frame_idx.tolist() == expected_frames(written, times_s) == [decode_index(f) for f in frames]
    info = probe_video(with_audio)
    assert info == VideoInfo(duration_s=pytest.approx(2.0, abs=1e-4), native_fps=pytest.approx(25.0), num_frames=50, width=64, height=48)


def test_chunked_read_equals_one_read_and_resizes_to_a_square(tmp_path):
    path = tmp_path / "long.mp4"
    write_test_video(path, duration_s=12.0, fps=12.5)
    one = read_all(path, fps=4.0, size=40, chunk_frames=1000)
    chunks = list(read_video_frames(path, fps=4.0, size=40, chunk_frames=7))
    assert [len(c.frames) for c in chunks] == [7] * 6 + [6]
    many = read_all(path, fps=4.0, size=40, chunk_frames=7)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    assert one[0].shape == (48, 40, 40, 3)
    video = read_video_frames(path, fps=4.0, size=40)
    assert len(video) == 48 and video.duration_s == pytest.approx(12.0, abs=1e-4)


def test_sampling_faster_than_the_video_repeats_frames(tmp_path):
    path = tmp_path / "slow.mp4"
    written = write_test_video(path, duration_s=2.0, fps=2.0)
    frames, times_s, frame_idx = read_all(path, fps=4.0, size=None)
    assert frame_idx.tolist() == expected_frames(written, times_s) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [decode_index(f) for f in frames] == frame_idx.tolist()


def test_torch_bridge_set_elsewhere_still_gives_numpy(tmp_path):
    import decord

    path = tmp_path / "v.mp4"
    write_test_video(path, duration_s=1.0, fps=10.0)
    decord.bridge.set_bridge("torch")
    try:
        frames, _, _ = read_all(path, fps=2.0, size=None)
    finally:
        decord.bridge.set_bridge("native")
    assert isinstance(frames, np.ndarray) and frames.dtype == np.uint8


# --- memory: decord's decoder is reset after each chunk ------------------------------------------------


def test_frames_are_the_same_with_the_decoder_reset_after_each_chunk(tmp_path, monkeypatch):
    import g2l.video.decoding as decoding

    path = tmp_path / "gops.mp4"
    written = write_test_video(path, duration_s=40.0, fps=25.0)  # 1000 frames, a keyframe every 250
    one = read_all(path, fps=1.0, size=None, chunk_frames=1000)
    decisions = []
    monkeypatch.setattr(decoding, "reset_is_cheap", lambda *args: decisions.append(reset_is_cheap(*args)) or decisions[-1])
    reset = read_all(path, fps=1.0, size=None, chunk_frames=11)  # chunks span 251 frames: every reset is allowed
    assert len(decisions) == 4 and all(decisions)
    monkeypatch.setattr(decoding, "reset_is_cheap", lambda *args: False)
    kept = read_all(path, fps=1.0, size=None, chunk_frames=11)
    for a, b, c in zip(one, reset, kept):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    expected = expected_frames(written, one[1])
    assert one[2].tolist() == expected and [decode_index(f) for f in one[0]] == [i % 256 for i in expected]


def test_the_reset_is_skipped_when_it_would_decode_more_again_than_the_next_chunk_spans():
    keyframes = np.array([0, 250, 500])
    assert reset_is_cheap(keyframes, 300, np.array([], dtype=np.int64))  # no next chunk
    assert reset_is_cheap(keyframes, 300, np.array([520, 530]))  # it starts past a keyframe: nothing twice
    assert reset_is_cheap(keyframes, 300, np.arange(310, 600, 10))  # frames 250..299 again for a 281-frame chunk
    assert not reset_is_cheap(keyframes, 300, np.array([310, 320]))  # the same 50 frames for an 11-frame chunk
    assert not reset_is_cheap(np.array([0]), 5000, np.arange(5010, 5600, 10))  # one keyframe: all of it again


PAUSED_READ = r"""
import sys, time
from g2l.video.decoding import read_video_frames

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

video = read_video_frames(sys.argv[1], fps=1.0, size=448, chunk_frames=10)
before = most = rss_mib()
for chunk in video:
    time.sleep(0.1)  # the caller working on the chunk (an encoder would)
    most = max(most, rss_mib())
print(most - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc (Linux)")
def test_memory_does_not_grow_with_the_video_when_the_caller_pauses_between_chunks(tmp_path):
    """decord's reader pushes the video's packets to its decoding thread far ahead of the frames it
    returns; without the reset, that thread decoded and resized them while the caller worked on a
    chunk and kept them, so a 100 s video here took 80-95 MiB more than a 20 s one (448 x 448
    frames, 0.1 s per chunk, two busy cores). With the reset the two differ by a few MiB."""
    growth = {}
    for seconds in (20.0, 100.0):
        path = tmp_path / f"video_{int(seconds)}s.mp4"
        write_test_video(path, duration_s=seconds, fps=25.0)  # a keyframe every 250 frames = one 10-sample chunk
        run = subprocess.run([sys.executable, "-c", PAUSED_READ, str(path)], capture_output=True, text=True, check=True)
        growth[seconds] = float(run.stdout)
    assert growth[100.0] - growth[20.0] < 40, f"RSS growth in MiB by video length: {growth}"


# --- errors ---------------------------------------------------------------------------------------------


def bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.mp4"
    write_test_video(good, duration_s=4.0, fps=25.0)
    indexed = tmp_path / "indexed.mp4"
    write_test_video(indexed, duration_s=4.0, fps=25.0, faststart=True)
    files = {
        "empty": tmp_path / "empty.mp4",
        "truncated": tmp_path / "truncated.mp4",
        "truncated_indexed": tmp_path / "truncated_indexed.mp4",
        "text": tmp_path / "notes.mp4",
        "missing": tmp_path / "missing.mp4",
        "folder": tmp_path / "folder.mp4",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["truncated_indexed"].write_bytes(indexed.read_bytes()[: indexed.stat().st_size // 2])
    files["text"].write_text("this is a text file, not a video\n" * 20)
    files["folder"].mkdir()
    return files


@pytest.mark.parametrize("kind", ["empty", "truncated", "truncated_indexed", "text", "missing", "folder"])
def test_unreadable_files_raise_video_read_error_naming_the_file(tmp_path, kind):
    path = bad_files(tmp_path)[kind]
    for read in (lambda: read_video_frames(path), lambda: probe_video(path)):
        with pytest.raises(VideoReadError) as caught:
            read()
        message = str(caught.value)
        assert str(path) in message
        assert "\n" not in message
        assert isinstance(caught.value, ValueError)


def test_audio_only_file_says_there_is_no_video_stream(tmp_path):
    import av

    path = tmp_path / "speech.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for start in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoReadError, match=r"has no video stream \(audio only\?\)") as caught:
        read_video_frames(path)
    assert "truncated" not in str(caught.value)


@pytest.mark.parametrize("faststart", [False, True])
def test_an_mp4_cut_short_says_it_looks_truncated_not_audio_only(tmp_path, faststart):
    """Cut anywhere before its end, an mp4 (index first or last) that fails to open is reported as
    truncated. Cut just after its video track's handler (index first), FFmpeg finds no video
    stream: that once read "no video stream (audio only?)"; the container still declares the track."""
    whole = tmp_path / "whole.mp4"
    write_test_video(whole, duration_s=2.0, fps=25.0, faststart=faststart)
    data = whole.read_bytes()
    cuts = [int(len(data) * fraction) for fraction in (0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)]
    if faststart:
        cuts.append(data.index(b"vide", data.index(b"hdlr")) + 10)  # the video handler kept, its sample tables lost
    failures = []
    for keep in cuts:
        cut = tmp_path / f"cut{keep}.mp4"
        cut.write_bytes(data[:keep])
        with pytest.raises(VideoReadError) as caught:
            read_video_frames(cut)
        failures.append(str(caught.value))
    assert all("truncated" in message and "audio only" not in message for message in failures), failures
    if faststart:
        assert "its container declares a video track, but no frame of it can be decoded" in failures[-1]


def test_a_directory_or_a_link_to_dev_zero_is_named_for_what_it_is(tmp_path):
    link = tmp_path / "zero.mp4"
    link.symlink_to("/dev/zero")
    (tmp_path / "clips.mp4").mkdir()
    expected = {link: "is a link to /dev/zero, which is not a regular file (a character device); pass a video file",
                tmp_path / "clips.mp4": "is a directory; pass a video file",
                tmp_path / "gone.mp4": "does not exist; check the path"}
    for path, fragment in expected.items():
        with pytest.raises(VideoReadError, match=re.escape(fragment)):
            read_video_frames(path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="chunk_frames"):
        read_video_frames("x.mp4", chunk_frames=0)
    with pytest.raises(ValueError, match="fps"):
        read_video_frames("x.mp4", fps=0)


@pytest.mark.parametrize("fps", [0, -1.0, float("nan"), float("inf"), 60.001, 1e6, "2", True, None])
def test_a_sampling_rate_outside_0_to_60_is_refused_before_the_file_is_opened(fps):
    for call in (lambda: read_video_frames("missing.mp4", fps=fps), lambda: sample_times(10.0, fps)):
        with pytest.raises(SamplingRateError, match=r"at most 60 frames per second, got "):
            call()


def test_sampling_rates_in_range_pass_as_floats():
    assert [check_sampling_fps(v) for v in (60, 0.25, np.float32(2.0), np.int64(5))] == [60.0, 0.25, 2.0, 5.0]
    assert len(sample_times(1.0, 60)) == 60


def test_truncated_streaming_container_reads_its_decodable_prefix(tmp_path):
    """A known limit: an mkv cut in half has no index to lose, so decord opens it and sees only the
    frames before the cut; the duration it reports is that prefix's (decord exposes no declared
    duration to compare against). An mp4 cut the same way raises (tests above)."""
    whole = tmp_path / "whole.mkv"
    write_test_video(whole, duration_s=8.0, fps=25.0)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    frames, _, frame_idx = read_all(cut, fps=1.0, size=None)
    assert 0 < probe_video(cut).duration_s < 8.0
    assert [decode_index(f) for f in frames] == frame_idx.tolist()


def test_probe_reads_the_frame_size_from_the_header_without_decoding(tmp_path, monkeypatch):
    """The size comes from the stream's parameters (PyAV), so probing a 12000 x 12000 video costs
    no decoded frame; without PyAV the first frame is decoded to measure it, with the same answer."""
    import g2l.video.decoding as decoding

    path = tmp_path / "odd.mkv"
    write_test_video(path, duration_s=1.0, fps=10.0, size=(80, 32))
    decoded = []
    real_get_batch = decoding._get_batch
    monkeypatch.setattr(decoding, "_get_batch", lambda *a: decoded.append(a) or real_get_batch(*a))
    info = probe_video(path)
    assert (info.width, info.height, info.num_frames) == (80, 32, 10) and decoded == []
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    assert probe_video(path) == info and len(decoded) == 1


def test_the_header_probe_reads_a_file_whose_name_looks_like_a_protocol(tmp_path, monkeypatch):
    from g2l.video.decoding import _stream_size

    write_test_video(tmp_path / "concat:v.mp4", duration_s=0.4, fps=10.0, size=(32, 16))
    monkeypatch.chdir(tmp_path)
    assert _stream_size("concat:v.mp4") == (32, 16)  # not FFmpeg's concat protocol (which would open "v.mp4")


def test_a_header_that_pyav_cannot_read_is_one_sentence(tmp_path, monkeypatch):
    import av

    from g2l.video.decoding import _stream_size

    def refuse(*args, **kwargs):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(av, "open", refuse)
    with pytest.raises(VideoReadError, match=r"File '.*v\.mp4' could not be read as a video \(its stream header: "
                                             r"Invalid data found when processing input\); check the file"):
        _stream_size(tmp_path / "v.mp4")
