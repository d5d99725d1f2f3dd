import os
import subprocess
import sys

import pytest

from g2l.io.atomic import atomic_path, remove_stale_temporaries, unwritable_reason, write_text_atomic


def test_success_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_the_temporary_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def replace(source, target):
        events.append(("replace", os.stat(source).st_ino))
        return real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_text_atomic(tmp_path / "out.txt", "data")
    renamed = next(inode for kind, inode in events if kind == "replace")
    assert events.index(("fsync", renamed)) < events.index(("replace", renamed))


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has ended
    stale = tmp_path / f".last.pt.{dead_pid}.tmp"
    live = tmp_path / f".best.pt.{os.getpid()}.tmp"  # a write in progress in this process
    other = tmp_path / ".notes.tmp"
    for path in (stale, live, other):
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_unwritable_targets_are_named_before_the_work(tmp_path):
    (tmp_path / "a_file").write_text("x")
    assert unwritable_reason(tmp_path / "new.png") is None
    assert unwritable_reason(tmp_path / "sub" / "deeper" / "new.png") is None
    assert unwritable_reason(tmp_path) == "is a folder, not a file"
    assert unwritable_reason(tmp_path / "a_file", folder=True) == "is a file, not a folder"
    assert "is a file, not a folder" in unwritable_reason(tmp_path / "a_file" / "x.png")


def test_a_planted_link_at_the_temporary_name_is_never_written_through(tmp_path):
    # Someone who can write the folder plants a link named like our temporary, pointing at a file of
    # theirs or ours (here: "victim"); the write must neither touch the victim nor leave a link.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.txt"
    planted = tmp_path / f".out.txt.{os.getpid()}.tmp"
    planted.symlink_to(victim)
    write_text_atomic(target, "answer")
    assert victim.read_text() == "precious"
    assert target.read_text() == "answer" and not target.is_symlink()
    assert planted.is_symlink()  # left alone: not ours to follow or delete


def test_a_planted_link_to_a_missing_path_is_not_created(tmp_path):
    outside = tmp_path / "elsewhere" / "created.txt"
    (tmp_path / "elsewhere").mkdir()
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / f".out.txt.{os.getpid()}.tmp").symlink_to(outside)
    write_text_atomic(folder / "out.txt", "answer")
    assert not outside.exists()
    assert (folder / "out.txt").read_text() == "answer"


def test_a_temporary_is_created_fresh_and_empty(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as temporary:
        info = os.lstat(temporary)
        assert info.st_size == 0 and not temporary.is_symlink()
        temporary.write_text("x")
    assert target.read_text() == "x"
