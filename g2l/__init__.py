"""g2l: video grounding on a 2D moment map, trained with G2L's losses (the default; MMN's as an overlay).

    from g2l import Grounder, load_config

The public API is re-exported here and imported on first use, so ``import g2l`` stays cheap:

    Grounder, EncodedVideo, QueryResult, Moment   g2l.inference: ground sentences in a video
    VideoIndex                                    g2l.library: search moments across many videos
    load_config, Config                           g2l.config: the configuration
    G2LError                                      g2l.errors: the base of every bad-input error

Axis glossary used in docstrings and einops patterns throughout the package:

    b  videos in a batch          s  sentences per video       q  queries across the batch
    l  tokens                     p  pre-clips (P, rows of a video's features)
    t  map side (clips, N)        C  valid cells of the map (the proposals: mask2d's true cells)
    d  channels                   k  candidates (or neighbours, positives: named where used)

The 2D map is ``(b d t t)`` indexed ``[start, end]`` with a boolean ``mask2d (t t)``. The method
the code implements is written down in docs/method.md.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "Grounder": "g2l.inference",
    "EncodedVideo": "g2l.inference",
    "QueryResult": "g2l.inference",
    "Moment": "g2l.inference",
    "VideoIndex": "g2l.library",
    "load_config": "g2l.config",
    "Config": "g2l.config",
    "G2LError": "g2l.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'g2l' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # imported once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
