"""Many videos, many queries, one command: ``g2l-ground --batch PAIRS.jsonl --out PREDS.jsonl``.

Input: one JSON object per line, ``{"video": PATH, "query": TEXT}`` or ``{"video": PATH, "queries":
[TEXT, ...]}``, with any other fields (ids, ground truth) carried through. A relative video path is
relative to the folder of the pairs file. Output: one line per input line, the input's fields plus
what ``g2l-ground --json`` gives for it: ``moments`` (and ``explanation``) for a ``query``,
``results`` (a list of ``{"query", "moments"[, "explanation"]}``) for ``queries``.

* Each distinct video is decoded and encoded once, whatever number of lines name it; lines are
  answered video by video, in the order their videos first appear, so the output's order can
  differ from the input's.
* ``cache_dir``: frame features are kept on disk, keyed by the video file (resolved path, size,
  modification time) and the frame encoder, so a later run over the same videos only encodes new ones.
* Resumable: an input line whose output is already in ``out_path`` (same fields) is skipped; a
  last line cut by a kill is dropped first.
* A bad line (not JSON, no video, an empty query) or a video that cannot be read is reported with
  its line number, counted and skipped; :class:`BatchSummary` holds the count.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from g2l import strict_json
from g2l.atomic import atomic_path
from g2l.errors import G2LError, path_problem
from g2l.feature_cache import FeatureCache
from g2l.inference import EncodedVideo, Grounder, GroundingError, QueryResult, check_queries

MAX_LINE_CHARS = 1_000_000  # a pairs line longer than this is refused (a query is a sentence)
OUTPUT_FIELDS = ("moments", "results", "explanation", "explanation_target", "explanation_relative_to")


class BatchError(G2LError):
    """The pairs file or the output file cannot be used at all."""


@dataclass
class PairsLine:
    line_no: int  # 1-based, in the pairs file
    fields: dict  # the input object, carried into the output
    video: Path
    queries: list[str]


@dataclass
class BatchSummary:
    lines: int = 0  # non-blank lines in the pairs file
    answered: int = 0  # lines written by this run
    already_done: int = 0  # lines found in the output and skipped
    queries: int = 0  # queries grounded by this run
    videos_encoded: int = 0
    videos_from_cache: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    elapsed_s: float = 0.0

    def report(self) -> str:
        parts = [f"{self.answered} of {self.lines} lines answered ({self.queries} queries)",
                 f"{self.already_done} already in the output",
                 f"{self.videos_encoded} videos encoded, {self.videos_from_cache} from the cache",
                 f"{len(self.failures)} failed", f"{self.elapsed_s:.1f} s"]
        return "; ".join(parts)


def _key(fields: dict) -> str:
    return json.dumps(fields, sort_keys=True, ensure_ascii=False)


def parse_pairs_line(text: str, line_no: int, base: Path) -> PairsLine:
    """One line of a pairs file -> :class:`PairsLine`; raises ``BatchError`` saying what is wrong."""
    if len(text) > MAX_LINE_CHARS:
        raise BatchError(f"the line is over {MAX_LINE_CHARS} characters")
    try:
        fields = strict_json.loads(text)
    except ValueError as error:
        raise BatchError(f"not a JSON object ({type(error).__name__})") from None
    if not isinstance(fields, dict):
        raise BatchError("not a JSON object")
    video = fields.get("video")
    if not isinstance(video, str) or not video.strip():
        raise BatchError("no \"video\" path")
    if ("query" in fields) == ("queries" in fields):
        raise BatchError("needs exactly one of \"query\" (a sentence) or \"queries\" (a list)")
    queries = [fields["query"]] if "query" in fields else fields["queries"]
    if not isinstance(queries, list) or not queries:
        raise BatchError("\"queries\" must be a non-empty list of sentences")
    if not all(isinstance(query, str) for query in queries):
        raise BatchError("a query that is not a string")
    try:
        queries = check_queries(queries)  # the rules of g2l-ground: stripped, with letters
    except GroundingError as error:
        raise BatchError(str(error)) from None
    for reserved in OUTPUT_FIELDS:
        if reserved in fields:
            raise BatchError(f"already has an output field \"{reserved}\"")
    path = Path(video).expanduser()
    return PairsLine(line_no, fields, path if path.is_absolute() else base / path, queries)


def read_pairs(path: str | Path) -> tuple[list[PairsLine], list[tuple[int, str]], int]:
    """``(lines, failures, count)``: the usable lines of a pairs file, the bad ones with their
    reasons, and the number of non-blank lines."""
    path = Path(path)
    problem = path_problem(path)
    if problem:
        raise BatchError(f"pairs file {path} {problem}; pass a JSON-lines file")
    base = path.resolve().parent
    lines, failures, count = [], [], 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            count += 1
            try:
                lines.append(parse_pairs_line(text, line_no, base))
            except BatchError as error:
                failures.append((line_no, str(error)))
    return lines, failures, count


def read_done(out_path: Path) -> set[str]:
    """The input fields already answered in ``out_path`` (a cut last line is removed from the file)."""
    if not out_path.exists():
        return set()
    if not out_path.is_file():
        raise BatchError(f"output {out_path} is not a regular file")
    raw = out_path.read_bytes()
    good_end, done = 0, set()
    for chunk in raw.splitlines(keepends=True):
        try:
            entry = strict_json.loads(chunk)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or not chunk.endswith(b"\n"):
            if raw[good_end + len(chunk):].strip():  # damage before the end: not ours to repair
                raise BatchError(f"output {out_path} has a line that is not JSON; move it away or pick another --out")
            break
        good_end += len(chunk)
        done.add(_key({k: v for k, v in entry.items() if k not in OUTPUT_FIELDS}))
    if good_end < len(raw):  # a line cut by a kill: drop it, atomically
        with atomic_path(out_path) as tmp:
            tmp.write_bytes(raw[:good_end])
    return done


def result_json(result: QueryResult, explanation=None) -> dict:
    """One query's answer as ``g2l-ground --json`` gives it (README, *File formats*): its moments and,
    with an explanation, each word's value and what the values are relative to."""
    out = {"moments": [{"start": m.start_s, "end": m.end_s, "score": m.score} for m in result.moments]}
    if explanation is not None:
        out["explanation"] = [{"word": w.word, "value": w.value} for w in explanation.words]
        out["explanation_target"] = explanation.target
        out["explanation_relative_to"] = explanation.relative_to
    return out


def answer(line: PairsLine, results: list[QueryResult], explanations: list | None) -> dict:
    """The output line of ``line``: its fields plus ``result_json`` of its query, or ``results``."""
    pairs = list(zip(results, explanations or [None] * len(results)))
    if "query" in line.fields:
        return {**line.fields, **result_json(*pairs[0])}
    return {**line.fields, "results": [{"query": r.query, **result_json(r, e)} for r, e in pairs]}


@dataclass
class BatchPlan:
    """What a run has to do: the lines not yet in the output, grouped by video (in the order their
    videos first appear), and the lines that could not be read."""

    by_video: dict[Path, list[PairsLine]]
    failures: list[tuple[int, str]]  # (line number, reason)
    lines: int  # non-blank lines in the pairs file
    already_done: int  # lines found in the output


def plan_batch(pairs_path: str | Path, out_path: str | Path) -> BatchPlan:
    """Read the pairs file and the output once: a bad pairs file or a damaged output stops here,
    before any model is loaded (a line cut by a kill at the output's end is dropped)."""
    lines, failures, count = read_pairs(pairs_path)
    done = read_done(Path(out_path))
    by_video: dict[Path, list[PairsLine]] = {}
    for line in lines:
        if _key(line.fields) not in done:
            by_video.setdefault(line.video, []).append(line)
    return BatchPlan(by_video, failures, count, len(lines) - sum(map(len, by_video.values())))


def ground_batch(grounder: Grounder, pairs_path: str | Path, out_path: str | Path, *, top_k: int = 5,
                 window_s: float | None = None, explain: bool = False, explain_target: str = "runner_up", seed: int = 0,
                 cache_dir: str | Path | None = None, on_video: Callable[[int, int, str], None] | None = None,
                 on_failure: Callable[[int, str], None] | None = None, plan: BatchPlan | None = None) -> BatchSummary:
    """Answer every line of ``pairs_path`` into ``out_path`` (appended; see the module docstring).

    ``on_video(done, total, name)`` is called after each video; ``on_failure(line_no, reason)`` for
    each line that fails, as it fails. ``plan``: what ``plan_batch(pairs_path, out_path)`` returned,
    if the caller read it already."""
    started = time.perf_counter()
    out_path, cache = Path(out_path), Path(cache_dir) if cache_dir is not None else None
    plan = plan or plan_batch(pairs_path, out_path)
    by_video = plan.by_video
    summary = BatchSummary(lines=plan.lines, already_done=plan.already_done, failures=list(plan.failures))
    for line_no, reason in plan.failures:
        if on_failure:
            on_failure(line_no, reason)

    def fail(line: PairsLine, reason: str) -> None:
        summary.failures.append((line.line_no, reason))
        if on_failure:
            on_failure(line.line_no, reason)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "a", encoding="utf-8") as out:
        for index, (video_path, video_lines) in enumerate(by_video.items(), start=1):
            try:
                video = _encoded(grounder, video_path, cache, summary)
            except (G2LError, OSError) as error:
                for line in video_lines:
                    fail(line, f"video {video_path}: {error}")
                video = None
            if video is not None:
                for line in video_lines:
                    try:
                        results = grounder.ground(video, line.queries, top_k=top_k, window_s=window_s)
                        explanations = None
                        if explain:
                            from g2l.explain import explain_top_moment

                            explanations = [explain_top_moment(grounder, video, r.query, window_s=window_s, seed=seed,
                                                               target=explain_target) for r in results]
                    except G2LError as error:
                        fail(line, str(error))
                        continue
                    out.write(strict_json.dumps(answer(line, results, explanations), ensure_ascii=False) + "\n")
                    out.flush()
                    summary.answered += 1
                    summary.queries += len(line.queries)
            if on_video:
                on_video(index, len(by_video), video_path.name)
        os.fsync(out.fileno())
    summary.failures.sort()
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _encoded(grounder: Grounder, path: Path, cache: Path | None, summary: BatchSummary) -> EncodedVideo:
    problem = path_problem(path)
    if problem:
        raise BatchError(problem)
    store = FeatureCache.for_grounder(cache, grounder) if cache is not None else None  # once; None: unusable, warned
    cached = store.get(path) if store is not None else None  # checked against the file; a bad entry warns
    if cached is not None:
        summary.videos_from_cache += 1
        return cached
    video = grounder.encode_video(path)
    summary.videos_encoded += 1
    if store is not None:
        store.put(path, video)  # best-effort: a failed write warns once
    return video
