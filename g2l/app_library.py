"""The web app's Library tab (g2l/app.py builds the page): open an index made by ``g2l-index build``
(``g2l-app --index FOLDER`` at start, or a folder of the server typed in the tab), search it with
``VideoIndex.search`` (the search ``g2l-search`` runs), see each query's ranked moments (video, start,
end, score) with the model's match decision, and click a row to play that moment.

An index typed in is opened for reading with every check of ``VideoIndex.open``, the app's model
included: an index of another model, a damaged one or a folder that is no index shows the library's
sentence. Opened indexes are kept (at most ``CACHED_INDEXES``, most recent last) and opened again
when their manifest changes (a ``g2l-index add`` while the app runs).

Playing. A row names the video as indexed; a click sends only the row's query and rank, and the
server plays the file of that video of the index (its resolved path, with the identity it was
indexed with: a missing, changed or moved file is refused with a sentence), never a path the page
sent. The player is Gradio's Video given that file, which is served in place (``serve``: added to
Gradio's static paths, one file at a time, not copied); once the player has loaded it, the page seeks
it to the moment's start, plays it, and pauses it once at the moment's end.
"""

from __future__ import annotations

import html
import math
import os
import stat
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from g2l.errors import G2LError
from g2l.inference import Grounder, GroundingError, check_queries

CACHED_INDEXES = 4  # opened indexes kept (most recent last)
MAX_TOP_K = 100  # most moments shown per query
NO_INDEX = ("no index is open: type the folder of an index made by g2l-index build and press Open "
            "(or start the app with g2l-app --index FOLDER)")

# Runs after the player got its new value: once it holds that file (its address names the file's path),
# seek to the moment, play, and pause once at its end (unless the user moved away from the moment).
SEEK_LIBRARY_JS = """(video, playing) => {
  const holder = document.createElement("div");
  holder.innerHTML = playing || "";
  const moment = holder.querySelector("[data-start]");
  if (!video || !video.path || !moment) return;
  const start = parseFloat(moment.dataset.start), end = parseFloat(moment.dataset.end);
  const token = String(Date.now() + Math.random());
  window.g2lLibraryMoment = token;
  let tries = 0;
  const attempt = () => {
    if (window.g2lLibraryMoment !== token) return;
    const v = document.querySelector("#g2l-library-player video");
    let src = "";
    try { src = decodeURIComponent((v && v.currentSrc) || ""); } catch (e) { src = (v && v.currentSrc) || ""; }
    if (v && v.readyState >= 1 && src.includes(video.path)) {
      v.currentTime = start;
      v.dataset.g2lStart = String(start);
      const stop = () => {
        if (window.g2lLibraryMoment !== token || v.currentTime < start - 0.5) {
          v.removeEventListener("timeupdate", stop);
        } else if (v.currentTime >= end) {
          v.pause();
          v.removeEventListener("timeupdate", stop);
        }
      };
      v.addEventListener("timeupdate", stop);
      v.play().catch(() => {});
      return;
    }
    if (++tries < 300) setTimeout(attempt, 100);
  };
  attempt();
}"""

# The results table: a click on a row asks the server to play it (by query and rank, nothing else).
ROW_CLICK_JS = """element.addEventListener("click", (event) => {
  const row = event.target.closest ? event.target.closest("tr.g2l-hit") : null;
  if (!row) return;
  element.querySelectorAll("tr.g2l-hit.g2l-playing").forEach((r) => r.classList.remove("g2l-playing"));
  row.classList.add("g2l-playing");
  trigger("play", {query: parseInt(row.dataset.query), rank: parseInt(row.dataset.rank)});
});"""

LIBRARY_CSS = """
#g2l-library-status .g2l-error, #g2l-library-playing .g2l-error { color: #b00020; font-weight: 600; }
#g2l-library-status .g2l-warning { color: #8a5a00; font-weight: 600; }
#g2l-library-results table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 0.8em; }
#g2l-library-results td, #g2l-library-results th { padding: 2px 10px; border-bottom: 1px solid #ddd; }
#g2l-library-results td { text-align: right; }
#g2l-library-results td.g2l-video-cell { text-align: left; }
#g2l-library-results tr.g2l-hit { cursor: pointer; }
#g2l-library-results tr.g2l-hit:hover { background: #eef3ff; }
#g2l-library-results tr.g2l-playing { background: #dde7ff; }
#g2l-library-results .g2l-match { color: #1b5e20; font-weight: 600; }
#g2l-library-results .g2l-no-match { color: #b00020; font-weight: 600; }
#g2l-library-results .g2l-no-threshold { color: #555; }
#g2l-library-playing .g2l-moment-times { font-size: 1.3em; font-weight: 700; }
"""


class LibraryAppError(G2LError):
    """What the Library tab cannot do (no index open, a video of the index that cannot be played)."""


def error_html(message: str) -> str:
    return f'<div class="g2l-error">error: {html.escape(message)}</div>'


def box_queries(text: str | None, max_queries: int, *, doing: str) -> list[str]:
    """The non-blank lines of a queries box, at most ``max_queries`` of them ("this app ``doing`` at
    most ..."), each with letters (stripped; none at all, or one without letters, is refused)."""
    queries = [line for line in (text or "").splitlines() if line.strip()]
    if len(queries) > max_queries:
        raise GroundingError(f"{len(queries)} queries were given and this app {doing} at most {max_queries} at once; "
                             "remove some lines")
    return check_queries(queries)


def library_queries(text: str | None, max_queries: int) -> list[str]:
    """The Library tab's queries box (``box_queries``)."""
    return box_queries(text, max_queries, doing="searches")


def search_limits(top_k, per_video) -> tuple[int, int | None]:
    """``(top_k, per_video)`` from the two number boxes: top-k in 1..MAX_TOP_K, per-video empty (or
    0: no limit) or at least 1."""
    def whole(value, what: str):
        if value is None or value == "":
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number) or number != int(number):
            raise LibraryAppError(f"{what} must be a whole number, got {value!r}")
        return int(number)

    k = whole(top_k, "moments per query")
    if k is None or not 1 <= k <= MAX_TOP_K:
        raise LibraryAppError(f"moments per query must be 1 to {MAX_TOP_K}, got {top_k!r}")
    limit = whole(per_video, "moments per video")
    if limit is not None and limit < 0:
        raise LibraryAppError(f"moments per video must be empty or 0 (no limit) or at least 1, got {per_video!r}")
    return k, (limit or None)


def verdict(result, threshold: float | None) -> tuple[str, str]:
    """``(css class, sentence)`` of a query's match decision (``LibraryResult.match``)."""
    if result.match is None or threshold is None:
        return ("g2l-no-threshold", "this model makes no match decision (no threshold was fitted, or its fit could not "
                                    "tell libraries with the answer from those without): the scores rank the moments "
                                    "but do not say whether the library holds the answer")
    if not result.moments:
        return "g2l-no-match", "no match: the index holds no moments"
    best = result.moments[0].score
    if result.match:
        return "g2l-match", f"match: the best moment scores {best:.3f}, at or above the model's threshold " \
                            f"{threshold:.3f}"
    return "g2l-no-match", f"no match: the best moment scores {best:.3f}, below the model's threshold {threshold:.3f}"


def results_html(results, threshold: float | None) -> str:
    """Each query's ranked moments: its match decision, then a table of rank, video (file name; the
    path as indexed on hover and in ``data-video``), start, end and score (exact values in data-
    attributes). A row is played by a click."""
    parts = []
    for q, result in enumerate(results):
        kind, sentence = verdict(result, threshold)
        rows = "".join(
            f'<tr class="g2l-hit" data-query="{q}" data-rank="{rank}" data-video="{html.escape(m.video)}" '
            f'data-start="{m.start_s!r}" data-end="{m.end_s!r}" data-score="{m.score!r}" '
            f'title="{html.escape(m.video)}: play from {m.start_s:.1f} s">'
            f"<td>#{rank}</td><td class=\"g2l-video-cell\">{html.escape(Path(m.video).name or m.video)}</td>"
            f"<td>{m.start_s:.2f}</td><td>{m.end_s:.2f}</td><td>{m.score:.3f}</td></tr>"
            for rank, m in enumerate(result.moments, start=1))
        parts.append(f'<div class="g2l-library-query" data-query="{q}"><p><b>{html.escape(result.query)}</b><br>'
                     f'<span class="g2l-verdict {kind}">{html.escape(sentence)}</span></p>'
                     "<table><tr><th>rank</th><th>video</th><th>start s</th><th>end s</th><th>score</th></tr>"
                     f"{rows}</table></div>")
    return f'<div id="g2l-library-list">{"".join(parts)}</div>'


def playing_html(video: str, start_s: float, end_s: float, score: float) -> str:
    """What is playing, prominently: the moment's times, the video's name and its path as indexed."""
    return (f'<div class="g2l-now-playing" data-video="{html.escape(video)}" data-start="{start_s!r}" '
            f'data-end="{end_s!r}"><span class="g2l-moment-times">{start_s:.2f} s to {end_s:.2f} s</span> of '
            f"<b>{html.escape(Path(video).name or video)}</b> (score {score:.3f})<br>"
            f"<small>{html.escape(video)}</small></div>")


def playable_file(index, video) -> str:
    """The file of ``video`` (an ``IndexedVideo`` of ``index``) to serve: its resolved path, a regular
    video file (by its name) reached through no link, still the file that was indexed (device,
    inode, size and times); else one sentence saying why and what to do."""
    from g2l.library.store import file_identity
    from g2l.video.decoding import is_video_file

    name, folder = video.path, index.folder
    if video.identity is None:
        raise LibraryAppError(f"video {name} of index {folder} was indexed from precomputed features: there is no "
                              "video file to play")
    path = Path(video.resolved)
    if not path.is_absolute() or not is_video_file(path):
        raise LibraryAppError(f"video {name} of index {folder} is not a video file by its name ({path.name}); "
                              "the app plays video files only")
    try:
        kind = os.lstat(path).st_mode
        real = str(path.resolve(strict=True))
        identity = file_identity(path)[1]
    except (OSError, RuntimeError):
        raise LibraryAppError(f"video {name} of index {folder} is missing (it was {path}); put it back, or run "
                              f"g2l-index verify --fix {folder}") from None
    if not stat.S_ISREG(kind) or real != str(path):
        raise LibraryAppError(f"video {name} of index {folder} is no longer a regular file at {path} (a link or "
                              f"something else is there); run g2l-index verify --fix {folder}")
    if identity != video.identity:
        raise LibraryAppError(f"video {name} of index {folder} has changed since it was indexed, so its moments may "
                              f"not be where the index says; run g2l-index verify --fix {folder}")
    return str(path)


def index_summary(index) -> str:
    hours = sum(v.duration_s for v in index.videos) / 3600
    count = len(index.videos)
    return (f"index {index.folder}: {count} video{'' if count == 1 else 's'} ({hours:.2f} h), "
            f"{sum(v.cells for v in index.videos):,} moments")


def _manifest_key(folder: str) -> tuple | None:
    """What tells a rewritten manifest (a writer replaces it: a new inode) from the one read."""
    from g2l.library.store import MANIFEST

    try:
        info = os.stat(Path(folder) / MANIFEST)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass
class _Opened:
    index: object  # VideoIndex
    manifest_key: tuple | None


class LibraryHandlers:
    """What the Library tab's controls do, without Gradio (the tests call these). The tab's state is
    ``current``: the opened index's key (its folder, absolute), None before any, or ``{"error":
    message}`` after an Open that failed; ``found``: the last search's rows, per query ``(video as
    indexed, start_s, end_s, score)``, with the index key they came from. ``serve(path)`` is called
    with each file before it is handed to the player (the app adds it to Gradio's static paths)."""

    def __init__(self, grounder: Grounder, *, max_queries: int, serve=None, cached: int = CACHED_INDEXES):
        self.grounder = grounder
        self.max_queries = max_queries
        self.serve = serve
        self.cached = cached
        self._opened: OrderedDict[str, _Opened] = OrderedDict()
        self._lock = threading.Lock()  # Open, Search and a click may run at once (one Gradio worker each)

    # The indexes ---------------------------------------------------------------------------------
    def index_of(self, key: str):
        """The index at ``key``, opened again when its manifest changed since it was opened."""
        with self._lock:
            opened = self._opened.get(key)
            now = _manifest_key(key)
            if opened is None or now is None or opened.manifest_key != now:
                opened = self._keep(key, self._open(key)[0], now)
            self._opened.move_to_end(key)
            return opened.index

    def _open(self, folder: str):
        """``(index, warnings)``: ``VideoIndex.open`` for reading with the app's model, its warnings kept."""
        from g2l.library import VideoIndex

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            index = VideoIndex.open(folder, self.grounder)
        return index, [str(w.message) for w in caught]

    def _keep(self, key: str, index, manifest_key: tuple | None) -> _Opened:
        """Keep ``index`` opened from the manifest seen as ``manifest_key`` (taken before opening)."""
        opened = self._opened[key] = _Opened(index, manifest_key)
        self._opened.move_to_end(key)
        while len(self._opened) > self.cached:
            self._opened.popitem(last=False)
        return opened

    def open(self, text: str | None):
        """On Open: ``(status, current, results, found)`` for the folder typed in."""
        folder = (text or "").strip()
        try:
            if not folder:
                raise LibraryAppError("type the folder of an index made by g2l-index build, then press Open")
            if "\x00" in folder:
                raise LibraryAppError("the index folder's name holds a NUL character; type the folder's path")
            key = os.path.abspath(os.path.expanduser(folder))  # not resolved: VideoIndex.open refuses a link
            with self._lock:
                seen = _manifest_key(key)
                index, said = self._open(key)
                self._keep(key, index, seen)
        except G2LError as error:
            message = str(error)
            return error_html(message), {"error": message}, "", None
        status = f"<div>{html.escape(index_summary(index))}: write queries and press Search</div>"
        status += "".join(f'<div class="g2l-warning">warning: {html.escape(line)}</div>' for line in said)
        return status, key, "", None

    def preload(self, folder: str | Path) -> str:
        """The key of ``folder``, opened at start (``g2l-app --index``); its errors are raised, its
        warnings printed."""
        from g2l.library import VideoIndex

        key = os.path.abspath(os.path.expanduser(folder))  # not resolved: VideoIndex.open refuses a link
        with self._lock:
            seen = _manifest_key(key)
            self._keep(key, VideoIndex.open(key, self.grounder), seen)
        return key

    def status_of(self, current) -> str:
        """The status line of a new page: the index opened at start, or how to open one."""
        opened = self._opened.get(current) if isinstance(current, str) else None
        if opened is not None:
            return f"<div>{html.escape(index_summary(opened.index))}: write queries and press Search</div>"
        return f"<div>{html.escape(NO_INDEX)}</div>"

    # Search and play -----------------------------------------------------------------------------
    def search(self, current, text: str | None, top_k, per_video):
        """On Search: ``(status, results, found)``."""
        try:
            if isinstance(current, dict):  # the last Open failed: its message, not another index
                raise LibraryAppError(current["error"])
            if not current:
                raise LibraryAppError(NO_INDEX)
            queries = library_queries(text, self.max_queries)
            k, limit = search_limits(top_k, per_video)
            index = self.index_of(current)
            if not index.videos:
                raise LibraryAppError(f"index {index.folder} holds no videos; add some with g2l-index add "
                                      f"{index.folder} VIDEO...")
            results = index.search(self.grounder, queries, top_k=k, per_video=limit)
        except G2LError as error:
            return error_html(str(error)), "", None
        threshold = getattr(self.grounder, "match_threshold", None)
        found = {"index": current, "rows": [[(m.video, m.start_s, m.end_s, m.score, m.resolved) for m in r.moments]
                                            for r in results]}
        what = f"searched {len(results)} quer{'y' if len(results) == 1 else 'ies'} in {index_summary(index)}"
        status = f"<div>{html.escape(what)}: click a row to play its moment</div>"
        return status, results_html(results, threshold), found

    def play(self, found, query, rank):
        """On a click of row ``rank`` (1-based) of query ``query``: ``(player, playing)``, the file of
        that video of the index and the moment's times; a sentence when it cannot be played."""
        try:
            if not isinstance(found, dict):
                raise LibraryAppError("search first, then click a row of the results to play it")
            rows = found["rows"]
            if not (isinstance(query, int) and isinstance(rank, int) and 0 <= query < len(rows)
                    and 1 <= rank <= len(rows[query])):
                raise LibraryAppError("that row is not one of the last search's results; search again")
            row = rows[query][rank - 1]
            if not (isinstance(row, (list, tuple)) and len(row) == 5):
                raise LibraryAppError("that row is not one of the last search's results; search again")
            video, start_s, end_s, score, resolved = row
            index = self.index_of(found["index"])
            entries = [v for v in index.videos if v.path == video and v.resolved == resolved]
            if not entries:
                raise LibraryAppError(f"video {video} is no longer in index {index.folder}; search again")
            path = playable_file(index, entries[0])  # path and resolved path name one video of the index
        except G2LError as error:
            return None, error_html(str(error))
        if self.serve is not None:
            self.serve(path)
        return path, playing_html(video, start_s, end_s, score)


_SERVED: set[str] = set()  # the files serve_in_place gave Gradio (its list only grows: each once)


def serve_in_place(path: str) -> None:
    """Let Gradio serve this one file where it is (its static paths), rather than copy it into its
    cache; it stays served until the app stops."""
    import gradio as gr

    if path not in _SERVED:
        gr.set_static_paths([path])
        _SERVED.add(path)


@dataclass
class LibraryPage:
    """The Library tab's components (``elem_id`` of each: what the tests find)."""

    folder: object
    open: object
    status: object
    queries: object
    top_k: object
    per_video: object
    go: object
    results: object
    player: object
    playing: object
    current: object  # LibraryHandlers' current
    found: object  # the last search's rows


def lay_out_library(*, max_queries: int, folder: str | None, current, status: str) -> LibraryPage:
    """The tab's components, in a ``gr.Tab`` being built: the index and the queries on the left, the
    player on the right, the ranked moments below."""
    import gradio as gr

    gr.Markdown("Open an index made by `g2l-index build`, write one query per line, press **Search**: the best "
                "moments across all its videos, ranked. Click a row to play its moment.")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                folder_box = gr.Textbox(label="Index folder (on the server)", value=folder or "", scale=4,
                                        elem_id="g2l-library-index", placeholder="lib/")
                open_button = gr.Button("Open", scale=1, elem_id="g2l-library-open")
            status_line = gr.HTML(status, elem_id="g2l-library-status", js_on_load=None)
            queries = gr.Textbox(label=f"Queries, one per line (at most {max_queries})", lines=3,
                                 elem_id="g2l-library-queries")
            with gr.Row():
                top_k = gr.Number(value=10, label=f"Moments per query (1 to {MAX_TOP_K})", precision=0, minimum=1,
                                  maximum=MAX_TOP_K, elem_id="g2l-library-top-k")
                per_video = gr.Number(value=0, label="At most per video (0: no limit)", precision=0,
                                      minimum=0, elem_id="g2l-library-per-video")
            go = gr.Button("Search", variant="primary", elem_id="g2l-library-search")
        with gr.Column(scale=1):
            player = gr.Video(label="Moment", interactive=False, elem_id="g2l-library-player")
            playing = gr.HTML(elem_id="g2l-library-playing", js_on_load=None)
    results = gr.HTML(elem_id="g2l-library-results", js_on_load=ROW_CLICK_JS)
    return LibraryPage(folder_box, open_button, status_line, queries, top_k, per_video, go, results, player, playing,
                       gr.State(current), gr.State(None))


def connect_library(page: LibraryPage, handlers: LibraryHandlers) -> None:
    """Open opens, Search searches, a click on a row plays its moment (then the page seeks to it)."""
    import gradio as gr

    def play(found, evt):
        data = getattr(evt, "_data", None)
        data = data if isinstance(data, dict) else {}
        return handlers.play(found, data.get("query"), data.get("rank"))

    play.__annotations__["evt"] = gr.EventData  # a class, not this module's postponed string: Gradio reads it

    page.open.click(handlers.open, inputs=page.folder, outputs=[page.status, page.current, page.results, page.found])
    page.folder.submit(handlers.open, inputs=page.folder,
                       outputs=[page.status, page.current, page.results, page.found])
    page.go.click(handlers.search, inputs=[page.current, page.queries, page.top_k, page.per_video],
                  outputs=[page.status, page.results, page.found])
    page.results.play(play, inputs=page.found, outputs=[page.player, page.playing]).then(
        None, inputs=[page.player, page.playing], js=SEEK_LIBRARY_JS)
