"""Files shipped inside the package, found the same way in a clone and in an installed copy.

``demo.pt`` is the built-in demo's checkpoint. In the repository it is a link to
``checkpoints/demo.pt``, the one copy, whose checksum and rebuild command are in
``checkpoints/README.md``; building the package puts the file itself into the wheel.
``demo.mp4`` and ``demo.json`` (the example video and its queries, which ``g2l-app`` offers) are
links to ``examples/`` in the same way.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def demo_checkpoint() -> Path:
    """The shipped demo checkpoint (the default of ``g2l-ground``)."""
    return Path(str(files(__name__) / "demo.pt"))


def demo_example() -> tuple[Path, list[str]]:
    """The shipped example video and its queries (``examples/demo.mp4``, ``examples/demo.json``)."""
    import json

    folder = Path(str(files(__name__)))
    queries = [entry["query"] for entry in json.loads((folder / "demo.json").read_text())["queries"]]
    return folder / "demo.mp4", queries
