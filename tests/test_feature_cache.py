"""The batch's feature cache (g2l/feature_cache.py): an entry is believed only after it is checked
against the video file and the encoder, a damaged or tampered one is encoded again and replaced with
one warning naming it (never a traceback, never an answer from it), a replaced video misses, and a
folder that cannot be used, or that others can write to, leaves grounding going on without it."""

import json
import os
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from g2l.batch import ground_batch
from g2l.feature_cache import MAX_FEATURE_ABS, FeatureCache, FeatureCacheError, check_folder
from g2l.inference import EncodedVideo
from tests.video_utils import write_test_video

REPO = Path(__file__).resolve().parents[1]
WIDTH = 8  # the feature width of the unit tests' cache (the demo's MobileNetV2 gives 1280)
ROWS = 4  # a 4 s video at 1 frame/s: samples at 0.5, 1.5, 2.5, 3.5 s


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_test_video(path, duration_s=4.0, fps=10.0, size=(32, 32))
    return path


@pytest.fixture()
def video(clip, tmp_path):
    """A fresh copy of the 4 s clip (some tests change it)."""
    return Path(shutil.copy(clip, tmp_path / "clip.mp4"))


@pytest.fixture()
def cache(tmp_path):
    return FeatureCache.open(tmp_path / "cache", encoder_spec={"name": "test"}, fps=1.0, feature_dim=WIDTH)


def _features(rows=ROWS, width=WIDTH):
    return np.random.default_rng(0).uniform(0, 5, (rows, width)).astype(np.float32)  # (rows, width)


def _write_entry(path: Path, *, compressed=False, **members) -> None:
    """An entry as ``put`` writes it, with any member replaced (or added, or None: removed)."""
    good = {"features": _features(), "duration_s": np.float64(4.0), "key": np.str_(path.stem)}
    arrays = {k: v for k, v in {**good, **members}.items() if v is not None}
    with open(path, "wb") as handle:
        (np.savez_compressed if compressed else np.savez)(handle, **arrays)


def test_an_entry_round_trips_unchanged(cache, video):
    assert cache.get(video) is None  # nothing yet: a miss, no warning
    features = _features()
    assert cache.put(video, EncodedVideo("clip.mp4", 4.0, features, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cache.get(video)
    assert got.duration_s == 4.0 and got.fps == 1.0 and got.name == "clip.mp4"
    np.testing.assert_array_equal(got.features, features)
    assert got.features.flags.writeable and got.features.dtype == np.float32
    assert sorted(p.name for p in cache.folder.iterdir()) == [cache.entry_path(video).name]


TAMPERED = {  # what the entry claims, against what the 4 s video and the width-8 encoder give
    "one row": dict(features=_features(rows=1)),
    "a row too many": dict(features=_features(rows=ROWS + 1)),
    "features x 1e6, duration 1e9 s": dict(features=_features() * 1e6, duration_s=np.float64(1e9)),
    "features x 1e6": dict(features=_features() * 1e6),
    "duration 1e9 s": dict(duration_s=np.float64(1e9)),
    "twice the duration": dict(duration_s=np.float64(8.0)),
    "duration 4.5 s (the same rows)": dict(duration_s=np.float64(4.5)),
    "negative duration": dict(duration_s=np.float64(-4.0)),
    "NaN duration": dict(duration_s=np.float64("nan")),
    "duration of shape (2,)": dict(duration_s=np.array([4.0, 4.0])),
    "complex duration": dict(duration_s=np.complex128(4.0)),
    "duration as text": dict(duration_s=np.str_("4.0")),
    "width 9": dict(features=_features(width=WIDTH + 1)),
    "width 1280": dict(features=_features(width=1280)),
    "NaN feature": dict(features=np.where(np.eye(ROWS, WIDTH) > 0, np.nan, _features()).astype(np.float32)),
    "infinite feature": dict(features=np.full((ROWS, WIDTH), np.inf, np.float32)),
    "complex features": dict(features=_features().astype(np.complex64)),
    "float64 features": dict(features=_features().astype(np.float64)),
    "big-endian features": dict(features=_features().astype(">f4")),
    "Fortran-order features": dict(features=np.asfortranarray(_features())),
    "3-d features": dict(features=_features()[None]),
    "features of another file's entry": dict(key=np.str_("0" * 32)),
    "no key": dict(key=None),
    "no duration": dict(duration_s=None),
    "an extra member": dict(extra=np.zeros(3)),
    "deflated members": dict(compressed=True),
}


@pytest.mark.parametrize("claims", list(TAMPERED), ids=list(TAMPERED))
def test_an_entry_that_does_not_match_its_video_is_encoded_again(cache, video, claims):
    entry = cache.entry_path(video)
    _write_entry(entry, **TAMPERED[claims])
    with pytest.warns(UserWarning, match=re.escape(str(entry))) as caught:
        assert cache.get(video) is None
    assert len(caught) == 1 and "encoded again" in str(caught[0].message)
    # The caller encodes it again and puts it: the entry is replaced and believed.
    assert cache.put(video, EncodedVideo("clip.mp4", 4.0, _features(), 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cache.get(video).features, _features())


def test_the_duration_must_be_the_video_files_own(cache, video):
    """A 6 s video's features under the 4 s video's key: rows and duration agree with each other
    (6 rows at 1 frame/s), not with the file."""
    _write_entry(cache.entry_path(video), features=_features(rows=6), duration_s=np.float64(6.0))
    with pytest.warns(UserWarning, match="has a duration of 6 s, the video file 4 s"):
        assert cache.get(video) is None


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x10]) + data[offset + 1:]


def _declared_size_patched(data: bytes, member: str, size: int) -> bytes:
    """The zip's central directory saying that ``member`` holds ``size`` bytes."""
    at = data.index(b"PK\x01\x02")  # the first directory record
    while True:
        name_len = int.from_bytes(data[at + 28:at + 30], "little")
        if data[at + 46:at + 46 + name_len] == member.encode():
            return data[:at + 24] + size.to_bytes(4, "little") + data[at + 28:]
        extra_len, comment_len = (int.from_bytes(data[at + k:at + k + 2], "little") for k in (30, 32))
        at += 46 + name_len + extra_len + comment_len


def _npy_asking_for(shape) -> bytes:
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    text = repr(header).encode()
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(4096)


def _bomb(entry: Path, compression: int) -> None:
    """A small entry whose features header asks for 7 GiB (1.9e9 rows of one float32)."""
    with zipfile.ZipFile(entry, "w", compression) as archive:
        archive.writestr("features.npy", _npy_asking_for((7 * 2**30 // 4, 1)))
        for name, value in (("duration_s", np.float64(4.0)), ("key", np.str_(entry.stem))):
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.asarray(value))


DAMAGED = {
    "a byte flipped in the features": lambda entry, data: entry.write_bytes(
        _flip(data, data.index(_features().tobytes()) + 50)),
    "a byte flipped in the duration": lambda entry, data: entry.write_bytes(
        _flip(data, data.index(np.float64(4.0).tobytes()) + 6)),
    "a byte flipped in the zip directory": lambda entry, data: entry.write_bytes(_flip(data, len(data) - 30)),
    "a byte flipped in a npy header": lambda entry, data: entry.write_bytes(_flip(data, data.index(b"descr") + 10)),
    "truncated": lambda entry, data: entry.write_bytes(data[: len(data) // 2]),
    "empty": lambda entry, data: entry.write_bytes(b""),
    "a zip header, then junk": lambda entry, data: entry.write_bytes(b"PK\x03\x04" + os.urandom(300)),
    "not a zip": lambda entry, data: entry.write_text("hello"),
    "the directory declares 2 GiB": lambda entry, data: entry.write_bytes(
        _declared_size_patched(data, "features.npy", 2**31 - 1)),
    "a deflated member asks for 7 GiB": lambda entry, data: _bomb(entry, zipfile.ZIP_DEFLATED),
    "a stored member asks for 7 GiB": lambda entry, data: _bomb(entry, zipfile.ZIP_STORED),
    "much larger than the features can be": lambda entry, data: entry.write_bytes(data + bytes(2**20)),
    "a folder": lambda entry, data: (entry.unlink(), entry.mkdir()),
    "a named pipe": lambda entry, data: (entry.unlink(), os.mkfifo(entry)),
    "a link to a good entry": lambda entry, data: (entry.rename(entry.with_suffix(".bak")),
                                                   entry.symlink_to(entry.with_suffix(".bak"))),
}


@pytest.mark.parametrize("damage", list(DAMAGED), ids=list(DAMAGED))
def test_a_damaged_entry_is_a_warning_and_a_miss(cache, video, damage):
    entry = cache.entry_path(video)
    _write_entry(entry)
    DAMAGED[damage](entry, entry.read_bytes())
    with pytest.warns(UserWarning, match=re.escape(str(entry))) as caught:
        assert cache.get(video) is None
    assert len(caught) == 1
    if damage == "a folder":  # not ours to remove: the write fails, with a warning, and grounding goes on
        with pytest.warns(UserWarning, match=f"{re.escape(str(entry))} could not be written"):
            assert not cache.put(video, EncodedVideo("clip.mp4", 4.0, _features(), 1.0))
        assert entry.is_dir()
    else:
        assert cache.put(video, EncodedVideo("clip.mp4", 4.0, _features(), 1.0))
        assert entry.is_file() and not entry.is_symlink()
        np.testing.assert_array_equal(cache.get(video).features, _features())


def test_a_replaced_video_misses_even_with_its_size_and_mtime_restored(cache, video):
    cache.put(video, EncodedVideo("clip.mp4", 4.0, _features(), 1.0))
    assert cache.get(video) is not None
    before = os.stat(video)
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0xFF  # other bytes, the same size
    while os.stat(video).st_ctime_ns == before.st_ctime_ns:  # (again while the coarse clock still reads `before`)
        video.write_bytes(bytes(data))
        os.utime(video, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(video)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(video) is None  # a miss, not a warning: the entry is another file's


@pytest.mark.parametrize("mode", [0o777, 0o757, 0o703])
def test_a_folder_anyone_can_write_is_refused(tmp_path, mode):
    folder = tmp_path / "shared-cache"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(FeatureCacheError, match="can be written by others.*chmod go-w"):
        check_folder(folder)


AS_ROOT = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                             reason="giving a folder to another user or group needs root")


@AS_ROOT
def test_a_group_writable_folder_is_refused_unless_the_group_is_the_owners_own(tmp_path):
    """root's group is root, of no other member: its g+w folder (umask 002) is root's alone; the
    same folder given to the group nogroup (65534) is not."""
    folder = tmp_path / "group-cache"
    folder.mkdir()
    folder.chmod(0o775)
    assert check_folder(folder) == folder.resolve()
    os.chown(folder, -1, 65534)
    with pytest.raises(FeatureCacheError, match="can be written by others"):
        check_folder(folder)


@AS_ROOT
def test_a_folder_or_entry_of_another_user_is_refused(cache, video, tmp_path):
    folder = tmp_path / "their-cache"
    folder.mkdir(mode=0o755)
    os.chown(folder, 65534, -1)
    with pytest.raises(FeatureCacheError, match="belongs to another user"):
        check_folder(folder)
    entry = cache.entry_path(video)
    _write_entry(entry)
    os.chown(entry, 65534, -1)
    with pytest.warns(UserWarning, match=f"{re.escape(str(entry))} belongs to another user"):
        assert cache.get(video) is None


def test_a_new_folder_is_ours_alone_and_stale_temporaries_go(tmp_path):
    folder = tmp_path / "a" / "cache"
    FeatureCache.open(folder, encoder_spec=None, fps=1.0, feature_dim=WIDTH)
    assert folder.stat().st_mode & 0o777 == 0o700
    stale = folder / ".x.npz.999999999.tmp"  # a killed writer's (no such process)
    live = folder / f".y.npz.{os.getpid()}.tmp"  # a live writer's
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    FeatureCache.open(folder, encoder_spec=None, fps=1.0, feature_dim=WIDTH)
    assert not stale.exists() and live.exists()


# Through the batch: the demo model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def grounder():
    from g2l.assets import demo_checkpoint
    from g2l.inference import Grounder

    return Grounder.from_pretrained(str(demo_checkpoint()), device="cpu")


@pytest.fixture()
def pairs(clip, tmp_path):
    shutil.copy(clip, tmp_path / "a.mp4")
    write_test_video(tmp_path / "b.mp4", duration_s=6.0, fps=10.0, size=(32, 32))
    rows = [{"id": 1, "video": "a.mp4", "query": "a square grows"}, {"id": 2, "video": "b.mp4", "query": "a circle"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _answers(path: Path) -> dict:
    return {entry["id"]: entry["moments"] for entry in map(json.loads, path.read_text().splitlines())}


def test_a_tampered_entry_is_never_an_answer(grounder, pairs, tmp_path):
    """The issue's case: features x 1e6 and a duration of 1e9 s were answered with moments at
    750,000,000 s in a short video; now the video is encoded again and the entry replaced."""
    folder = tmp_path / "cache"
    first = ground_batch(grounder, pairs, tmp_path / "1.jsonl", top_k=2, cache_dir=folder)
    assert first.videos_encoded == 2
    cache = FeatureCache.for_grounder(folder, grounder)
    entry = cache.entry_path(tmp_path / "a.mp4")
    with np.load(entry) as data:
        _write_entry(entry, features=data["features"] * 1e6, duration_s=np.float64(1e9))
    with pytest.warns(UserWarning, match=re.escape(str(entry))):
        second = ground_batch(grounder, pairs, tmp_path / "2.jsonl", top_k=2, cache_dir=folder)
    assert (second.videos_encoded, second.videos_from_cache, second.failures) == (1, 1, [])
    assert _answers(tmp_path / "2.jsonl") == _answers(tmp_path / "1.jsonl")
    assert all(0 <= m["start"] < m["end"] <= 4.0 + 1e-6 for m in _answers(tmp_path / "2.jsonl")[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # replaced: believed again, with no warning
        third = ground_batch(grounder, pairs, tmp_path / "3.jsonl", top_k=2, cache_dir=folder)
    assert third.videos_from_cache == 2 and _answers(tmp_path / "3.jsonl") == _answers(tmp_path / "1.jsonl")


UNUSABLE = {  # a folder that cannot be used -> what the warning says
    "under a file": (lambda tmp: tmp / "a-file" / "cache", "cannot be created"),
    "under /proc": (lambda tmp: Path("/proc/g2l-cache"), "cannot be created"),
    "a file": (lambda tmp: tmp / "a-file", "exists and is not a folder"),
    "read-only": (lambda tmp: tmp / "read-only", "is not writable"),
}


@pytest.mark.parametrize("kind", list(UNUSABLE), ids=list(UNUSABLE))
def test_an_unusable_folder_warns_once_and_grounding_goes_on(grounder, pairs, tmp_path, kind):
    if kind == "read-only" and hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root writes a read-only folder")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "read-only").mkdir(mode=0o500)
    folder, reason = UNUSABLE[kind]
    folder = folder(tmp_path)
    with pytest.warns(UserWarning, match="goes on without the cache") as caught:
        summary = ground_batch(grounder, pairs, tmp_path / "out.jsonl", top_k=2, cache_dir=folder)
    assert len(caught) == 1 and f"cache folder {folder} {reason}" in str(caught[0].message)
    assert summary.answered == 2 and summary.failures == [] and summary.videos_encoded == 2


def test_a_shared_folder_is_not_used(grounder, pairs, tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.warns(UserWarning, match="can be written by others"):
        summary = ground_batch(grounder, pairs, tmp_path / "out.jsonl", top_k=2, cache_dir=folder)
    assert summary.answered == 2 and list(folder.iterdir()) == []


def test_a_failed_write_warns_once_and_grounding_goes_on(grounder, pairs, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    folder = tmp_path / "cache"
    with pytest.warns(UserWarning, match="could not be written \\(No space left on device\\)") as caught:
        summary = ground_batch(grounder, pairs, tmp_path / "out.jsonl", top_k=2, cache_dir=folder)
    assert len([w for w in caught if "could not be written" in str(w.message)]) == 1
    assert summary.answered == 2 and summary.failures == [] and list(folder.iterdir()) == []


def test_the_command_line_goes_on_without_an_unusable_cache(pairs, tmp_path, capsys):
    from g2l.cli import ground_main

    (tmp_path / "a-file").write_text("x")
    code = ground_main(["--batch", str(pairs), "--out", str(tmp_path / "out.jsonl"), "--cache",
                        str(tmp_path / "a-file"), "--quiet"])
    stderr = capsys.readouterr().err
    assert code == 0, stderr
    assert f"warning: cache folder {tmp_path / 'a-file'} exists and is not a folder" in stderr
    assert "Traceback" not in stderr and len(_answers(tmp_path / "out.jsonl")) == 2


def test_the_feature_bound_is_above_real_features(grounder, clip):
    """MAX_FEATURE_ABS refuses features x 1e6, not a real encoder's."""
    features = grounder.encode_video(clip).features
    assert 0 < np.abs(features).max() < MAX_FEATURE_ABS / 100
