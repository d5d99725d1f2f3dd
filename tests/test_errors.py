"""One error type: every exception class g2l defines is bad input and subclasses G2LError, and the
command line turns any G2LError, including one it has never heard of, into one line and exit 2."""

import importlib
import inspect
import pkgutil

import g2l
from g2l.cli import run_cli
from g2l.errors import G2LError


def g2l_modules():
    return [importlib.import_module(info.name) for info in pkgutil.walk_packages(g2l.__path__, "g2l.")]


def test_every_exception_class_in_g2l_subclasses_g2l_error():
    defined = {
        f"{module.__name__}.{name}": obj
        for module in g2l_modules()
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__
    }
    assert len(defined) >= 13, sorted(defined)  # the modules were found and imported
    assert not [name for name, cls in defined.items() if not issubclass(cls, G2LError)]
    assert issubclass(G2LError, ValueError)  # callers that catch ValueError keep working


def test_the_command_line_catches_any_g2l_error_once(capsys):
    class NewError(G2LError):
        """An error no table lists."""

    def main(argv):
        raise NewError("the input x is wrong; pass y instead")

    assert run_cli(main, []) == 2
    err = capsys.readouterr().err
    assert err == "error: the input x is wrong; pass y instead\n"


def test_other_exceptions_keep_their_traceback():
    def main(argv):
        raise RuntimeError("a bug")

    try:
        run_cli(main, [])
    except RuntimeError as error:
        assert str(error) == "a bug"
    else:
        raise AssertionError("a bug must not be reported as bad input")
