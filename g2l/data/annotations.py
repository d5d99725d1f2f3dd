"""Annotation parsers: every supported file format -> ``list[Annotation]`` plus a ``CleaningReport``.

One entry point, :func:`load_annotations`, picks the parser from ``fmt`` or guesses it from the
file. Each ``parse_*`` function reads one format (its docstring shows the format); all of them
clean the data the same way and return ``(annotations, report)``.

Formats (``fmt`` strings):

    charades_txt   Charades-STA, 2D-TAN release: ``charades_sta_{split}.txt`` + ``Charades_v1_{split}.csv``
    anet_json      ``{video: {duration, timestamps, sentences}}`` in seconds: ActivityNet Captions,
                   the Charades-STA MMN release, the project's synthetic benchmark
    tacos_json     TACoS: the same with timestamps in frames, plus ``fps`` and ``num_frames``
    qvhighlights   QVHighlights ``highlight_{split}_release.jsonl``
    jsonl          the project's own format for users' data, one query a line:
                   ``{"video": str, "duration": float, "sentence": str, "windows": [[s, e], ...]}``

Cleaning (the same for every format; one query gets at most one drop reason, the first check
that fails, in this order):

1. A line (txt/jsonl) that cannot be read -- missing ``##``, wrong number of fields, non-numeric
   time, invalid JSON, a value of the wrong type -- is dropped as ``"malformed line"`` (example:
   its line number). In the JSON formats a video entry that lacks a key, has a value of the wrong
   type, or has different numbers of timestamps and sentences is dropped as ``"malformed entry"``
   (counted once per entry, not per sentence). A file in which no line or entry can be read at
   all raises :class:`AnnotationError`; so do a missing file, invalid JSON in a ``.json`` file, and
   a line of the wrong schema (unknown or missing keys) in the key-checked JSON-lines formats.
2. ``"video not in csv"`` (Charades only) and ``"invalid duration"`` (not a finite number > 0):
   the query has no duration to clamp against. In the per-query formats (QVHighlights, jsonl)
   also ``"duration differs from an earlier query"``: the query's video already has a kept query
   whose duration is more than 1e-3 s different; the first duration wins, so one video always
   has one duration.
3. ``"empty sentence"``: nothing left after stripping surrounding whitespace.
4. ``"no ground-truth windows"``: a query without any window (QVHighlights test, or
   ``"windows": []`` in jsonl) when ``require_windows=True`` (the default). With
   ``require_windows=False`` such queries are kept with ``windows_s == ()`` for inference.
5. Windows, one by one: ``"non-numeric time"`` (JSON formats; in the line formats that is a
   malformed line), ``"non-finite time"`` (NaN/inf), ``"start >= end"`` as written in the file;
   otherwise the window is clamped to ``[0, duration_s]`` and, if nothing is left (it lies wholly
   outside the video), dropped as ``"window outside the video"``. A kept window that was clamped
   counts ``"end > duration"`` and/or ``"start < 0"`` in ``report.clamped`` (clamps count
   windows, not queries; a dropped query counts no clamp). When a query has several windows
   (QVHighlights, jsonl) and only some are bad, the bad ones are removed and counted in
   ``report.clamped`` as ``"window removed (<reason>)"``; a query with no window left is dropped
   with the reason of its first bad window.

Order of clamping and checking. 2D-TAN's Charades loader does ``e = min(e, D)`` and keeps
``s < e``; its ActivityNet/TACoS loaders (and MMN's) keep ``s < e`` as written, then clamp to
``[max(s, 0), min(e, D)]``. Here the window is checked as written *and* after clamping. The
second check only matters for a window lying wholly outside ``[0, D]``, which the published
ActivityNet/TACoS loaders would keep as an inverted window ``[s, D]`` with ``s >= D``; no such
window exists in the public files, so kept/dropped counts equal the published loaders' on all of
them (Charades-STA train 12,404 of 12,408, as in MMN's JSON release; ActivityNet train 37,417 of
37,421; everything else kept). Every kept window satisfies ``0 <= start_s < end_s <= duration_s``.

Sentences are stripped of surrounding whitespace only (ActivityNet sentences often start with a
space); 2D-TAN's Charades loader also cuts the final period, which we keep: it is part of the
sentence the tokenizer sees. Records keep the file's order (videos in file order, then each
video's sentences and windows in file order).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from g2l.data.records import Annotation, CleaningReport
from g2l.errors import G2LError, path_problem
from g2l.io import strict_json
from g2l.io.limits import MAX_DATA_FILE_BYTES
from g2l.io.safe_files import open_regular_file

FORMATS = ("charades_txt", "anet_json", "tacos_json", "qvhighlights", "jsonl")

# Keys of the project's own JSON-lines format, exactly.
JSONL_KEYS = frozenset({"video", "duration", "sentence", "windows"})
# Keys every QVHighlights line must have (train/val also have relevant_windows, clip ids, saliency).
QVHIGHLIGHTS_KEYS = frozenset({"qid", "query", "vid", "duration"})
# Two durations of one video closer than this are the same duration.
DURATION_TOLERANCE_S = 1e-3


class AnnotationError(G2LError):
    """An annotation file that cannot be read at all (missing, invalid, wrong format or schema)."""


# ---------------------------------------------------------------------------------------------
# Entry point


def load_annotations(
    path: str | Path,
    fmt: str | None = None,
    *,
    durations_csv: str | Path | None = None,
    require_windows: bool = True,
) -> tuple[list[Annotation], CleaningReport]:
    """Read an annotation file of any supported format into cleaned records and a report.

    ``fmt`` is one of :data:`FORMATS`; ``None`` guesses it (see :func:`guess_format`).
    ``durations_csv`` is the Charades csv (``charades_txt`` only; derived from the txt name by
    default). ``require_windows`` drops queries without ground truth (``qvhighlights``, ``jsonl``);
    pass ``False`` to keep them with ``windows_s == ()`` for inference.
    """
    path = Path(path)
    data = None  # a .json file is read once: guessed from, then parsed
    if fmt is None and path.suffix.lower() == ".json":
        data = _read_json(path)
        fmt = _guess_json_format(data)
    elif fmt is None:
        fmt = guess_format(path)
    if fmt not in FORMATS:
        raise AnnotationError(f"Unknown annotation format {fmt!r} for {path}; set data.annotation_format to one of {', '.join(FORMATS)}.")
    if durations_csv is not None and fmt != "charades_txt":
        raise AnnotationError(f"data.durations_csv is only used by the charades_txt format, not {fmt!r} ({path}); leave it empty.")
    if fmt == "charades_txt":
        return parse_charades_txt(path, durations_csv)
    if fmt in ("anet_json", "tacos_json"):
        data = _read_json(path) if data is None else data
        return _parse_video_json(data, path, frames=fmt == "tacos_json")
    if fmt == "qvhighlights":
        return parse_qvhighlights(path, require_windows=require_windows)
    return parse_jsonl(path, require_windows=require_windows)


def guess_format(path: str | Path) -> str:
    """Guess the format of an annotation file from its suffix and, for JSON, its first record.

    ``.txt`` -> ``charades_txt``; ``.json`` -> ``tacos_json`` if the first video has ``fps`` and
    ``num_frames``, else ``anet_json``; ``.jsonl`` -> ``qvhighlights`` if the first line has
    ``qid``/``query``/``vid``, else ``jsonl``. Anything else raises :class:`AnnotationError`.
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "charades_txt"
    if suffix == ".json":
        return _guess_json_format(_read_json(path))
    if suffix == ".jsonl":
        for _, line in _read_lines(path):
            try:
                record = strict_json.loads(line, allow_non_finite=True)  # NaN times are dropped below
            except ValueError:
                continue
            if isinstance(record, dict) and {"qid", "query", "vid"} <= record.keys():
                return "qvhighlights"
            return "jsonl"
        return "jsonl"
    raise AnnotationError(
        f"Cannot tell the annotation format of {path} from its suffix {suffix!r}; "
        f"set data.annotation_format to one of {', '.join(FORMATS)}."
    )


def _guess_json_format(data: Any) -> str:
    first = next(iter(data.values()), None) if isinstance(data, dict) else None
    if isinstance(first, dict) and "fps" in first and "num_frames" in first:
        return "tacos_json"
    return "anet_json"


def group_by_video(annotations: Iterable[Annotation]) -> dict[str, list[Annotation]]:
    """Group records by video, keeping first-appearance order of videos and file order within one.

    Raises :class:`AnnotationError` if one video appears with two durations more than
    ``DURATION_TOLERANCE_S`` apart (the parsers never produce that; hand-built lists might).
    """
    groups: dict[str, list[Annotation]] = {}
    for annotation in annotations:
        group = groups.setdefault(annotation.video_id, [])
        if group and abs(group[0].duration_s - annotation.duration_s) > DURATION_TOLERANCE_S:
            raise AnnotationError(
                f"Video {annotation.video_id!r} has two durations, {group[0].duration_s} s and "
                f"{annotation.duration_s} s; give each video one duration."
            )
        group.append(annotation)
    return groups


# ---------------------------------------------------------------------------------------------
# Parsers, one per format


def parse_charades_txt(
    txt_path: str | Path, durations_csv: str | Path | None = None
) -> tuple[list[Annotation], CleaningReport]:
    """Read Charades-STA in the 2D-TAN release.

    ``charades_sta_{split}.txt``, one query a line, times in seconds::

        AO8RW 0.0 6.9##a person is putting a book on a shelf.

    Durations come from the ``length`` column (seconds) of ``Charades_v1_{split}.csv`` (columns
    ``id, ..., length``), by default the file of the same split beside the txt.
    """
    txt_path = Path(txt_path)
    _check_file(txt_path)
    if durations_csv is None:
        durations_csv = _derive_charades_csv(txt_path)
    durations_s = read_charades_durations(durations_csv)
    report = CleaningReport(source=str(txt_path))
    annotations: list[Annotation] = []
    num_lines = 0
    for line_number, line in _read_lines(txt_path):
        num_lines += 1
        head, separator, sentence = line.partition("##")
        fields = head.split()
        if not separator or len(fields) != 3:
            report.drop("malformed line", f"line {line_number}: {line!r}")
            continue
        video_id, start_text, end_text = fields
        try:
            start_s, end_s = float(start_text), float(end_text)
        except ValueError:
            report.drop("malformed line", f"line {line_number}: {line!r}")
            continue
        where = f"{video_id} line {line_number}"
        if video_id not in durations_s:
            report.drop("video not in csv", f"{where} (not in {Path(durations_csv).name})")
            continue
        annotation = _clean_query(video_id, durations_s[video_id], sentence, [(start_s, end_s)], report, where)
        if annotation is not None:
            annotations.append(annotation)
    _check_anything_read(txt_path, num_lines, report, "line")
    return annotations, report


def read_charades_durations(csv_path: str | Path) -> dict[str, float]:
    """Map video id -> duration in seconds from a Charades csv (``id`` and ``length`` columns).

    An unreadable ``length`` maps to NaN, so that video's queries are dropped as "invalid duration".
    """
    csv_path = Path(csv_path)
    _check_file(csv_path, "the Charades csv of the same split (set data.durations_csv)")
    with io.TextIOWrapper(_open_data_file(csv_path), encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        if reader.fieldnames is None or not {"id", "length"} <= set(reader.fieldnames):
            raise AnnotationError(
                f"{csv_path} has no 'id' and 'length' columns; pass the Charades_v1_{{split}}.csv "
                f"of the Charades release as durations_csv."
            )
        durations_s = {}
        for row in reader:
            try:
                durations_s[row["id"]] = float(row["length"])
            except (TypeError, ValueError):
                durations_s[row["id"]] = math.nan
    return durations_s


def parse_qvhighlights(
    path: str | Path, *, require_windows: bool = True
) -> tuple[list[Annotation], CleaningReport]:
    """Read QVHighlights ``highlight_{split}_release.jsonl``: one query a line, times in seconds::

        {"qid": 9769, "query": "some military ...", "duration": 150, "vid": "j7rJstUseKg_360.0_510.0",
         "relevant_windows": [[72, 82], [84, 94]], "relevant_clip_ids": [...], "saliency_scores": [...]}

    ``relevant_windows`` may hold several windows; the test split has none. ``qid``, clip ids and
    saliency scores are not kept. A line without ``qid``, ``query``, ``vid`` or ``duration``
    raises :class:`AnnotationError` (the file is not QVHighlights); other keys are ignored.
    """
    path = Path(path)

    def read_line(record: dict[str, Any], where: str) -> tuple[str, Any, Any, Any]:
        missing = QVHIGHLIGHTS_KEYS - record.keys()
        if missing:
            raise AnnotationError(
                f"{where} has no {', '.join(sorted(missing))}; a QVHighlights line needs "
                f"qid, query, vid and duration (set data.annotation_format to jsonl for the project's own format)."
            )
        return record["vid"], record["duration"], record["query"], record.get("relevant_windows", [])

    return _parse_query_lines(path, read_line, require_windows)


def parse_jsonl(path: str | Path, *, require_windows: bool = True) -> tuple[list[Annotation], CleaningReport]:
    """Read the project's own JSON-lines format: one query a line, times in seconds::

        {"video": "my_video", "duration": 31.5, "sentence": "a dog jumps.", "windows": [[2.0, 7.5]]}

    Exactly the keys ``video`` (str), ``duration`` (number, seconds), ``sentence`` (str) and
    ``windows`` (a list of ``[start, end]`` pairs in seconds; ``[]`` for a query without ground
    truth, kept only with ``require_windows=False``). An unknown or missing key raises
    :class:`AnnotationError` naming the line; a line that is not JSON, or has a value of the wrong
    type, is dropped as "malformed line". Blank lines are skipped.
    """
    path = Path(path)

    def read_line(record: dict[str, Any], where: str) -> tuple[str, Any, Any, Any]:
        unknown, missing = record.keys() - JSONL_KEYS, JSONL_KEYS - record.keys()
        if unknown or missing:
            problems = []
            if unknown:
                problems.append(f"unknown key(s) {', '.join(sorted(unknown))}")
            if missing:
                problems.append(f"missing key(s) {', '.join(sorted(missing))}")
            raise AnnotationError(
                f"{where} has {' and '.join(problems)}; each line must have exactly the keys "
                f"video, duration, sentence and windows."
            )
        return record["video"], record["duration"], record["sentence"], record["windows"]

    return _parse_query_lines(path, read_line, require_windows)


# ---------------------------------------------------------------------------------------------
# Shared reading and cleaning


def _parse_video_json(data: Any, path: Path, *, frames: bool) -> tuple[list[Annotation], CleaningReport]:
    """The video-keyed JSON formats, already loaded from ``path``; ``frames`` selects TACoS
    (frames + fps) over seconds.

    ``anet_json``, ActivityNet Captions (2D-TAN), Charades-STA (MMN), synthetic data: times in seconds,
    ``timestamps[i]`` grounds ``sentences[i]``; extra keys in an entry are ignored::

        {"v_QOlSCBRmfWY": {"duration": 82.73,
                           "timestamps": [[0.83, 19.86], [17.37, 60.81]],
                           "sentences": ["A young woman is ...", " The girl dances ..."]}, ...}

    ``tacos_json``, TACoS (2D-TAN release): timestamps in frames, ``duration_s = num_frames / fps`` and
    each time ``t_s = frame / fps``::

        {"s17-d69.avi": {"fps": 29.4, "num_frames": 12435,
                         "timestamps": [[224, 358], ...], "sentences": ["...", ...]}, ...}
    """
    if not isinstance(data, dict):
        raise AnnotationError(
            f"{path} holds a JSON {type(data).__name__}, not an object keyed by video id; "
            f"is it a JSON-lines file (data.annotation_format qvhighlights or jsonl)?"
        )
    required = ("fps", "num_frames", "timestamps", "sentences") if frames else ("duration", "timestamps", "sentences")
    report = CleaningReport(source=str(path))
    annotations: list[Annotation] = []
    for video_id, entry in data.items():
        problem = _entry_problem(entry, required)
        if problem:
            report.drop("malformed entry", f"{video_id}: {problem}")
            continue
        timestamps, sentences = entry["timestamps"], entry["sentences"]
        # An unusable duration is NaN: _clean_query then drops the query before reading its window.
        if frames:
            fps, num_frames = entry["fps"], entry["num_frames"]
            usable = _is_number(fps) and _is_number(num_frames) and fps > 0
            duration_s = num_frames / fps if usable else math.nan
            fps = fps if usable else 1.0
        else:
            duration_s = entry["duration"] if _is_number(entry["duration"]) else math.nan
        for index, (timestamp, sentence) in enumerate(zip(timestamps, sentences)):
            window = (timestamp[0], timestamp[1])
            if frames and all(_is_number(value) for value in window):
                window = (window[0] / fps, window[1] / fps)
            annotation = _clean_query(video_id, duration_s, sentence, [window], report, f"{video_id} sentence {index}")
            if annotation is not None:
                annotations.append(annotation)
    _check_anything_read(path, len(data), report, "entry")
    return annotations, report


def _entry_problem(entry: Any, required: tuple[str, ...]) -> str:
    """Why one video entry of a video-keyed JSON cannot be read ('' when it can)."""
    if not isinstance(entry, dict):
        return f"a {type(entry).__name__}, not an object"
    missing = [key for key in required if key not in entry]
    if missing:
        return f"no {', '.join(missing)}"
    timestamps, sentences = entry["timestamps"], entry["sentences"]
    if not isinstance(timestamps, list) or not isinstance(sentences, list):
        return "timestamps and sentences must be lists"
    if len(timestamps) != len(sentences):
        return f"{len(timestamps)} timestamps but {len(sentences)} sentences"
    if not all(isinstance(timestamp, list) and len(timestamp) == 2 for timestamp in timestamps):
        return "a timestamp is not a [start, end] pair"
    if not all(isinstance(sentence, str) for sentence in sentences):
        return "a sentence is not a string"
    return ""


def _parse_query_lines(
    path: Path, read_line: Callable[[dict[str, Any], str], tuple[Any, Any, Any, Any]], require_windows: bool
) -> tuple[list[Annotation], CleaningReport]:
    """The one-query-a-line JSON formats. ``read_line(record, where)`` checks the keys and returns
    ``(video_id, duration, sentence, windows)`` as found in the line (types unchecked)."""
    _check_file(path)
    report = CleaningReport(source=str(path))
    annotations: list[Annotation] = []
    first_duration_s: dict[str, float] = {}
    num_lines = 0
    for line_number, line in _read_lines(path):
        num_lines += 1
        try:
            record = strict_json.loads(line, allow_non_finite=True)  # NaN times are dropped below
        except ValueError as error:
            report.drop("malformed line", f"line {line_number}: not JSON ({str(error)[:60]}): {line[:80]!r}")
            continue
        if not isinstance(record, dict):
            report.drop("malformed line", f"line {line_number}: not a JSON object")
            continue
        video_id, duration_s, sentence, windows = read_line(record, f"{path} line {line_number}")
        well_typed = (
            isinstance(video_id, str)
            and video_id != ""
            and _is_number(duration_s)
            and isinstance(sentence, str)
            and isinstance(windows, list)
            and all(isinstance(window, list) and len(window) == 2 for window in windows)
            and all(_is_number(value) for window in windows for value in window)
        )
        if not well_typed:
            report.drop("malformed line", f"line {line_number}: wrong value types: {line[:80]!r}")
            continue
        where = f"{video_id} line {line_number}"
        earlier_s = first_duration_s.get(video_id)
        if earlier_s is not None and abs(earlier_s - duration_s) > DURATION_TOLERANCE_S:
            report.drop("duration differs from an earlier query", f"{where}: {duration_s} s, earlier {earlier_s} s")
            continue
        annotation = _clean_query(
            video_id, duration_s, sentence, [(start, end) for start, end in windows], report, where, require_windows
        )
        if annotation is not None:
            first_duration_s.setdefault(video_id, annotation.duration_s)
            annotations.append(annotation)
    _check_anything_read(path, num_lines, report, "line")
    return annotations, report


def _clean_query(
    video_id: str,
    duration_s: float,
    sentence: str,
    windows: list[tuple[Any, Any]],
    report: CleaningReport,
    where: str,
    require_windows: bool = True,
) -> Annotation | None:
    """Apply the cleaning rules of the module docstring to one query; count what happens.

    Returns the cleaned record (and counts it as kept) or ``None`` (and counts the drop reason).
    """
    duration_s = float(duration_s)
    if not (math.isfinite(duration_s) and duration_s > 0):
        report.drop("invalid duration", f"{where}: duration {duration_s}")
        return None
    sentence = sentence.strip()
    if not sentence:
        report.drop("empty sentence", where)
        return None
    if not windows:
        if require_windows:
            report.drop("no ground-truth windows", where)
            return None
        report.kept += 1
        return Annotation(video_id, duration_s, sentence, ())

    kept_windows: list[tuple[float, float]] = []
    clamps: list[tuple[str, str]] = []
    rejections: list[tuple[str, str]] = []
    for start, end in windows:
        example = f"{where}: [{start!r}, {end!r}] in {duration_s} s"
        if not (_is_number(start) and _is_number(end)):
            rejections.append(("non-numeric time", example))
            continue
        start_s, end_s = float(start), float(end)
        if not (math.isfinite(start_s) and math.isfinite(end_s)):
            rejections.append(("non-finite time", example))
            continue
        if start_s >= end_s:
            rejections.append(("start >= end", example))
            continue
        clamped_start_s, clamped_end_s = max(start_s, 0.0), min(end_s, duration_s)
        if clamped_start_s >= clamped_end_s:
            rejections.append(("window outside the video", example))
            continue
        if end_s > duration_s:
            clamps.append(("end > duration", example))
        if start_s < 0:
            clamps.append(("start < 0", example))
        kept_windows.append((clamped_start_s, clamped_end_s))

    if not kept_windows:
        report.drop(*rejections[0])
        return None
    for reason, example in rejections:
        report.clamp(f"window removed ({reason})", example)
    for reason, example in clamps:
        report.clamp(reason, example)
    report.kept += 1
    return Annotation(video_id, duration_s, sentence, tuple(kept_windows))


def _is_number(value: Any) -> bool:
    """An int or float from a parsed file (``bool`` is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_file(path: Path, what: str = "") -> None:
    problem = path_problem(path)  # "does not exist", "is a directory", "is a link to /dev/zero, which ..."
    if problem:
        hint = f"; it should be {what}" if what else ""
        raise AnnotationError(
            f"Annotation file {path} {problem}{hint}; check the path "
            f"(the public files come with the 2D-TAN, MMN and Moment-DETR repositories)."
        )


def _open_data_file(path: Path):
    """``path`` opened for binary reading once it is a regular file of a bounded size (g2l/io/safe_files.py:
    a FIFO swapped in after ``_check_file`` does not hang the read)."""
    return open_regular_file(path, what=f"annotation file {path}", max_bytes=MAX_DATA_FILE_BYTES)


def _read_json(path: Path) -> Any:
    _check_file(path)
    try:
        with _open_data_file(path) as file:
            return strict_json.loads(file.read().decode("utf-8"), allow_non_finite=True)  # NaN times are dropped later
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, and strict_json.loads's own
        raise AnnotationError(
            f"{path} is not valid JSON ({error}); re-download it, or set data.annotation_format if it is a "
            f"JSON-lines file."
        ) from None


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` for the non-blank lines of a text file, numbered from 1, without
    the line ending. Blank lines (such as after a final newline) are not records and are skipped."""
    try:
        with io.TextIOWrapper(_open_data_file(path), encoding="utf-8") as file:
            for line_number, line in enumerate(file, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line_number, line
    except UnicodeDecodeError:
        raise AnnotationError(f"{path} is not a UTF-8 text file; pass an annotation file.") from None


def _derive_charades_csv(txt_path: Path) -> Path:
    """``.../charades_sta_train.txt`` -> ``.../Charades_v1_train.csv``."""
    match = re.fullmatch(r"charades_sta_(\w+)\.txt", txt_path.name)
    if match is None:
        raise AnnotationError(
            f"Cannot derive the Charades csv from the name {txt_path.name!r} (expected "
            f"charades_sta_{{split}}.txt); set data.durations_csv to the csv file."
        )
    return txt_path.with_name(f"Charades_v1_{match.group(1)}.csv")


def _check_anything_read(path: Path, num_units: int, report: CleaningReport, unit: str) -> None:
    """Raise if the file holds no records, or if not a single line/entry could be read."""
    if num_units == 0:
        raise AnnotationError(f"{path} holds no annotations; pass a non-empty annotation file.")
    malformed = report.dropped[f"malformed {unit}"]
    if malformed == num_units:
        raise AnnotationError(
            f"No {unit} of {path} could be read (e.g. {report.examples[f'malformed {unit}'][0]}); "
            f"is it in another format? Set data.annotation_format to one of {', '.join(FORMATS)}."
        )
