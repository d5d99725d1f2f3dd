"""The one annotation record type every parser produces, and the report of what cleaning did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Annotation:
    """One query: a sentence grounded in one video.

    ``windows_s`` holds one or more ground-truth ``(start_s, end_s)`` windows in seconds, each
    already cleaned: ``0 <= start_s < end_s <= duration_s``. Most benchmarks have exactly one;
    QVHighlights may have several. ``windows_s[0]`` is the primary window used for training and
    single-window metrics.
    """

    video_id: str
    duration_s: float
    sentence: str
    windows_s: tuple[tuple[float, float], ...]


@dataclass
class CleaningReport:
    """Counts of what a parser kept, clamped and dropped, by reason.

    ``dropped`` and ``clamped`` map a short reason ("start >= end", "empty sentence", ...) to a count.
    ``examples`` keeps a few human-readable examples per reason for the message.
    """

    source: str
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    clamped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, example: str = "") -> None:
        self.dropped[reason] += 1
        self._remember(reason, example)

    def clamp(self, reason: str, example: str = "") -> None:
        self.clamped[reason] += 1
        self._remember(reason, example)

    def _remember(self, reason: str, example: str) -> None:
        if example:
            kept_examples = self.examples.setdefault(reason, [])
            if len(kept_examples) < 3:
                kept_examples.append(example)

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def num_clamped(self) -> int:
        return sum(self.clamped.values())

    def summary(self) -> str:
        """One line (or a few) a user can read: kept, dropped and clamped by reason."""
        parts = [f"{self.source}: kept {self.kept} queries"]
        if self.dropped:
            parts.append("dropped " + ", ".join(f"{n} ({r})" for r, n in sorted(self.dropped.items())))
        if self.clamped:
            parts.append("clamped " + ", ".join(f"{n} ({r})" for r, n in sorted(self.clamped.items())))
        return "; ".join(parts)
