"""The web app (``g2l-app``, the optional extra ``g2l[app]``): upload a video or pick the shipped
example, type queries, press Ground; one table of the ranked moments of every query (click a row
and the player jumps to it), the ``--plot`` picture (timeline with the optional ground truth, score
map, a bar per word of the explanation) and a status line with the timing. A second tab, Library
(g2l/app_library.py), searches an index of many videos made by ``g2l-index build`` and plays the
moments it finds.

A video is encoded once, when it is uploaded (with a progress bar), and every Ground reuses it.
Limits keep one user from holding the server, each refused with a sentence that says it:
- uploads larger than ``max_upload_mb`` are refused by Gradio while they arrive;
- a video is checked from its container and stream headers before any frame is decoded
  (``check_video_limits``): at most ``max_video_s`` long, frames of at most ``MAX_FRAME_SIDE_PX``
  pixels on a side, at most ``MAX_NATIVE_FPS`` frames a second, and at most ``max_video_s x
  DECODE_PIXELS_PER_S`` pixels to decode in all (as many as ``max_video_s`` of 1080p at 60 frames
  a second), so a short file of very many or very large frames is refused like a long one;
- at most ``max_queries`` query lines are grounded at once; requests wait in Gradio's queue
  (``concurrency`` at a time), which shows each user their place.
Bad input (not a video, a video the decoder rejects, no query, a query with no letters, a
malformed ground truth) shows the library's one-sentence message, the one ``g2l-ground`` prints
after ``error:``, with the file's name rather than the server's temporary path, and the app keeps
serving; a failed upload's message stays until another video is given.

Files. Uploads, Gradio's copies and the figures all go to one folder of ours (``GRADIO_TEMP_DIR``
is pointed at it before Gradio is imported), removed when the app stops: Ctrl+C, SIGTERM (turned
into the same interruption by ``launch``) or a normal exit.
The command line (``g2l.cli.app_main``) parses the arguments and launches it; this module only
builds it.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from g2l.app_library import (LIBRARY_CSS, LibraryHandlers, box_queries, connect_library, error_html, lay_out_library,
                              serve_in_place)
from g2l.errors import G2LError
from g2l.explain import explain_top_moment
from g2l.inference import Grounder, GroundingError
from g2l.plots import plot_grounding

NO_VIDEO = "no video yet: upload a video file or press 'Use the example video'"
CACHED_VIDEOS = 4  # encoded videos kept (most recent uploads)
MAX_VIDEO_S = 20 * 60.0  # longest video accepted, seconds
MAX_QUERIES = 20  # most query lines grounded at once
MAX_UPLOAD_MB = 500  # largest upload accepted (megabytes; Gradio refuses bigger ones as they arrive)
MAX_FRAME_SIDE_PX = 4096  # frames of at most 4096 x 4096 pixels (one decoded frame: tens of MB)
MAX_NATIVE_FPS = 240.0  # frames a second in the file (slow-motion phone video: 240)
DECODE_PIXELS_PER_S = 1920 * 1080 * 60  # decoding work allowed per second of max_video_s: 1080p at 60 fps
CONCURRENCY = 1  # requests worked on at once; the others wait in the queue and see their place
QUEUE_SIZE = 32  # requests waiting at most; beyond, Gradio asks the user to retry
KEPT_FIGURES = 8  # figures kept on disk (the most recent)
FIGURE_WIDTH_IN, FIGURE_DPI, FIGURE_MAX_HEIGHT_PX = 12.0, 72, 1800

# A click on a row of the moments table seeks the player to the row's start: runs in the browser,
# no round trip; one listener on the document serves every table the app ever renders.
SEEK_JS = """<script>
document.addEventListener("click", (event) => {
  const row = event.target.closest ? event.target.closest("tr.g2l-moment") : null;
  const video = document.querySelector("#g2l-player video");
  if (!row || !video) return;
  video.currentTime = parseFloat(row.dataset.start);
  video.play().catch(() => {});
  document.querySelectorAll("tr.g2l-moment.g2l-playing").forEach((r) => r.classList.remove("g2l-playing"));
  row.classList.add("g2l-playing");
});
</script>"""

CSS = """
#g2l-status .g2l-error { color: #b00020; font-weight: 600; }
#g2l-status .g2l-warning { color: #8a5a00; font-weight: 600; }
#g2l-moments table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 0.8em; }
#g2l-moments td, #g2l-moments th { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }
#g2l-moments td.g2l-query-cell { text-align: left; font-weight: 600; vertical-align: top; }
#g2l-moments tr.g2l-moment { cursor: pointer; }
#g2l-moments tr.g2l-moment:hover { background: #eef3ff; }
#g2l-moments tr.g2l-playing { background: #dde7ff; }
#g2l-moments .g2l-bar { display: inline-block; height: 0.8em; vertical-align: middle; }
#g2l-moments .g2l-relative { font-size: 0.85em; color: #555; }
"""


class VideoCache:
    """Encoded videos by (path, size, mtime), most recent last; at most ``size`` kept."""

    def __init__(self, grounder: Grounder, size: int = CACHED_VIDEOS):
        self.grounder = grounder
        self.size = size
        self._videos: OrderedDict = OrderedDict()
        self.encodings = 0  # how many times a video was decoded and encoded (tests read it)

    def get(self, path: str, progress=None):
        stat = Path(path).stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._videos:
            self._videos[key] = self.grounder.encode_video(path, progress=progress)
            self.encodings += 1
            while len(self._videos) > self.size:
                self._videos.popitem(last=False)
        self._videos.move_to_end(key)
        return self._videos[key]


def check_video_limits(path: str, max_video_s: float):
    """The video's ``VideoInfo`` from its container and stream headers, before any frame is
    decoded; refused with a sentence when it is longer than ``max_video_s``, has frames larger than
    ``MAX_FRAME_SIDE_PX`` on a side, more than ``MAX_NATIVE_FPS`` frames a second, or more pixels to
    decode than ``max_video_s x DECODE_PIXELS_PER_S``."""
    from g2l.video.decoding import probe_video

    info = probe_video(path)
    name = Path(path).name
    if info.duration_s > max_video_s:
        raise GroundingError(f"video {name} is {info.duration_s / 60:.1f} min long and this app takes videos of at "
                             f"most {max_video_s / 60:g} min; cut it or run g2l-ground --window on it")
    if max(info.width, info.height) > MAX_FRAME_SIDE_PX:
        raise GroundingError(f"video {name} has frames of {info.width} x {info.height} pixels and this app decodes "
                             f"frames of at most {MAX_FRAME_SIDE_PX} x {MAX_FRAME_SIDE_PX}; scale it down "
                             "(e.g. ffmpeg -i IN -vf scale=1280:-2 OUT.mp4)")
    frames_per_s = info.num_frames / info.duration_s
    if frames_per_s > MAX_NATIVE_FPS and info.num_frames > MAX_NATIVE_FPS:  # a few frames cost nothing, however short
        raise GroundingError(f"video {name} holds {info.num_frames:,} frames in {info.duration_s:.2f} s "
                             f"({frames_per_s:,.0f} a second) and this app takes at most {MAX_NATIVE_FPS:g} frames a "
                             "second; re-encode it at a lower frame rate (e.g. ffmpeg -i IN -r 30 OUT.mp4)")
    pixels, budget = info.num_frames * info.width * info.height, max_video_s * DECODE_PIXELS_PER_S
    if pixels > budget:
        raise GroundingError(f"video {name} is {info.num_frames:,} frames of {info.width} x {info.height} pixels "
                             f"({pixels / 1e9:,.1f} billion pixels to decode) and this app decodes at most "
                             f"{budget / 1e9:,.1f} billion a video (as many as {max_video_s / 60:g} min of 1080p at "
                             "60 frames a second); cut it or scale it down")
    return info


def app_queries(text: str | None, max_queries: int) -> list[str]:
    """The grounding tab's queries box (g2l/app_library.py's ``box_queries``)."""
    return box_queries(text, max_queries, doing="grounds")


def parse_ground_truths(text: str | None, num_queries: int) -> list | None:
    """The optional ground-truth box: one ``START END`` (seconds) line per query, a blank line for
    none; empty gives None."""
    lines = [line.strip() for line in (text or "").rstrip().splitlines()]
    if not any(lines):
        return None
    if len(lines) > num_queries:
        raise GroundingError(f"{len(lines)} ground-truth lines were given for {num_queries} queries; write one "
                             "'START END' line per query (blank for none)")
    truths = []
    for number, line in enumerate(lines + [""] * (num_queries - len(lines)), start=1):
        if not line:
            truths.append(None)
            continue
        try:
            start_s, end_s = (float(x) for x in line.replace(",", " ").split())
        except ValueError:
            start_s = end_s = float("nan")
        if not (math.isfinite(start_s) and math.isfinite(end_s) and 0 <= start_s < end_s):  # g2l-ground --gt's rule
            raise GroundingError(f"ground-truth line {number} ({line[:30]!r}) is not 'START END' in seconds with "
                                 "0 <= START < END; write it like '2.5 12.0'")
        truths.append((start_s, end_s))
    return truths


def user_message(error: Exception, path: str | None) -> str:
    """The library's sentence with the server's temporary path of an upload replaced by its file name."""
    message = str(error)
    if path:
        for shown in {str(path), str(Path(path).resolve())}:
            message = message.replace(shown, Path(path).name)
    return message


def domain_html(grounder: Grounder, video, name: str) -> str:
    """A warning line when the video lies outside the model's training videos (g2l/data/domain.py), else ""."""
    from g2l.data.domain import domain_warning

    verdict = grounder.domain_check(video)
    if verdict is None or not verdict["outside"]:
        return ""
    return f'<div class="g2l-warning">warning: {html.escape(domain_warning(name, verdict))}</div>'


def moments_html(results, explanations) -> str:
    """One table of every query's ranked moments (a row seeks the player; exact values in data-
    attributes), then each explained query's word values and what they are relative to."""
    rows = []
    for q, result in enumerate(results):
        for rank, m in enumerate(result.moments, start=1):
            query_cell = (f'<td class="g2l-query-cell" rowspan="{len(result.moments)}">{html.escape(result.query)}</td>'
                          if rank == 1 else "")
            rows.append(f'<tr class="g2l-moment" data-query="{q}" data-rank="{rank}" data-start="{m.start_s!r}" '
                        f'data-end="{m.end_s!r}" data-score="{m.score!r}" title="play from {m.start_s:.1f} s">'
                        f"{query_cell}<td>#{rank}</td><td>{m.start_s:.2f}</td><td>{m.end_s:.2f}</td>"
                        f"<td>{m.score:.3f}</td></tr>")
    parts = ["<table><tr><th>query</th><th>rank</th><th>start s</th><th>end s</th><th>score</th></tr>"
             f"{''.join(rows)}</table>"]
    for q, explanation in enumerate(explanations):
        if explanation is None:
            continue
        scale = max((abs(w.value) for w in explanation.words), default=0.0) or 1.0
        how = "exact" if explanation.exact else "sampled"
        words = "".join(
            f'<tr class="g2l-word" data-query="{q}" data-word="{html.escape(w.word)}" data-value="{w.value!r}">'
            f"<td>{html.escape(w.word)}</td><td>{w.value:+.4f}</td><td style='text-align:left'>"
            f'<span class="g2l-bar" style="width:{int(80 * abs(w.value) / scale)}px;background:'
            f'{"#2e7d32" if w.value >= 0 else "#c62828"}"></span></td></tr>'
            for w in explanation.words)
        m = explanation.moment
        parts.append(f'<p>Why {m.start_s:.1f}-{m.end_s:.1f} s for <b>{html.escape(explanation.query)}</b> '
                     f'(word Shapley values, {how}):<br><span class="g2l-relative">{html.escape(explanation.relative_to)}'
                     f"</span></p><table>{words}</table>")
    return f'<div id="g2l-moments-list">{"".join(parts)}</div>'


class AppHandlers:
    """What the app's buttons do, without Gradio (the tests call these): ``encode`` on upload and
    ``ground`` on Ground. The app's state between them is ``current``: the path of the encoded
    video, None before any, or ``{"error": message}`` after an upload that failed (Ground then
    shows that message again rather than "no video yet")."""

    def __init__(self, grounder: Grounder, figures: Path, *, top_k: int = 5, max_video_s: float = MAX_VIDEO_S,
                 max_queries: int = MAX_QUERIES, explain_target: str = "runner_up"):
        self.grounder = grounder
        self.videos = VideoCache(grounder)
        self.figures = Path(figures)
        self.top_k, self.max_video_s, self.max_queries = top_k, max_video_s, max_queries
        self.explain_target = explain_target

    def load(self, path: str, progress=None):
        """The encoded video at ``path``: its limits checked first, encoded once."""
        check_video_limits(path, self.max_video_s)
        return self.videos.get(path, progress=None if progress is None else
                               lambda fraction: progress(fraction, desc="Encoding the video"))

    def encode(self, path: str | None, progress=None):
        """On upload: check the limits, decode and encode the video once; ``(player, status, current)``."""
        if not path:
            return None, "", None
        began = time.perf_counter()
        try:
            if progress is not None:
                progress(0.0, desc="Encoding the video")
            video = self.load(path, progress)
        except G2LError as error:
            message = user_message(error, path)
            return None, error_html(message), {"error": message}
        return path, (f"<div>{html.escape(Path(path).name)}: {video.duration_s:.1f} s, encoded in "
                      f"{time.perf_counter() - began:.1f} s</div>" + domain_html(self.grounder, video, Path(path).name)), path

    def ground(self, current, text: str | None, truths_text: str | None, explain: bool, progress=None):
        """On Ground: ``(status, moments, figure)`` for the queries on the ``current`` video."""
        began = time.perf_counter()
        path = current if isinstance(current, str) else None
        try:
            queries = app_queries(text, self.max_queries)
            truths = parse_ground_truths(truths_text, len(queries))
            if isinstance(current, dict):  # the upload failed: its message, not "no video yet"
                return error_html(current["error"]), "", None
            if not path:
                raise GroundingError(NO_VIDEO)
            video = self.load(path, progress)
            results = self.grounder.ground(video, queries, top_k=self.top_k, keep_maps=True)
            explanations = [None] * len(results)
            if explain:
                explanations = []
                for q, r in enumerate(results):
                    if progress is not None:
                        progress(q / len(results), desc="Explaining the top moments")
                    explanations.append(explain_top_moment(self.grounder, video, r.query, target=self.explain_target))
            figure = self.figures / f"grounding_{time.monotonic_ns()}.png"
            height_in = 2.6 * len(results) + 0.5
            plot_grounding(str(figure), Path(path).name, video.duration_s, results, explanations if explain else None,
                           truths, dpi=max(24, min(FIGURE_DPI, int(FIGURE_MAX_HEIGHT_PX / height_in))),
                           width_in=FIGURE_WIDTH_IN)
            for old in sorted(self.figures.glob("grounding_*.png"))[:-KEPT_FIGURES]:
                old.unlink(missing_ok=True)
        except G2LError as error:
            return error_html(user_message(error, path)), "", None
        seconds = time.perf_counter() - began
        what = f"grounded {len(results)} quer{'y' if len(results) == 1 else 'ies'}"
        status = (f"<div>{what}{' and explained them' if explain else ''} in {seconds:.1f} s on "
                  f"{html.escape(Path(path).name)}: click a row to play its moment</div>"
                  + domain_html(self.grounder, video, Path(path).name))
        return status, moments_html(results, explanations), str(figure)


_TEMP_DIRS: set[str] = set()  # the folders private_temp_dir made in this process


def private_temp_dir() -> Path:
    """A new folder of ours for everything Gradio writes (uploads, its copies) and our figures:
    ``GRADIO_TEMP_DIR`` is pointed at it (a folder inside the one it named, if any), so it must be
    called before Gradio is imported; removed at exit (and by ``launch`` when it returns)."""
    parent = os.environ.get("GRADIO_TEMP_DIR") or None
    if parent in _TEMP_DIRS:  # an earlier app of this process: beside it, not inside
        parent = str(Path(parent).parent)
    try:
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="g2l-app-", dir=parent))
    except OSError as error:
        raise G2LError(f"the app cannot make its temporary folder in {parent or tempfile.gettempdir()} "
                       f"({error.strerror or error}); set GRADIO_TEMP_DIR to a folder you can write to") from None
    _TEMP_DIRS.add(str(folder))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def build_app(grounder: Grounder, *, example_video: str | Path | None = None, example_queries: list[str] | None = None,
              top_k: int = 5, max_video_s: float = MAX_VIDEO_S, max_queries: int = MAX_QUERIES,
              max_upload_mb: float = MAX_UPLOAD_MB, concurrency: int = CONCURRENCY, queue_size: int = QUEUE_SIZE,
              explain_target: str = "runner_up", library_index: str | Path | None = None,
              title: str = "g2l: find when a sentence happens in a video"):
    """The Gradio Blocks of the app, queued (launch it with ``launch``): a tab to ground a video and
    the Library tab (g2l/app_library.py). ``max_video_s``: the longest video accepted (seconds; with
    the frame limits of ``check_video_limits``, checked from the headers before decoding);
    ``max_queries``: the most query lines per Ground or Search; ``max_upload_mb``: the largest upload
    (megabytes); ``concurrency``: requests worked on at once (the rest wait in a queue of at most
    ``queue_size`` and see their place); ``explain_target``: what the word values explain
    (``g2l.explain.TARGETS``); ``library_index``: an index folder opened at start (its errors are
    raised here, as ``VideoIndex.open`` words them)."""
    library = LibraryHandlers(grounder, max_queries=max_queries, serve=serve_in_place)
    opened = library.preload(library_index) if library_index is not None else None  # refused before any folder is made
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home (read when gradio is imported)
    temp_dir = private_temp_dir()  # before gradio is imported: its upload folder is read from the environment
    import gradio as gr

    figures = temp_dir / "figures"
    figures.mkdir()
    handlers = AppHandlers(grounder, figures, top_k=top_k, max_video_s=max_video_s, max_queries=max_queries,
                           explain_target=explain_target)
    with gr.Blocks(title="g2l") as app:
        gr.Markdown(f"## {title}")
        with gr.Tab("Ground a video", elem_id="g2l-tab-ground"):
            page = _lay_out(has_example=example_video is not None, max_video_s=max_video_s,
                            max_upload_mb=max_upload_mb, max_queries=max_queries)
            _connect(page, handlers, example_video, example_queries)
        with gr.Tab("Library", elem_id="g2l-tab-library"):
            shelf = lay_out_library(max_queries=max_queries, current=opened, status=library.status_of(opened),
                                    folder=None if library_index is None else str(library_index))
            connect_library(shelf, library)
    app.queue(default_concurrency_limit=concurrency, max_size=queue_size, status_update_rate="auto")
    app.g2l_videos = handlers.videos  # the cache, for tests
    app.g2l_temp_dir = temp_dir  # uploads and figures, removed at exit (and by ``launch`` when it returns)
    app.g2l_max_upload_bytes = int(max_upload_mb * 1e6)
    return app


@dataclass
class _Page:
    """The app's components (the ``elem_id`` of each is what the tests and the page's script find)."""

    upload: object
    example: object
    queries: object
    truths: object
    explain: object
    go: object
    status: object
    player: object
    moments: object
    figure: object
    current: object  # AppHandlers' current: the encoded video's path, None, or {"error": message}


def _lay_out(*, has_example: bool, max_video_s: float, max_upload_mb: float, max_queries: int) -> _Page:
    """The grounding tab's components, in a ``gr.Tab`` being built: inputs on the left, the player
    on the right, the moments and the figure below."""
    import gradio as gr

    gr.Markdown("Upload a video (or use the example), write one query per line, press **Ground**. "
                f"Click a row of the table to play its moment. Videos up to {max_video_s / 60:g} min and "
                f"{max_upload_mb:g} MB, up to {max_queries} queries.")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(label="Video file", file_count="single", type="filepath", elem_id="g2l-upload")
            example = gr.Button("Use the example video", elem_id="g2l-example", visible=has_example)
            queries = gr.Textbox(label=f"Queries, one per line (at most {max_queries})", lines=3,
                                 elem_id="g2l-queries")
            truths = gr.Textbox(label="Ground truth, optional: 'START END' in seconds, one line per query",
                                lines=1, elem_id="g2l-truths", placeholder="2.5 12.0")
            explain = gr.Checkbox(value=True, label="Explain each top moment (Shapley value of each word)",
                                  elem_id="g2l-explain")
            go = gr.Button("Ground", variant="primary", elem_id="g2l-ground")
            status = gr.HTML(elem_id="g2l-status")
        with gr.Column(scale=1):
            player = gr.Video(label="Video", interactive=False, elem_id="g2l-player")
    moments = gr.HTML(elem_id="g2l-moments")
    figure = gr.Image(label="Timeline, score map and word values (as g2l-ground --plot)", type="filepath",
                      elem_id="g2l-figure", interactive=False)
    return _Page(upload, example, queries, truths, explain, go, status, player, moments, figure, gr.State(None))


def _connect(page: _Page, handlers: AppHandlers, example_video, example_queries) -> None:
    """What each event of the page does: an upload (or the example) is encoded, Ground grounds."""
    import gradio as gr

    def encode(path, progress=gr.Progress()):
        return handlers.encode(path, progress)

    def use_example():
        queries = "\n".join(example_queries or [])
        return str(example_video), queries

    def ground(current, text, truths_text, explain, progress=gr.Progress()):
        return handlers.ground(current, text, truths_text, explain, progress)

    encoded = [page.player, page.status, page.current]
    page.upload.upload(encode, inputs=page.upload, outputs=encoded)
    page.upload.clear(lambda: (None, "", None), outputs=encoded)
    page.example.click(use_example, outputs=[page.upload, page.queries]).then(encode, inputs=page.upload,
                                                                             outputs=encoded)
    page.go.click(ground, inputs=[page.current, page.queries, page.truths, page.explain],
                  outputs=[page.status, page.moments, page.figure])


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt as Ctrl+C does, so that a stopped server
    unwinds (``finally`` blocks, atexit) instead of dying with its files left behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def launch(app, *, host: str, port: int, example_video: str | Path | None = None) -> None:
    """Serve until interrupted (Ctrl+C or SIGTERM; binds ``host``: 127.0.0.1 unless asked
    otherwise), without a share link or Gradio's banner (the command line prints the address);
    uploads larger than ``build_app``'s ``max_upload_mb`` are refused; the app's temporary folder
    goes when it returns."""
    allowed = [str(Path(example_video).resolve().parent)] if example_video else []
    try:
        with sigterm_as_interrupt():
            app.launch(server_name=host, server_port=port, inbrowser=False, share=False, show_error=False, quiet=True,
                       allowed_paths=allowed, css=CSS + LIBRARY_CSS, head=SEEK_JS,
                       max_file_size=getattr(app, "g2l_max_upload_bytes", None))
    finally:
        folder = getattr(app, "g2l_temp_dir", None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
