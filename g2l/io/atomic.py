"""Write files so that a reader never sees half of one: write a temporary file beside the target,
flush it to disk, then rename it onto the target (``os.replace`` is atomic on one file system). On
failure the temporary file is removed and the target is left as it was; a process killed mid-write
leaves its temporary (``.<name>.<pid>.tmp``), which ``remove_stale_temporaries`` deletes later.

``kill_point(name)`` marks the moments where a killed process leaves files in a state worth
testing (``before-rename:<file name>`` here, ``between-checkpoints`` in the training loop). It does
nothing: the kill -9 tests start training through ``tests/crash_points.py``, which replaces it
with a function that kills the process at the point they name. Library code looks it up as
``atomic.kill_point`` at each call, so that replacing this one attribute reaches every point."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from g2l.io.safe_files import open_problem, open_regular

TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)(?:\.[0-9a-f]{8})?\.tmp$")


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a folder cannot be opened on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync
        pass
    finally:
        os.close(fd)


def sync_folder(folder: str | Path) -> None:
    """Flush every file of ``folder`` and the folder itself to disk (before it is renamed into place)."""
    folder = Path(folder)
    for path in folder.iterdir():
        if path.is_file():
            _fsync(path)
    _fsync(folder)


def kill_point(name: str) -> None:
    """A named point where a killed process leaves files worth testing; does nothing (see above)."""


_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def _create_temporary(path: Path) -> Path:
    """A new, empty temporary beside ``path``, created by this call and never through a link: a file
    or link already at a temporary's name (a killed writer's, or one planted in a shared folder to
    redirect the write) is never opened, another name is taken instead."""
    for attempt in range(100):
        suffix = "" if attempt == 0 else f".{secrets.token_hex(4)}"
        temporary = path.with_name(f".{path.name}.{os.getpid()}{suffix}.tmp")
        try:
            fd = os.open(temporary, _EXCLUSIVE, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return temporary
    raise FileExistsError(f"could not create a temporary file beside {path}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(target) as tmp:`` write ``tmp``; it becomes ``target`` when the block succeeds.

    ``tmp`` exists (empty) when the block starts, created exclusively by this process (``O_EXCL |
    O_NOFOLLOW``), so that writing it by name never follows a link someone planted there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _create_temporary(path)
    try:
        yield temporary
        if temporary.is_symlink() or not temporary.is_file():  # swapped for a link or a folder mid-write
            raise OSError(f"the temporary file {temporary} was replaced while it was written")
        _fsync(temporary)  # the data is on disk before the name points at it
        kill_point(f"before-rename:{path.name}")
        os.replace(temporary, path)
        _fsync(path.parent)  # and the rename itself survives a power cut
    except BaseException:
        if temporary.is_symlink() or temporary.is_file():
            temporary.unlink(missing_ok=True)
        raise


def lock_file(path: str | Path) -> int | None:
    """Take an exclusive lock (``flock``) on the lock file ``path``, creating it if missing; the lock
    is held until the returned descriptor is closed (or the process ends, however it ends). The file
    is opened by ``g2l.io.safe_files.open_regular``: never through a link (a link planted at its name
    is refused, its target never created), never waiting on a FIFO, and only a regular file. Raises
    ``BlockingIOError`` when another process holds the lock and ``OSError`` when the file cannot be
    used (``lock_problem`` words it). Returns None where the platform has no ``flock`` (no lock)."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


lock_problem = open_problem  # why a lock file cannot be used, as the end of a sentence


def hold_lock(path: str | Path, *, error: type[Exception], busy: str, fix: str) -> int | None:
    """``lock_file(path)``, its failures as one ``error`` sentence: ``busy`` when another process holds
    the lock; else that the lock file cannot be used and why, then "remove it if it is a stray" and ``fix``."""
    try:
        return lock_file(path)
    except BlockingIOError:
        raise error(busy) from None
    except OSError as problem:
        raise error(f"the lock file {path} cannot be used ({lock_problem(problem)}); remove it if it is a "
                    f"stray{fix}") from None


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, but another user's
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries that killed writers left in ``folder`` (those of live processes stay);
    returns the paths removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        match = TEMPORARY.match(path.name)
        if match and path.is_file() and not _process_alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def unwritable_reason(path: str | Path, *, folder: bool = False) -> str | None:
    """Why ``path`` (a file, or a folder when ``folder``) cannot be written, as the end of a
    sentence that begins with the path, or None when it can. Checked before long work, so that the
    result is not lost at the end."""
    path = Path(path)
    try:
        if path.exists():
            if folder and not path.is_dir():
                return "is a file, not a folder"
            if not folder and path.is_dir():
                return "is a folder, not a file"
            return None if os.access(path, os.W_OK) else "is not writable"
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return f"cannot be created: {parent} is a file, not a folder"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"cannot be created: {parent} is not writable"
    except OSError as error:  # a name too long, no permission to look
        return f"cannot be reached ({error.strerror or error})"
    except ValueError:  # a NUL character
        return "cannot be a file name (it holds a NUL character)"
    return None
