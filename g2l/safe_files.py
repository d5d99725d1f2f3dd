"""Open a file that came from elsewhere (a checkpoint, a file of a model folder) only when it is
what it claims to be: a regular file, of a bounded size, and, for a folder's files, one that lies
inside the folder.

A model folder is untrusted data (g2l/engine/pretrained.py): its ``vocab.txt`` may be a symbolic
link to ``/proc/self/environ`` or ``~/.ssh/id_rsa``, and a checkpoint path may name ``/dev/zero``
or a FIFO, which a plain ``open().read()`` would read without end or wait on for ever. Here a
folder's file is resolved (links followed) and must land inside the resolved folder, and is then
opened with ``O_NOFOLLOW`` (the last component cannot be swapped for a link in between) and
``O_NONBLOCK`` (a FIFO does not block the open); ``fstat`` of the open descriptor decides whether it
is a regular file and how big it is, before a byte is read. A hardlink is a regular file and is
allowed: its content is the folder owner's to choose, as any file's is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from g2l.errors import G2LError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 where the platform has none (Windows)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class UnsafeFileError(G2LError):
    """A file that g2l refuses to read: a link out of its folder, not a regular file, too big."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def open_regular_file(path: str | Path, *, what: str, max_bytes: int, within: str | Path | None = None) -> BinaryIO:
    """``path`` opened for binary reading, after checking that it is a regular file of at most
    ``max_bytes`` and, when ``within`` is given, that it resolves to a path inside ``within``
    (links are followed only as far as that). ``what`` names the file in messages ("checkpoint
    x.pt", "model folder F: vocab.txt"). Raises ``UnsafeFileError`` (or ``FileNotFoundError``)."""
    path = Path(path)
    flags = os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0)
    if within is not None:
        root = Path(within).resolve()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise UnsafeFileError(
                f"{what} is a link to {resolved}, outside the folder {root}; g2l reads only files inside a model "
                "folder, so replace the link by the file itself"
            )
        path, flags = resolved, flags | _NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as error:
        if os.path.islink(path):  # O_NOFOLLOW met a link put there after the check above
            raise UnsafeFileError(f"{what} is a symbolic link that changed while it was read; g2l refuses it") from None
        raise UnsafeFileError(f"{what} could not be opened ({error.strerror or error}); check its permissions") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{what} is not a regular file (it is {_kind(info.st_mode)}); pass a file")
        if info.st_size > max_bytes:
            raise UnsafeFileError(
                f"{what} is {_megabytes(info.st_size)}, more than g2l reads for such a file ({_megabytes(max_bytes)}); "
                "it is not a file g2l wrote, do not use it"
            )
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text_file(path: str | Path, *, what: str, max_bytes: int, within: str | Path | None = None) -> str:
    """The UTF-8 text of ``path``, checked as ``open_regular_file`` does; the size is checked
    again while reading (a file that grows in between is cut off and refused)."""
    with open_regular_file(path, what=what, max_bytes=max_bytes, within=within) as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFileError(f"{what} is larger than g2l reads for such a file ({_megabytes(max_bytes)}); do not use it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeFileError(f"{what} is not UTF-8 text; the file is corrupt, copy it again") from None
