"""Many videos, many queries, one command: ``g2l-ground --batch PAIRS.jsonl --out PREDS.jsonl``.

Input: one JSON object per line, ``{"video": PATH, "query": TEXT}`` or ``{"video": PATH, "queries":
[TEXT, ...]}``, with any other fields (ids, ground truth) carried through. A relative video path is
relative to the folder of the pairs file as it was named (a link to the pairs file is not followed
for this). Output: one line per input line, ``input_line`` (its line number) and ``input_sha256``
(the SHA-256 of its text), then the input's fields, then what ``g2l-ground --json`` gives for it:
``moments`` (and ``explanation``) for a ``query``, ``results`` (a list of ``{"query",
"moments"[, "explanation"]}``) for ``queries``.

* Each distinct video is decoded and encoded once, whatever number of lines name it; lines are
  answered video by video, in the order their videos first appear, so the output's order can
  differ from the input's.
* ``cache_dir``: frame features are kept on disk (g2l/feature_cache.py), so a later run over the
  same videos only encodes new ones.
* Resumable: an input line whose line number and text (``input_line``, ``input_sha256``) are
  already in ``out_path`` is skipped, so equal lines are each answered once and an edited line is
  answered again. ``PREDS.jsonl.made-by.json`` beside the output records what wrote it (the model's
  weights and config, the frame encoder, the precision, and the options that change answers); a
  resume with another model or other options is refused, as is an output without that record (a
  file g2l did not write). Only a last line without its newline (cut by a kill) is dropped. (The
  output's lock, record and keys: g2l/batch_output.py.)
* One writer at a time: a run holds an exclusive lock (``.PREDS.jsonl.lock``) from its plan to its
  end; a second run on the same output is refused.
* Bounded: a pairs line of more than ``MAX_LINE_BYTES`` or ``MAX_QUERIES_PER_LINE`` queries is that
  line's failure; the pairs file and the output are streamed, and the plan keeps a few numbers per
  line (line number, byte offset, hash, video), each line being read again when it is answered.
* A bad line (not JSON, no video, an empty query, anything its answer could not be written with) or
  a video that cannot be read is reported with its line number, counted and skipped;
  :class:`BatchSummary` holds the count.
"""

from __future__ import annotations

import hashlib
import os
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from g2l.batch_output import (UNBOUNDED_BYTES, BatchError, check_made_by, hold_lock, made_by, open_output_to_append,
                              open_output_to_read, read_answer_keys)
from g2l.errors import G2LError, path_problem
from g2l.feature_cache import FeatureCache
from g2l.inference import EncodedVideo, Grounder, GroundingError, QueryResult, check_queries, result_json
from g2l.io import strict_json
from g2l.io.atomic import remove_stale_temporaries
from g2l.io.safe_files import open_regular_file

MAX_LINE_BYTES = 1_000_000  # a pairs line longer than this is refused (a query is a sentence)
MAX_QUERIES_PER_LINE = 1_000  # more queries on one line are refused (48,000 took 3.8 GB at once)
KEY_FIELDS = ("input_line", "input_sha256")  # the first fields of every output line: its resume key
OUTPUT_FIELDS = (*KEY_FIELDS, "moments", "results", "explanation", "explanation_target", "explanation_relative_to")
_BOM = b"\xef\xbb\xbf"


@dataclass
class PairsLine:
    line_no: int  # 1-based, in the pairs file
    fields: dict  # the input object, carried into the output
    video: str  # absolute, not resolved (a link to the pairs file is not followed)
    queries: list[str]
    sha256: str  # of the line's text (without its end of line, or a byte-order mark on line 1)


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


# Reading the pairs file ------------------------------------------------------------------------


def _line_sha256(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def _read_lines(handle: BinaryIO, limit: int) -> Iterator[tuple[int, int, bytes | None]]:
    """``(line number, byte offset, text)`` of each line of ``handle`` from where it stands, the text
    without its end of line (``\\n`` or ``\\r\\n``), None for a line of more than ``limit`` bytes
    (skipped in pieces, never held whole)."""
    line_no, offset = 0, handle.tell()
    while True:
        text = handle.readline(limit + 2)  # the longest line allowed, with its end of line
        if not text:
            return
        line_no, start = line_no + 1, offset
        offset += len(text)
        if len(text) == limit + 2 and not text.endswith(b"\n"):  # longer still: skip the rest
            while text and not text.endswith(b"\n"):
                text = handle.readline(1 << 20)
                offset += len(text)
            yield line_no, start, None
            continue
        text = text.removesuffix(b"\n").removesuffix(b"\r")
        yield line_no, start, text if len(text) <= limit else None


def _video_path(video: str, base: str) -> str:
    if "\0" in video:
        raise BatchError("the \"video\" path holds a NUL character, which no file name can")
    path = os.path.expanduser(video)
    if path.startswith("~"):  # "~someone/..." of a user this system does not know
        raise BatchError(f"the \"video\" path {video[:200]!r} names the home folder of an unknown user")
    return os.path.abspath(os.path.join(base, path))


def parse_pairs_line(text: bytes, line_no: int, base: str | Path) -> PairsLine:
    """One line of a pairs file (its bytes, without the end of line) -> :class:`PairsLine`; raises
    ``BatchError`` saying what is wrong. ``base``: the folder relative video paths start from."""
    if len(text) > MAX_LINE_BYTES:
        raise BatchError(f"the line is over {MAX_LINE_BYTES:,} bytes")
    if line_no == 1:
        text = text.removeprefix(_BOM)
    try:
        fields = strict_json.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise BatchError("not UTF-8 text") from None
    except ValueError as error:
        raise BatchError(f"not a JSON object ({str(error)[:200]})") from None
    if not isinstance(fields, dict):
        raise BatchError("not a JSON object")
    try:  # what the answer will carry must be writable as UTF-8 JSON (no lone surrogate, no deep nesting)
        strict_json.dumps(fields, ensure_ascii=False).encode("utf-8")
    except ValueError as error:  # UnicodeEncodeError is one
        reason = "a string that is not valid Unicode (a lone surrogate)" if isinstance(error, UnicodeError) else error
        raise BatchError(f"cannot be written back as JSON: {reason}") from None
    for reserved in OUTPUT_FIELDS:
        if reserved in fields:
            raise BatchError(f"already has an output field \"{reserved}\"")
    video = fields.get("video")
    if not isinstance(video, str) or not video.strip():
        raise BatchError("no \"video\" path")
    if ("query" in fields) == ("queries" in fields):
        raise BatchError("needs exactly one of \"query\" (a sentence) or \"queries\" (a list)")
    queries = [fields["query"]] if "query" in fields else fields["queries"]
    if not isinstance(queries, list) or not queries:
        raise BatchError("\"queries\" must be a non-empty list of sentences")
    if len(queries) > MAX_QUERIES_PER_LINE:
        raise BatchError(f"{len(queries):,} queries on one line, more than {MAX_QUERIES_PER_LINE:,}; "
                         "split them over several lines")
    if not all(isinstance(query, str) for query in queries):
        raise BatchError("a query that is not a string")
    try:
        queries = check_queries(queries)  # the rules of g2l-ground: stripped, with letters
    except GroundingError as error:
        raise BatchError(str(error)) from None
    return PairsLine(line_no, fields, _video_path(video, str(base)), queries, _line_sha256(text))


def _open_pairs(path: Path) -> BinaryIO:
    problem = path_problem(path)
    if problem:
        raise BatchError(f"pairs file {path} {problem}; pass a JSON-lines file")
    try:
        return open_regular_file(path, what=f"pairs file {path}", max_bytes=UNBOUNDED_BYTES)
    except OSError as error:
        raise BatchError(f"pairs file {path} cannot be opened ({error.strerror or error}); "
                         "pass a JSON-lines file") from None


# The plan --------------------------------------------------------------------------------------


@dataclass
class BatchPlan:
    """What a run has to do: the lines not yet in the output, grouped by video (in the order their
    videos first appear), and the lines that could not be read. Holds the output's lock until
    ``close()`` (a ``with`` block, or ``ground_batch`` when it ends).

    Per line to answer it keeps four numbers (line number, byte offset, text hash, video), never
    the line itself: ``ground_batch`` reads each line again when it answers it."""

    pairs_path: Path
    out_path: Path
    videos: list[Path]  # the distinct videos of the lines to answer, in order of first appearance
    line_no: np.ndarray  # (n,) int64: the lines to answer, grouped by video, in file order in a group
    offset: np.ndarray  # (n,) int64: where each starts in the pairs file
    sha256_head: np.ndarray  # (n,) uint64: the first 8 bytes of its text's SHA-256, to see it unchanged
    video_end: np.ndarray  # (len(videos),) int64: video v's lines are [video_end[v-1], video_end[v])
    failures: list[tuple[int, str]]  # (line number, reason)
    lines: int  # non-blank lines in the pairs file
    already_done: int  # lines found in the output
    made_by: dict | None  # the output's record of what wrote it (None: a new or empty output)
    lock: int | None = None  # the lock's descriptor, closed by close()

    @property
    def todo(self) -> int:
        return len(self.line_no)

    def by_video(self) -> Iterator[tuple[Path, np.ndarray, np.ndarray, np.ndarray]]:
        """``(video, line numbers, offsets, hash heads)`` of each video, in order."""
        start = 0
        for video, end in zip(self.videos, self.video_end.tolist()):
            yield video, self.line_no[start:end], self.offset[start:end], self.sha256_head[start:end]
            start = end

    def close(self) -> None:
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None

    def __enter__(self) -> BatchPlan:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _head(sha256_hex: str) -> int:
    return int(sha256_hex[:16], 16)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def plan_batch(pairs_path: str | Path, out_path: str | Path) -> BatchPlan:
    """Lock the output, then read the pairs file and the output once: a bad pairs file, an output
    that is not g2l's or is in use stop here, before any model is loaded. A last line cut by a kill
    at the output's end is dropped (the file is truncated to its last whole line)."""
    pairs_path, out_path = Path(pairs_path), Path(out_path)
    problem = path_problem(pairs_path)  # before anything is created for the output
    if problem:
        raise BatchError(f"pairs file {pairs_path} {problem}; pass a JSON-lines file")
    if _same_file(pairs_path, out_path):
        raise BatchError(f"--out {out_path} is the pairs file itself; pass another file for the answers")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as error:
        why = getattr(error, "strerror", None) or error
        raise BatchError(f"output {out_path}: its folder cannot be created ({why}); pick another --out") from None
    handle, _ = open_output_to_read(out_path)  # a file that is not g2l's is refused before a lock is made beside it
    if handle is not None:
        handle.close()
    lock = hold_lock(out_path)
    try:
        try:
            remove_stale_temporaries(out_path.parent)  # of runs killed while writing the made-by record
        except OSError:  # best effort: a folder we may write to but not list
            pass
        return _plan(pairs_path, out_path, lock)
    except BaseException:
        if lock is not None:
            os.close(lock)
        raise


def _plan(pairs_path: Path, out_path: Path, lock: int | None) -> BatchPlan:
    out_handle, made_by = open_output_to_read(out_path)
    try:
        return _plan_lines(pairs_path, out_path, out_handle, made_by, lock)
    finally:
        if out_handle is not None:
            out_handle.close()


def _plan_lines(pairs_path: Path, out_path: Path, out_handle: BinaryIO | None, made_by: dict | None,
                lock: int | None) -> BatchPlan:
    base = os.path.dirname(os.path.abspath(pairs_path))
    videos: dict[str, int] = {}  # each distinct video once, numbered by first appearance
    failures, count, columns = [], 0, _Columns()
    with _open_pairs(pairs_path) as handle:
        try:
            for line_no, offset, text in _read_lines(handle, MAX_LINE_BYTES):
                if text is not None and not (text.removeprefix(_BOM) if line_no == 1 else text).strip():
                    continue
                count += 1
                try:
                    if text is None:
                        raise BatchError(f"the line is over {MAX_LINE_BYTES:,} bytes")
                    line = parse_pairs_line(text, line_no, base)
                except BatchError as error:
                    failures.append((line_no, str(error)))
                    continue
                columns.add(line_no, offset, _head(line.sha256), videos.setdefault(line.video, len(videos)))
        except OSError as error:
            raise BatchError(f"pairs file {pairs_path} cannot be read ({error.strerror or error}); "
                             "pass a JSON-lines file") from None
    line_no, offset, head, video = columns.arrays()
    done = np.zeros(len(line_no), dtype=bool)
    if out_handle is not None:
        answered_line, answered_head = array("q"), array("Q")  # 16 bytes an answer

        def mark(input_line: int, sha256_hex: str) -> None:
            answered_line.append(input_line)
            answered_head.append(_head(sha256_hex))

        try:
            cut_at = read_answer_keys(out_handle, out_path, mark)
            size = os.fstat(out_handle.fileno()).st_size
        except OSError as error:
            raise BatchError(f"output {out_path} cannot be read ({error.strerror or error}); "
                             "pick another --out") from None
        if cut_at < size:  # a line cut by a kill: drop it (we hold the lock, and the file is ours)
            os.truncate(out_path, cut_at)
        answered_line = np.frombuffer(answered_line, dtype=np.int64)
        at = np.minimum(np.searchsorted(line_no, answered_line), max(len(line_no) - 1, 0))
        if len(line_no):  # an answer counts when the line of its number still has its text
            same = (line_no[at] == answered_line) & (head[at] == np.frombuffer(answered_head, dtype=np.uint64))
            done[at[same]] = True
    todo = ~done
    order = np.argsort(video[todo], kind="stable")  # grouped by video, in file order within a group
    line_no, offset, head, video = line_no[todo][order], offset[todo][order], head[todo][order], video[todo][order]
    kept = np.unique(video)  # videos with lines left, by index = by first appearance
    names = list(videos)
    video_end = np.searchsorted(video, kept, side="right")
    return BatchPlan(pairs_path, out_path, [Path(names[v]) for v in kept.tolist()], line_no, offset, head, video_end,
                     failures, count, int(done.sum()), made_by, lock)


class _Columns:
    """Four int64 columns grown in blocks of numpy arrays (8 bytes a number, not a Python int's 28+)."""

    def __init__(self, block: int = 65536):
        self._blocks: list[np.ndarray] = []
        self._current = np.empty((block, 4), dtype=np.int64)
        self._filled = 0

    def add(self, line_no: int, offset: int, head: int, video: int) -> None:
        if self._filled == len(self._current):
            self._blocks.append(self._current)
            self._current = np.empty_like(self._current)
            self._filled = 0
        self._current[self._filled] = (line_no, offset, head - (1 << 64) if head >= 1 << 63 else head, video)
        self._filled += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        table = np.concatenate([*self._blocks, self._current[: self._filled]])
        return table[:, 0].copy(), table[:, 1].copy(), table[:, 2].view(np.uint64).copy(), table[:, 3].copy()


# Answering -------------------------------------------------------------------------------------


def answer(line: PairsLine, results: list[QueryResult], explanations: list | None, domain: dict | None = None) -> dict:
    """The output line of ``line``: its key (``input_line``, ``input_sha256``), its fields, ``domain``
    (the video's ``Grounder.domain_check``) when the model has a domain summary, then ``result_json``
    of its query, or ``results``."""
    pairs = list(zip(results, explanations or [None] * len(results)))
    key = {"input_line": line.line_no, "input_sha256": line.sha256, **({"domain": domain} if domain is not None else {})}
    if "query" in line.fields:
        return {**key, **line.fields, **result_json(*pairs[0])}
    return {**key, **line.fields, "results": [{"query": r.query, **result_json(r, e)} for r, e in pairs]}


def _reread(handle: BinaryIO, line_no: int, offset: int, sha256_head: int, base: str) -> PairsLine:
    """Line ``line_no`` of the pairs file again, from its offset, checked unchanged since the plan."""
    handle.seek(offset)
    _, _, text = next(_read_lines(handle, MAX_LINE_BYTES), (0, 0, None))
    line = None if text is None else parse_pairs_line(text, line_no, base)
    if line is None or _head(line.sha256) != sha256_head:
        raise BatchError("the line changed while the run went on; run again to answer it")
    return line


def ground_batch(grounder: Grounder, pairs_path: str | Path, out_path: str | Path, *, top_k: int = 5,
                 window_s: float | None = None, explain: bool = False, explain_target: str = "runner_up", seed: int = 0,
                 cache_dir: str | Path | None = None, on_video: Callable[[int, int, str], None] | None = None,
                 on_failure: Callable[[int, str], None] | None = None, plan: BatchPlan | None = None) -> BatchSummary:
    """Answer every line of ``pairs_path`` into ``out_path`` (appended; see the module docstring).

    ``on_video(done, total, name)`` is called after each video; ``on_failure(line_no, reason)`` for
    each line that fails, as it fails. ``plan``: what ``plan_batch(pairs_path, out_path)`` returned,
    if the caller made it already (its lock is released when this returns)."""
    if plan is None:
        plan = plan_batch(pairs_path, out_path)
    with plan:
        return _answer_plan(grounder, plan, top_k=top_k, window_s=window_s, explain=explain,
                            explain_target=explain_target, seed=seed, cache_dir=cache_dir, on_video=on_video,
                            on_failure=on_failure)


def _answer_plan(grounder: Grounder, plan: BatchPlan, *, top_k, window_s, explain, explain_target, seed, cache_dir,
                 on_video, on_failure) -> BatchSummary:
    started = time.perf_counter()
    cache = FeatureCache.for_grounder(cache_dir, grounder) if cache_dir is not None else None  # None: unusable, warned
    check_made_by(plan.out_path, plan.made_by, made_by(grounder, top_k=top_k, window_s=window_s, explain=explain,
                                 explain_target=explain_target, seed=seed))
    summary = BatchSummary(lines=plan.lines, already_done=plan.already_done, failures=list(plan.failures))
    for line_no, reason in plan.failures:
        if on_failure:
            on_failure(line_no, reason)

    def fail(line_no: int, reason: str) -> None:
        summary.failures.append((line_no, reason))
        if on_failure:
            on_failure(line_no, reason)

    base = os.path.dirname(os.path.abspath(plan.pairs_path))
    with _open_pairs(plan.pairs_path) as pairs, open_output_to_append(plan.out_path) as out:
        for index, (video_path, line_nos, offsets, heads) in enumerate(plan.by_video(), start=1):
            video, video_error, domain = None, None, None
            try:
                video = _encoded(grounder, video_path, cache, summary)
                domain = grounder.domain_check(video)
            except (G2LError, OSError) as error:
                video_error = f"video {video_path}: {error}"
            for line_no, offset, head in zip(line_nos.tolist(), offsets.tolist(), heads.tolist()):
                if video is None:
                    fail(line_no, video_error)
                    continue
                try:
                    line = _reread(pairs, line_no, offset, head, base)
                    results = grounder.ground(video, line.queries, top_k=top_k, window_s=window_s)
                    explanations = None
                    if explain:
                        from g2l.explain import explain_top_moment

                        explanations = [explain_top_moment(grounder, video, r.query, window_s=window_s, seed=seed,
                                                           target=explain_target) for r in results]
                except G2LError as error:
                    fail(line_no, str(error))
                    continue
                except OSError as error:
                    fail(line_no, f"the pairs file could not be read again ({error.strerror or error})")
                    continue
                out.write(strict_json.dumps(answer(line, results, explanations, domain), ensure_ascii=False) + "\n")
                out.flush()
                summary.answered += 1
                summary.queries += len(line.queries)
            if on_video:
                on_video(index, len(plan.videos), video_path.name)
        os.fsync(out.fileno())
    summary.failures.sort()
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _encoded(grounder: Grounder, path: Path, store: FeatureCache | None, summary: BatchSummary) -> EncodedVideo:
    problem = path_problem(path)
    if problem:
        raise BatchError(problem)
    cached = store.get(path) if store is not None else None  # checked against the file; a bad entry warns
    if cached is not None:
        summary.videos_from_cache += 1
        return cached
    video = grounder.encode_video(path)
    summary.videos_encoded += 1
    if store is not None:
        store.put(path, video)  # best-effort: a failed write warns once
    return video
