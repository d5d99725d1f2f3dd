"""Files shipped inside the package, found the same way in a clone and in an installed copy.

``demo.pt`` is the built-in demo's checkpoint. In the repository it is a link to
``checkpoints/demo.pt``, the one copy, whose checksum and rebuild command are in
``checkpoints/README.md``; building the package puts the file itself into the wheel.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def demo_checkpoint() -> Path:
    """The shipped demo checkpoint (the default of ``g2l-ground``)."""
    return Path(str(files(__name__) / "demo.pt"))
