"""The one base of the errors g2l raises for bad input.

``G2LError`` subclasses ``ValueError``, so ``except ValueError`` still catches it. Modules name
their own subclasses where a caller may want to tell errors apart (``ConfigError``,
``CheckpointError``, ``VideoReadError``, ...). Every message is one sentence that names the input
and says what to do; the command line catches ``G2LError`` once and prints that sentence instead
of a traceback (``g2l.cli.run_cli``).

Errors that mean a bug rather than bad input (a wrong shape passed between functions, a kernel's
impossible state) stay plain ``ValueError`` or ``RuntimeError`` and keep their traceback.
"""

import reprlib
from typing import Any

MAX_QUOTE_CHARS = 80  # of a value quoted in a message


class G2LError(ValueError):
    """Bad input: a missing or unreadable file, a wrong value, an unusable checkpoint or video."""


def path_problem(path) -> str | None:
    """Why ``path`` cannot be read as a regular file, worded to follow the path in a sentence
    ("does not exist", "is a directory", "is not a regular file (a character device)", and for a
    link "is a link to /dev/zero, which is not a regular file (a character device)"), or None when
    it is one. The caller adds what to do."""
    import os
    import stat
    from pathlib import Path

    path, link = Path(path), ""
    try:
        link = f"is a link to {os.readlink(path)}, which " if path.is_symlink() else ""
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{link}does not exist"
    except OSError as error:  # a loop of links, a name too long, no permission to look
        return f"cannot be reached ({error.strerror or error})"
    except ValueError:  # a NUL character, which no file name can hold
        return "cannot be a file name (it holds a NUL character)"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return f"{link}is a directory"
    kinds = [(stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
             (stat.S_ISSOCK, "a socket")]
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    return f"{link}is not a regular file ({kind})"


class _Repr(reprlib.Repr):
    """reprlib's bounded repr (a few items, a few levels) that also prints a huge integer by its size,
    since ``repr`` of an integer of more than 4,300 digits is a ValueError."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict, self.maxset = 3, 5, 5, 4, 5
        self.maxstring, self.maxother, self.maxlong = MAX_QUOTE_CHARS, MAX_QUOTE_CHARS, MAX_QUOTE_CHARS

    def repr_int(self, value, level):
        if value.bit_length() > 3 * MAX_QUOTE_CHARS:  # more digits than a message shows
            return f"<an integer of {_digit_count(value)} digits>"
        return super().repr_int(value, level)


def _digit_count(value: int) -> int:
    """The decimal digits of ``value``, without converting it to a string (which Python refuses past
    4,300 digits): within one of the truth, as a message needs."""
    return int(abs(value).bit_length() * 0.30103) + 1


def quote(value: Any) -> str:
    """``repr(value)`` for a message, cut to about ``MAX_QUOTE_CHARS`` characters without expanding the
    value first: a list of lists that share one another (a YAML alias bomb, a pickle's references)
    is shown a few items and levels deep, never walked whole."""
    text = _Repr().repr(value)
    return text if len(text) <= MAX_QUOTE_CHARS else text[: MAX_QUOTE_CHARS - 3] + "..."
