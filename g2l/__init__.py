"""g2l: video grounding on a 2D moment map (MMN baseline, G2L losses).

Axis glossary used in docstrings and einops patterns throughout the package:

    b  videos in a batch          s  sentences per video       q  queries across the batch
    l  tokens                     p  pre-clips                 t  map side (clips, N)
    d  channels                   k  candidates

The 2D map is ``(b d t t)`` indexed ``[start, end]`` with a boolean ``mask2d (t t)``.
"""

__version__ = "0.1.0"
