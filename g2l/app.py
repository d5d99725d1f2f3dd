"""The web app (``g2l-app``, the optional extra ``g2l[app]``): upload a video or pick the shipped
example, type queries, press Ground; per query the ranked moments, the ``--plot`` picture
(timeline, score map, a bar per word of the explanation) and a player that jumps to a moment.

A video is encoded once, when it is uploaded (with a progress bar), and every Ground reuses it.
Bad input (not a video, a video the decoder rejects, no query) shows the library's one-sentence
message, the one ``g2l-ground`` prints after ``error:``, and the app keeps serving. The command
line (``g2l.cli.app_main``) parses the arguments and launches it; this module only builds it.
"""

from __future__ import annotations

import html
import tempfile
from collections import OrderedDict
from pathlib import Path

from g2l.errors import G2LError
from g2l.explain import explain_top_moment
from g2l.inference import Grounder, GroundingError
from g2l.plots import plot_grounding

NO_VIDEO = "no video yet: upload a video file or press 'Use the example video'"
CACHED_VIDEOS = 4  # encoded videos kept (most recent uploads)

# Clicking a moment seeks the player to its start: runs in the browser, no round trip.
JUMP_JS = """(choice) => {
  const seconds = parseFloat(String(choice || "").split("@").pop());
  const video = document.querySelector("#g2l-player video");
  if (video && !Number.isNaN(seconds)) { video.currentTime = seconds; video.play().catch(() => {}); }
  return choice;
}"""

CSS = """
#g2l-status .g2l-error { color: #b00020; font-weight: 600; }
#g2l-moments table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 0.8em; }
#g2l-moments td, #g2l-moments th { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }
#g2l-moments .g2l-bar { display: inline-block; height: 0.8em; vertical-align: middle; }
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


def error_html(message: str) -> str:
    return f'<div class="g2l-error">error: {html.escape(message)}</div>'


def moments_html(results, explanations) -> str:
    """Per query: a table of its ranked moments (exact values in data- attributes) and its word values."""
    parts = []
    for q, (result, explanation) in enumerate(zip(results, explanations)):
        rows = "".join(
            f'<tr class="g2l-moment" data-query="{q}" data-rank="{rank}" data-start="{m.start_s!r}" '
            f'data-end="{m.end_s!r}" data-score="{m.score!r}"><td>#{rank}</td><td>{m.start_s:.2f}</td>'
            f"<td>{m.end_s:.2f}</td><td>{m.score:.3f}</td></tr>"
            for rank, m in enumerate(result.moments, start=1))
        parts.append(f'<h4 class="g2l-query" data-query="{q}">{html.escape(result.query)}</h4>'
                     f"<table><tr><th>rank</th><th>start s</th><th>end s</th><th>score</th></tr>{rows}</table>")
        if explanation is not None:
            scale = max((abs(w.value) for w in explanation.words), default=0.0) or 1.0
            how = "exact" if explanation.exact else "sampled"
            words = "".join(
                f'<tr class="g2l-word" data-query="{q}" data-word="{html.escape(w.word)}" data-value="{w.value!r}">'
                f"<td>{html.escape(w.word)}</td><td>{w.value:+.4f}</td><td style='text-align:left'>"
                f'<span class="g2l-bar" style="width:{int(80 * abs(w.value) / scale)}px;background:'
                f'{"#2e7d32" if w.value >= 0 else "#c62828"}"></span></td></tr>'
                for w in explanation.words)
            m = explanation.moment
            parts.append(f"<p>Why {m.start_s:.1f}-{m.end_s:.1f} s: each word's Shapley value for this moment's score "
                         f"({how}; they sum to {explanation.value_all:.3f} - {explanation.value_none:.3f}, the score "
                         f"with and without the words)</p><table>{words}</table>")
    return f'<div id="g2l-moments-list">{"".join(parts)}</div>'


def build_app(grounder: Grounder, *, example_video: str | Path | None = None, example_queries: list[str] | None = None,
              top_k: int = 5, title: str = "g2l: find when a sentence happens in a video"):
    """The Gradio Blocks of the app (launch it with ``.launch(server_name=..., server_port=...)``)."""
    import gradio as gr

    videos = VideoCache(grounder)
    figures = Path(tempfile.mkdtemp(prefix="g2l-app-"))

    def encode(path, progress=gr.Progress()):
        """On upload: decode and encode the video once; the player shows it."""
        if not path:
            return None, "", None
        try:
            progress(0.0, desc="Encoding the video")
            video = videos.get(path, progress=lambda fraction: progress(fraction, desc="Encoding the video"))
        except G2LError as error:
            return None, error_html(str(error)), None
        return path, f"<div>{html.escape(Path(path).name)}: {video.duration_s:.1f} s, encoded</div>", path

    def use_example():
        queries = "\n".join(example_queries or [])
        return str(example_video), queries

    def ground(path, text, explain, progress=gr.Progress()):
        empty = ("", None, gr.update(choices=[], value=None))
        queries = [line.strip() for line in (text or "").splitlines() if line.strip()]
        try:
            if not path:
                raise GroundingError(NO_VIDEO)
            video = videos.get(path, progress=lambda fraction: progress(fraction, desc="Encoding the video"))
            results = grounder.ground(video, queries, top_k=top_k, keep_maps=True)
            explanations = [None] * len(results)
            if explain:
                explanations = [explain_top_moment(grounder, video, r.query) for r in results]
            figure = figures / f"grounding_{videos.encodings}_{abs(hash((path, tuple(queries))))}.png"
            plot_grounding(str(figure), Path(path).name, video.duration_s, results, explanations if explain else None)
        except G2LError as error:
            return (error_html(str(error)), *empty)
        choices = [(f"{r.query[:40]} #{rank}: {m.start_s:.1f}-{m.end_s:.1f} s", f"q{q}r{rank}@{m.start_s!r}")
                   for q, r in enumerate(results) for rank, m in enumerate(r.moments, start=1)]
        status = f"<div>grounded {len(results)} quer{'y' if len(results) == 1 else 'ies'}</div>"
        return status, moments_html(results, explanations), str(figure), gr.update(choices=choices, value=None)

    with gr.Blocks(title="g2l") as app:
        gr.Markdown(f"## {title}\nUpload a video (or use the example), write one query per line, press **Ground**. "
                    "Click a moment to play it.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Video file", file_count="single", type="filepath", elem_id="g2l-upload")
                example = gr.Button("Use the example video", elem_id="g2l-example",
                                    visible=example_video is not None)
                queries = gr.Textbox(label="Queries, one per line", lines=3, elem_id="g2l-queries")
                explain = gr.Checkbox(value=True, label="Explain each top moment (Shapley value of each word)",
                                      elem_id="g2l-explain")
                go = gr.Button("Ground", variant="primary", elem_id="g2l-ground")
                status = gr.HTML(elem_id="g2l-status")
            with gr.Column(scale=1):
                player = gr.Video(label="Video", interactive=False, elem_id="g2l-player")
                jump = gr.Radio(label="Jump to a moment", choices=[], elem_id="g2l-jump")
        moments = gr.HTML(elem_id="g2l-moments")
        figure = gr.Image(label="Timeline, score map and word values (as g2l-ground --plot)", type="filepath",
                          elem_id="g2l-figure", interactive=False)
        current = gr.State(None)  # the path of the encoded video in use

        upload.upload(encode, inputs=upload, outputs=[player, status, current])
        upload.clear(lambda: (None, "", None), outputs=[player, status, current])
        example.click(use_example, outputs=[upload, queries]).then(encode, inputs=upload,
                                                                   outputs=[player, status, current])
        go.click(ground, inputs=[current, queries, explain], outputs=[status, moments, figure, jump])
        jump.change(None, inputs=jump, js=JUMP_JS)
    app.g2l_videos = videos  # the cache, for tests
    return app


def launch(app, *, host: str, port: int, example_video: str | Path | None = None) -> None:
    """Serve until interrupted (binds ``host``: 127.0.0.1 unless asked otherwise)."""
    allowed = [str(Path(example_video).resolve().parent)] if example_video else []
    app.launch(server_name=host, server_port=port, inbrowser=False, share=False, show_error=False,
               allowed_paths=allowed, css=CSS)
