"""The one base of the errors g2l raises for bad input.

``G2LError`` subclasses ``ValueError``, so ``except ValueError`` still catches it. Modules name
their own subclasses where a caller may want to tell errors apart (``ConfigError``,
``CheckpointError``, ``VideoReadError``, ...). Every message is one sentence that names the input
and says what to do; the command line catches ``G2LError`` once and prints that sentence instead
of a traceback (``g2l.cli.run_cli``).

Errors that mean a bug rather than bad input (a wrong shape passed between functions, a kernel's
impossible state) stay plain ``ValueError`` or ``RuntimeError`` and keep their traceback.
"""


class G2LError(ValueError):
    """Bad input: a missing or unreadable file, a wrong value, an unusable checkpoint or video."""
