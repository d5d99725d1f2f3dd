"""The command line has one home: every tools/*.py is a thin shim onto a g2l.cli function, and the
same function is a console script of pyproject.toml."""

import ast
import tomllib
from pathlib import Path

import g2l.cli
from g2l.synthetic import real_stats

REPO = Path(__file__).resolve().parents[2]


def shim_target(path: Path) -> str:
    """The g2l.cli function a tools/ script calls; fails unless the script is only that call."""
    tree = ast.parse(path.read_text())
    body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    imports = [node for node in body if isinstance(node, (ast.Import, ast.ImportFrom))]
    rest = [node for node in body if node not in imports]
    assert [ast.unparse(node) for node in imports[:-1]] == ["import sys"], path
    (names,) = [node.names for node in imports[-1:] if isinstance(node, ast.ImportFrom) and node.module == "g2l.cli"]
    (function,) = [alias.name for alias in names]
    assert [ast.unparse(node) for node in rest] == [f"if __name__ == '__main__':\n    sys.exit({function}())"], path
    return function


def test_every_tool_is_a_thin_shim_and_a_console_script():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    targets = {shim_target(path) for path in sorted((REPO / "tools").glob("*.py"))}
    assert len(targets) == len(list((REPO / "tools").glob("*.py"))) == 13
    assert sorted(targets) == sorted(value.removeprefix("g2l.cli:") for value in scripts.values())
    assert all(value.startswith("g2l.cli:") and callable(getattr(g2l.cli, value[len("g2l.cli:"):]))
               for value in scripts.values())


def test_no_module_but_cli_parses_arguments():
    parsers = [path.relative_to(REPO).as_posix() for path in sorted((REPO / "g2l").rglob("*.py"))
               if "argparse" in path.read_text() or "sys.argv" in path.read_text()]
    assert parsers and all(path.startswith("g2l/cli/") for path in parsers), parsers


def test_real_stats_prints_the_recorded_table(shared_data, capsys):
    assert g2l.cli.real_stats_main([str(shared_data / "annotations")]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith('"charades": RealStatistics(') and printed in Path(real_stats.__file__).read_text()
