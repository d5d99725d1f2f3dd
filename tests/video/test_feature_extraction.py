"""Feature extraction: one video, the prefetching thread, and the command-line tool end to end
(layout, attributes, resume, bad files reported and skipped, encoder mismatch, bad arguments)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from g2l.cli import extract_main
from g2l.video.feature_extraction import (
    PARTIAL_PREFIX,
    SPEC_ATTR,
    extract_features_to_hdf5,
    extract_video_features,
    list_videos,
    prefetch,
)
from g2l.video.decoding import VideoReadError, read_video_frames
from g2l.video.frame_encoders import ClipImageEncoder, EncoderMismatchError

from tests.video_utils import write_test_video
from tests.video_utils import read_encoder_spec

REPO_ROOT = Path(__file__).resolve().parents[2]


def extract_features_main(arguments: list[str]) -> int:
    """The g2l-extract command in process: its exit status, returned or raised by argparse."""
    try:
        return extract_main(arguments)
    except SystemExit as exited:
        return exited.code


@pytest.fixture(scope="module")
def tiny_clip():
    from transformers import CLIPVisionConfig

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=16,
    )
    return ClipImageEncoder(config=config)


@pytest.fixture
def video_folder(tmp_path) -> Path:
    """Two good videos (3 s at 25 fps with audio, 2 s at 12.5 fps) and a text file named .mp4."""
    folder = tmp_path / "videos"
    folder.mkdir()
    write_test_video(folder / "alpha.mp4", duration_s=3.0, fps=25.0, audio=True)
    write_test_video(folder / "beta.mp4", duration_s=2.0, fps=12.5)
    (folder / "broken.mp4").write_text("not a video\n")
    (folder / "notes.txt").write_text("ignored: not a video extension\n")
    return folder


# --- one video ------------------------------------------------------------------------------------------


def test_extract_video_features_matches_encoding_the_read_frames(tiny_clip, tmp_path):
    path = tmp_path / "v.mp4"
    write_test_video(path, duration_s=5.0, fps=10.0)
    features, duration_s = extract_video_features(path, tiny_clip, fps=2.0, batch_size=3, chunk_frames=4)
    assert features.shape == (10, 16) and features.dtype == np.float32
    assert duration_s == pytest.approx(5.0, abs=1e-4)
    frames = np.concatenate([c.frames for c in read_video_frames(path, fps=2.0, size=tiny_clip.input_size)])
    np.testing.assert_allclose(features, tiny_clip.encode(frames, batch_size=10), rtol=1e-4, atol=1e-5)


def test_extract_video_features_raises_video_read_error(tiny_clip, tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty"):
        extract_video_features(path, tiny_clip, fps=1.0, batch_size=4)


# --- prefetch -----------------------------------------------------------------------------------------------


def test_prefetch_keeps_order_and_is_bounded():
    produced = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    consumed = []
    for item in prefetch(items(), depth=2):
        time.sleep(0.002)
        # The producer is at most depth (queued) + 1 (waiting to put) items ahead.
        assert len(produced) - len(consumed) <= 4
        consumed.append(item)
    assert consumed == list(range(20))


def test_prefetch_reraises_producer_errors_and_stops_when_the_consumer_stops():
    def failing():
        yield 1
        raise VideoReadError("decoding failed")

    with pytest.raises(VideoReadError, match="decoding failed"):
        list(prefetch(failing()))

    before = threading.active_count()
    endless = prefetch(iter(range(10**9)), depth=2)
    assert next(endless) == 0
    endless.close()  # the consumer gives up: the producer thread must end
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


# --- inputs ---------------------------------------------------------------------------------------------------


def test_list_videos_expands_folders_and_txt_lists(video_folder, tmp_path):
    assert [p.name for p in list_videos([video_folder])] == ["alpha.mp4", "beta.mp4", "broken.mp4"]
    listing = video_folder / "list.txt"
    listing.write_text("# two videos\nbeta.mp4\n\n" + str(video_folder / "alpha.mp4") + "\n")
    assert list_videos([listing]) == [video_folder / "beta.mp4", video_folder / "alpha.mp4"]
    with pytest.raises(ValueError, match="does not exist"):
        list_videos([tmp_path / "nowhere"])
    other = tmp_path / "other"
    other.mkdir()
    (other / "alpha.mkv").write_bytes(b"x")
    with pytest.raises(ValueError, match="share the id 'alpha'"):
        list_videos([video_folder, other / "alpha.mkv"])


# --- the tool, in process -------------------------------------------------------------------------------------


def test_tool_end_to_end_reports_bad_files_and_resumes(video_folder, tmp_path, capsys):
    out = tmp_path / "features.hdf5"
    status = extract_features_main([str(video_folder), "--out", str(out), "--fps", "1", "--batch-size", "2", "--no-progress"])
    assert status == 0
    stderr = capsys.readouterr().err
    assert "extracted 2 videos, skipped 0 already in the file, failed 1" in stderr
    assert "broken.mp4" in stderr

    with h5py.File(out, "r") as f:
        assert sorted(f) == ["alpha", "beta"]
        assert f["alpha"].shape == (3, 1280) and f["alpha"].dtype == np.float32
        assert f["beta"].shape == (2, 1280)
        assert f["alpha"].attrs["duration_s"] == pytest.approx(3.0, abs=1e-4)
        assert f["beta"].attrs["fps"] == 1.0
        spec = json.loads(f.attrs[SPEC_ATTR])
        assert spec["name"] == "mobilenet_v2" and spec["fps"] == 1.0 and spec["output_dim"] == 1280
        assert f.attrs["fps"] == 1.0
        alpha = f["alpha"][()]
    assert read_encoder_spec(out) == spec

    # Re-run: nothing recomputed, the bad file is reported again, features unchanged.
    status = extract_features_main([str(video_folder), "--out", str(out), "--no-progress"])
    assert status == 0
    assert "extracted 0 videos, skipped 2 already in the file, failed 1" in capsys.readouterr().err
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["alpha"][()], alpha)


def test_tool_resume_with_another_encoder_or_fps_is_refused(video_folder, tmp_path, tiny_clip, capsys):
    out = tmp_path / "features.hdf5"
    assert extract_features_main([str(video_folder / "beta.mp4"), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()

    assert extract_features_main([str(video_folder), "--out", str(out), "--fps", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "fps: expected 2.0, found 1.0" in err and err.count("\n") == 1

    tiny_clip.model.save_pretrained(tmp_path / "tiny_clip")
    assert extract_features_main([str(video_folder), "--out", str(out), "--encoder", f"clip:{tmp_path / 'tiny_clip'}",
                                  "--no-progress"]) == 2
    assert "name: expected 'clip', found 'mobilenet_v2'" in capsys.readouterr().err

    with pytest.raises(EncoderMismatchError):  # the library says the same
        extract_features_to_hdf5([video_folder / "alpha.mp4"], out, tiny_clip, fps=1.0, progress=False)
    with h5py.File(out, "r") as f:
        assert list(f) == ["beta"]  # untouched


def test_half_written_datasets_are_removed_and_foreign_files_refused(video_folder, tmp_path, tiny_clip):
    out = tmp_path / "features.hdf5"
    report = extract_features_to_hdf5([video_folder / "beta.mp4"], out, tiny_clip, fps=1.0, progress=False)
    assert report.extracted == ["beta"]
    with h5py.File(out, "a") as f:  # what a run killed while writing would leave
        f.create_dataset(PARTIAL_PREFIX + "alpha", data=np.zeros((1, 16), np.float32))
    report = extract_features_to_hdf5([video_folder / "alpha.mp4"], out, tiny_clip, fps=1.0, progress=False)
    assert report.extracted == ["alpha"]
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["alpha", "beta"] and f["alpha"].shape == (3, 16)

    public = tmp_path / "vgg_rgb_features.hdf5"
    with h5py.File(public, "w") as f:
        f.create_dataset("alpha", data=np.zeros((3, 4096), np.float32))
    with pytest.raises(ValueError, match="not written by g2l"):
        extract_features_to_hdf5([video_folder / "alpha.mp4"], public, tiny_clip, fps=1.0, progress=False)


def test_tool_exits_1_when_every_video_fails(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    assert extract_features_main([str(bad), "--out", str(tmp_path / "f.hdf5"), "--no-progress"]) == 1
    assert "failed 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["VIDEOS", "--out", "OUT", "--fps", "0"], "--fps must be positive"),
        (["VIDEOS", "--out", "OUT", "--batch-size", "0"], "--batch-size"),
        (["VIDEOS", "--out", "OUT", "--encoder", "resnet"], "Unknown frame encoder"),
        (["VIDEOS", "--out", "OUT", "--device", "nonsense"], "--device"),
        (["VIDEOS", "--out", "OUT", "--device", "cuda:7"] if not torch.cuda.is_available() else ["VIDEOS", "--out", "OUT", "--device", "nonsense"], "--device"),
        (["MISSING", "--out", "OUT"], "does not exist"),
    ],
)
def test_tool_bad_arguments_exit_2_with_one_line(video_folder, tmp_path, capsys, arguments, message):
    replace = {"VIDEOS": str(video_folder), "OUT": str(tmp_path / "f.hdf5"), "MISSING": str(tmp_path / "missing")}
    assert extract_features_main([replace.get(a, a) for a in arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "f.hdf5").exists()


def test_tool_script_as_a_subprocess(tmp_path):
    """The script itself: a missing required argument exits 2 with one line on stderr."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "extract_features.py"), "--out", str(tmp_path / "f.hdf5")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "required: videos" in result.stderr
