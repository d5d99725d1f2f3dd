"""Open a file that came from elsewhere (a checkpoint, a file of a model folder) only when it is
what it claims to be: a regular file, of a bounded size, and, for a folder's files, one that lies
inside the folder.

A model folder is untrusted data (g2l/io/pretrained.py): its ``vocab.txt`` may be a symbolic
link to ``/proc/self/environ`` or ``~/.ssh/id_rsa``, and a checkpoint path may name ``/dev/zero``
or a FIFO, which a plain ``open().read()`` would read without end or wait on for ever. A folder's
file is opened the ``openat`` way: the folder once (every component of its resolved path with
``O_NOFOLLOW``), then each component below it relative to the descriptor of the one above
(``os.open(name, dir_fd=...)`` with ``O_NOFOLLOW``), so that no component can be swapped for a
link between a check and the open; a link met on the way is read (``readlink``) and followed only
while it stays inside the folder. Every open is ``O_NONBLOCK`` (a FIFO does not block it);
``fstat`` of the open descriptor decides whether it is a regular file and how big it is, before a
byte is read. A hardlink is a regular file and is allowed: its content is the folder owner's to
choose, as any file's is.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from pathlib import Path
from typing import BinaryIO

from g2l.errors import G2LError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 where the platform has none (Windows)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_SEARCH = getattr(os, "O_PATH", os.O_RDONLY)  # a folder opened only to walk through: no read right needed
# openat-style opens need dir_fd and O_NOFOLLOW (POSIX); elsewhere the path is resolved and checked.
_OPENAT = {os.open, os.readlink} <= os.supports_dir_fd and bool(_NOFOLLOW) and bool(_DIRECTORY)
MAX_LINKS = 40  # links followed on the way to one file (Linux's own limit)


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


class _Outside(G2LError):
    """A link on the way to a folder's file leads out of the folder."""


def _open_folder(root: str) -> int:
    """A descriptor of the folder ``root`` (an absolute path without links), opened from ``/`` one
    component at a time with ``O_NOFOLLOW``: a component swapped for a link since ``root`` was
    resolved is refused (``ELOOP`` / ``ENOTDIR``), not followed."""
    fd = os.open("/", _SEARCH | _DIRECTORY | _CLOEXEC)
    try:
        for part in Path(root).parts[1:]:
            next_fd = os.open(part, _SEARCH | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


class Folder:
    """A folder held open by its descriptor (``with Folder(path) as folder:``), so that every file
    opened below it with ``open_regular_file(..., within=folder)`` comes from this very folder,
    even if its name is swapped for a link meanwhile. ``path`` is the folder's resolved path."""

    def __init__(self, path: str | Path):
        self.path = os.path.realpath(path)
        self.fd = _open_folder(self.path) if _OPENAT else None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "Folder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_below(root: str, root_fd: int, parts: list[str], flags: int) -> int:
    """Open ``parts`` (components below the folder ``root`` open as ``root_fd``) relative to one
    descriptor after another, each with ``O_NOFOLLOW``. A link met on the way is read and its target
    walked in turn, while it stays inside the folder (``..`` above the folder, or an absolute target
    outside it, raises ``_Outside``). Returns the descriptor of the last component."""
    todo = deque(parts)
    above: list[int] = []  # descriptors of the folders walked into below root, deepest last
    links = 0
    try:
        while todo:
            part = todo.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not above:
                    raise _Outside
                os.close(above.pop())
                continue
            here = above[-1] if above else root_fd
            last = not any(p not in ("", ".") for p in todo)
            try:
                fd = os.open(part, (flags | _NONBLOCK if last else _SEARCH | _DIRECTORY) | _NOFOLLOW | _CLOEXEC,
                             dir_fd=here)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
                    raise
                try:
                    target = os.readlink(part, dir_fd=here)
                except OSError:  # not a link after all: a file where a folder was expected
                    raise error from None
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links") from None
                if os.path.isabs(target):  # inside the folder only if it resolves below root
                    resolved = os.path.realpath(target)
                    if resolved != root and not resolved.startswith(root.rstrip(os.sep) + os.sep):
                        raise _Outside from None
                    while above:
                        os.close(above.pop())
                    target = os.path.relpath(resolved, root)
                todo.extendleft(reversed(Path(target).parts))
                continue
            if last:
                return fd
            above.append(fd)
        raise IsADirectoryError(errno.EISDIR, "the folder itself, not a file in it")
    finally:
        for fd in above:
            os.close(fd)


def _parts_below(path: Path, root: str, given: str) -> list[str]:
    """The components of ``path`` below the folder ``root`` (resolved; ``given``: as the caller named
    it). Taken from the names alone when ``path`` is spelled below either; otherwise its parent is
    resolved, which only names the components: each is then opened below the folder's descriptor
    with ``O_NOFOLLOW``, so a swap after this point is refused, never followed."""
    spelled = os.path.abspath(path)
    for folder in (given, root):
        prefix = folder.rstrip(os.sep) + os.sep
        if spelled.startswith(prefix):
            return list(Path(spelled[len(prefix):]).parts)
    parent = os.path.realpath(path.parent)
    if parent != root and not parent.startswith(root.rstrip(os.sep) + os.sep):
        raise _Outside
    return [*Path(os.path.relpath(parent, root)).parts, path.name]


def _open_within(path: Path, within: "str | Path | Folder", flags: int, what: str) -> int:
    """``path`` opened inside the folder ``within`` the ``openat`` way (the module docstring)."""
    folder = within if isinstance(within, Folder) else None
    given = os.path.abspath(within.path if folder else within)
    try:
        if folder is None:
            folder = Folder(within)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise UnsafeFileError(f"{what}: its folder {within} changed while it was read or cannot be opened "
                              f"({error.strerror or error}); g2l refuses it") from None
    try:
        return _open_below(folder.path, folder.fd, _parts_below(path, folder.path, given), flags)
    except _Outside:
        raise UnsafeFileError(
            f"{what} is a link to {os.path.realpath(path)}, outside the folder {folder.path}; g2l reads only files "
            "inside a model folder, so replace the link by the file itself"
        ) from None
    finally:
        if folder is not within:
            folder.close()


def open_regular_file(path: str | Path, *, what: str, max_bytes: int,
                      within: str | Path | Folder | None = None) -> BinaryIO:
    """``path`` opened for binary reading, after checking that it is a regular file of at most
    ``max_bytes`` and, when ``within`` is given, that it lies inside the folder ``within``: opened
    relative to the folder's descriptor, no component followed as a link unless it stays inside
    (the module docstring). ``what`` names the file in messages ("checkpoint x.pt", "model folder
    F: vocab.txt"). Raises ``UnsafeFileError`` (or ``FileNotFoundError``)."""
    path = Path(path)
    flags = os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0)
    try:
        if within is not None and _OPENAT:
            fd = _open_within(path, within, flags, what)
        else:
            if within is not None:  # no openat here: resolve, check, and open the last component unfollowed
                root = Path(within.path if isinstance(within, Folder) else within).resolve()
                resolved = path.resolve()
                if resolved != root and root not in resolved.parents:
                    raise UnsafeFileError(
                        f"{what} is a link to {resolved}, outside the folder {root}; g2l reads only files inside a "
                        "model folder, so replace the link by the file itself"
                    )
                path, flags = resolved, flags | _NOFOLLOW
            fd = os.open(path, flags)
    except (FileNotFoundError, UnsafeFileError):
        raise
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(path):
            raise UnsafeFileError(f"{what} is a symbolic link that changed while it was read, or a loop of links; "
                                  "g2l refuses it") from None
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


class NotRegularFile(OSError):
    """``open_regular``: what was opened is not a regular file (``mode``: its ``st_mode``)."""

    def __init__(self, path, mode: int):
        super().__init__(errno.EINVAL, f"not a regular file ({_kind(mode)})", str(path))
        self.mode = mode


def open_regular(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o644, *, follow_links: bool = False) -> int:
    """``os.open`` of a file g2l keeps for itself (a lock, a cache entry, an index member, an output it
    appends to), as a descriptor: never through a link unless ``follow_links`` (``O_NOFOLLOW``: a link,
    even to a missing path, is neither followed nor created through: ``ELOOP``), never waiting
    (``O_NONBLOCK``: a FIFO does not hang the open; the descriptor blocks again once checked), and only
    a regular file (``fstat`` of what was opened, else ``NotRegularFile``). Other failures are the
    ``OSError`` of ``os.open``; ``open_problem`` words any of them."""
    flags |= _NONBLOCK | _CLOEXEC | getattr(os, "O_BINARY", 0) | (0 if follow_links else _NOFOLLOW)
    fd = os.open(path, flags, mode)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path, info.st_mode)
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_problem(error: OSError) -> str:
    """Why ``open_regular`` could not open its file, as the end of a sentence ("it is a link", ...)."""
    if isinstance(error, NotRegularFile):
        return "it is not a regular file"
    return ({errno.ELOOP: "it is a link", errno.EINVAL: "it is not a regular file"}.get(error.errno)
            or error.strerror or str(error))


def reopen_path(file: BinaryIO, fallback: str | Path) -> str:
    """A path that opens the very file ``file`` has open (``/proc/self/fd/N`` or ``/dev/fd/N``), for a
    library that takes only a file name (safetensors): no name between the check and the read can
    be swapped. Where neither exists (Windows), ``fallback``, the name it was opened by."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return f"{folder}/{file.fileno()}"
    return str(fallback)


def read_text_file(path: str | Path, *, what: str, max_bytes: int, within: str | Path | Folder | None = None) -> str:
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


def _private_group(info: os.stat_result) -> bool:
    """Whether the group of a file is its owner's private group (named as the owner, the owner's
    primary group, no other member listed): the scheme under which umask 002 makes folders
    group-writable that nobody else can write."""
    try:
        import grp
        import pwd

        group, owner = grp.getgrgid(info.st_gid), pwd.getpwuid(info.st_uid)
    except (ImportError, KeyError):  # no such database (Windows), or an unnamed group or owner
        return False
    return group.gr_name == owner.pw_name and owner.pw_gid == info.st_gid and set(group.gr_mem) <= {owner.pw_name}


def writable_by_others(info: os.stat_result) -> bool:
    """Whether a file or folder of mode ``info`` can be written by someone other than its owner (who
    could plant what g2l would read from it): writable by all, or by a group that is not the owner's
    private group."""
    return bool(info.st_mode & stat.S_IWOTH or (info.st_mode & stat.S_IWGRP and not _private_group(info)))


def sha256_file(path: str | Path, *, follow_links: bool = False) -> str:
    """The SHA-256 of the regular file ``path`` (``open_regular``: never waiting on a FIFO, never
    through a link unless ``follow_links``); anything else is an ``OSError``, never read."""
    import hashlib

    digest = hashlib.sha256()
    with os.fdopen(open_regular(path, follow_links=follow_links), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
