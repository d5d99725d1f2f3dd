"""Search a video library: ``VideoIndex`` keeps the moment embeddings of many videos in one folder
(g2l/library/index.py) and searches them exactly (g2l/library/exact.py) for a sentence across all
of them. The commands are ``g2l-index`` and ``g2l-search`` (g2l/cli/library.py)."""

from g2l.library.index import (AddSummary, IndexedVideo, LibraryMoment, LibraryResult, VerifyReport, VideoIndex,
                               VideoIndexError, model_identity)

__all__ = ["VideoIndex", "VideoIndexError", "IndexedVideo", "LibraryMoment", "LibraryResult", "AddSummary",
           "VerifyReport", "model_identity"]
