"""The web app in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.
The app is started as ``tools/app.py`` on a free loopback port; the test picks the example, grounds
its two queries and checks the one table of moments against ``g2l-ground --json`` and the status
line's timing, seeks the player by clicking a row, is refused too many queries and a query with
no letters, uploads a file that is not a video (the CLI's message, with the file's name and no
temporary path anywhere in the page, kept when Ground is pressed; the app keeps serving) and then
a good video, which grounds again. The Library tab is driven the same way on an index of three short
clips given with ``--index`` (its rows against ``VideoIndex.search``, a click that plays the row's
video from its moment, the files served, an index of another model refused); its handlers are
tested without a browser in tests/test_app_library.py. In CI (``CI`` set) a missing browser fails
the test. What is not in the page is tested
through the Python functions (limits, the ground-truth box, the message after a failed upload) and
a server run as a subprocess (the upload limit, the temporary folder removed on SIGTERM).

``G2L_UPDATE_SCREENSHOT=1`` also writes the README's picture, docs/app.png, small."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

import g2l.app
import g2l.video.decoding
from g2l.app import NO_VIDEO, AppHandlers, VideoCache, app_queries, check_video_limits, parse_ground_truths, user_message
from g2l.assets import demo_example
from g2l.cli import ground_main
from g2l.errors import G2LError
from g2l.inference import GroundingError
from tests.video_utils import write_test_video

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 90_000


def browser_or_fail():
    """The system Chromium and Playwright; skipped on a developer machine without them, a failure in CI."""
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        missing = missing or "no chromium on PATH (apt-get install chromium; scripts/setup.sh does it as root)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test cannot run in CI: {missing}")
        pytest.skip(missing)
    return executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def grounder():
    from g2l.assets import demo_checkpoint
    from g2l.inference import Grounder

    return Grounder.from_pretrained(str(demo_checkpoint()), device="cpu")


@pytest.fixture(scope="module")
def library(tmp_path_factory, grounder):
    """An index of three short clips (a.mp4, b.mp4, sub/c.mp4) made with the demo model, and a copy of
    it that says it was made with another model."""
    from g2l.library import VideoIndex

    folder = tmp_path_factory.mktemp("library")
    (folder / "sub").mkdir()
    paths = [folder / "a.mp4", folder / "b.mp4", folder / "sub" / "c.mp4"]
    for path, seconds in zip(paths, (6.0, 9.0, 4.0)):
        write_test_video(path, duration_s=seconds, fps=5.0, size=(64, 48))
    with VideoIndex.create(folder / "lib", grounder) as index:
        assert len(index.add(paths, grounder).added) == 3
    shutil.copytree(folder / "lib", folder / "other")
    manifest = json.loads((folder / "other" / "index.json").read_text())
    manifest["model"]["weights_sha256"] = "0" * 64
    (folder / "other" / "index.json").write_text(json.dumps(manifest))
    return folder


def wait_for_app(proc, url: str, log=lambda: "") -> None:
    """Until ``url`` answers: the app started (or it stopped, or two minutes passed: fail with ``log()``)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("g2l-app did not start: " + log())
            time.sleep(0.5)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, library):
    port = free_port()
    log = (tmp_path_factory.mktemp("app") / "app.log").open("w")
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "app.py"), "--port", str(port),
                             "--index", str(library / "lib")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path_factory.mktemp("cwd"))
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_app(proc, url, lambda: (log.flush(), Path(log.name).read_text()[-2000:])[1])
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def shown_moments(page):
    rows = page.locator("#g2l-moments tr.g2l-moment")
    out = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        out.setdefault(int(row.get_attribute("data-query")), []).append(
            (float(row.get_attribute("data-start")), float(row.get_attribute("data-end")),
             float(row.get_attribute("data-score"))))
    return [out[q] for q in sorted(out)]


def assert_same_moments(shown, expected):
    assert len(shown) == len(expected)
    for rows, result in zip(shown, expected):
        assert [(s, e) for s, e, _ in rows] == [(m["start"], m["end"]) for m in result["moments"]]
        assert np.allclose([x for _, _, x in rows], [m["score"] for m in result["moments"]], atol=1e-5)


def cli_error(argv, capsys) -> str:
    assert ground_main(argv) == 2
    return capsys.readouterr().err.strip().removeprefix("error: ")


@contextlib.contextmanager
def app_page(app_url: str, executable: str):
    """A Chromium page on the test app (the default expect timeout raised: encoding on a busy CPU
    takes a while), closed afterwards."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app_url)
            yield page
        finally:
            browser.close()


def test_the_app_in_a_browser(app_url, tmp_path, capsys):
    executable = browser_or_fail()
    from playwright.sync_api import expect

    video, queries = demo_example()
    assert ground_main([str(video), *queries, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)["results"]
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are notes, not a video\n")
    cli_message = cli_error([str(not_video), queries[0]], capsys)

    with app_page(app_url, executable) as page:
        status = page.locator("#g2l-status")

        # The shipped example: its queries are filled in, the video encoded once, both grounded.
        page.click("#g2l-example")
        expect(status).to_contain_text("encoded")
        assert page.locator("#g2l-queries textarea").input_value().splitlines() == queries
        truths = [q["gt"] for q in json.loads(Path(str(video).replace(".mp4", ".json")).read_text())["queries"]]
        page.locator("#g2l-truths textarea").fill("\n".join(f"{start} {end}" for start, end in truths))
        page.click("#g2l-ground")
        expect(status).to_contain_text(f"grounded {len(queries)} queries")
        assert re.search(rf"grounded {len(queries)} queries and explained them in \d+\.\d s on demo\.mp4",
                         status.inner_text())
        # ONE table holds every moment of every query; nothing else lists them again.
        assert page.locator("#g2l-moments table").first.locator("tr.g2l-moment").count() == sum(
            len(r["moments"]) for r in expected)
        assert page.locator("#g2l-moments tr.g2l-moment").count() == sum(len(r["moments"]) for r in expected)
        assert page.locator("#g2l-jump").count() == 0 and page.locator("input[type=radio]").count() == 0
        assert_same_moments(shown_moments(page), expected)
        words = page.locator("#g2l-moments tr.g2l-word[data-query='1']")
        shown_words = [words.nth(i).get_attribute("data-word") for i in range(words.count())]
        assert shown_words == queries[1].rstrip(".").split()  # "green." is shown as "green"
        expect(page.locator("#g2l-moments .g2l-relative").first).to_contain_text("runner-up")
        expect(page.locator("#g2l-figure img")).to_be_visible()

        # Clicking a row seeks the player to its start.
        page.locator("#g2l-moments tr.g2l-moment[data-query='1'][data-rank='1']").click()
        start = expected[1]["moments"][0]["start"]
        page.wait_for_function(f"() => Math.abs(document.querySelector('#g2l-player video').currentTime - {start}) < 2")
        page.evaluate("document.querySelector('#g2l-player video').pause()")
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)

        # Too many queries, then a query with no letters: the library's sentences.
        page.locator("#g2l-queries textarea").fill("\n".join(f"query {k}" for k in range(21)))
        page.click("#g2l-ground")
        expect(status.locator(".g2l-error")).to_have_text(
            "error: 21 queries were given and this app grounds at most 20 at once; remove some lines")
        page.locator("#g2l-queries textarea").fill("\u200b\u200b")
        page.click("#g2l-ground")
        expect(status.locator(".g2l-error")).to_contain_text("has no letters")

        # A file that is not a video: the CLI's sentence, naming the file, not the app's copy of it.
        page.locator("#g2l-upload button[aria-label='Clear']").click()
        page.locator("#g2l-upload input[type=file]").set_input_files(str(not_video))
        expected_message = "error: " + cli_message.replace(str(not_video), "notes.mp4")
        expect(status.locator(".g2l-error")).to_have_text(expected_message)
        body = page.locator("body").inner_text()
        for temporary in {tempfile.gettempdir(), "/tmp/", str(tmp_path)}:
            assert temporary not in body and temporary not in status.inner_html()
        # Ground now (after another message, so that the answer shows): the upload's message, not "no video yet".
        page.locator("#g2l-truths textarea").fill("")
        page.locator("#g2l-queries textarea").fill("\u200b")
        page.click("#g2l-ground")
        expect(status.locator(".g2l-error")).to_contain_text("has no letters")
        page.locator("#g2l-queries textarea").fill(queries[0])
        page.click("#g2l-ground")
        expect(status.locator(".g2l-error")).to_have_text(expected_message)

        # The app keeps serving: a good upload grounds again.
        page.locator("#g2l-upload button[aria-label='Clear']").click()
        page.locator("#g2l-upload input[type=file]").set_input_files(str(video))
        expect(status).to_contain_text("encoded")
        page.locator("#g2l-queries textarea").fill("\n".join(queries))
        page.locator("#g2l-truths textarea").fill("")
        page.click("#g2l-ground")
        expect(status).to_contain_text(f"grounded {len(queries)} queries")
        assert_same_moments(shown_moments(page), expected)
        assert "/tmp/" not in page.locator("body").inner_text()
    if os.environ.get("G2L_UPDATE_SCREENSHOT"):
        from PIL import Image

        image = Image.open(tmp_path / "app.png").convert("RGB")
        image = image.resize((800, round(image.height * 800 / image.width)), Image.LANCZOS)
        image.quantize(colors=64).save(REPO / "docs" / "app.png", optimize=True)


def test_the_library_tab_in_a_browser(app_url, library, grounder):
    """The index given with --index is open; a search shows each query's ranked moments as
    VideoIndex.search finds them; a click plays that video from the moment's start; an index of
    another model typed in is refused with the library's sentence (and Search then repeats it)."""
    executable = browser_or_fail()
    from playwright.sync_api import expect

    from g2l.library import VideoIndex, VideoIndexError

    queries = ["the red circle grows.", "a blue square leaves."]
    expected = VideoIndex.open(library / "lib", grounder).search(grounder, queries, top_k=4, per_video=2)
    with pytest.raises(VideoIndexError) as refused:
        VideoIndex.open(library / "other", grounder)
    with app_page(app_url, executable) as page:
        page.get_by_role("tab", name="Library").click()
        status = page.locator("#g2l-library-status")
        expect(status).to_contain_text(f"index {library / 'lib'}: 3 videos")
        page.locator("#g2l-library-queries textarea").fill("\n".join(queries))
        page.locator("#g2l-library-top-k input").fill("4")
        page.locator("#g2l-library-per-video input").fill("2")
        page.click("#g2l-library-search")
        expect(status).to_contain_text("searched 2 queries")
        rows = page.locator("#g2l-library-results tr.g2l-hit")
        assert rows.count() == 8
        for q, result in enumerate(expected):
            shown = page.locator(f"#g2l-library-results tr.g2l-hit[data-query='{q}']")
            assert [(shown.nth(i).get_attribute("data-video"), float(shown.nth(i).get_attribute("data-start")),
                     float(shown.nth(i).get_attribute("data-end"))) for i in range(shown.count())] == [
                (m.video, m.start_s, m.end_s) for m in result.moments]
            assert np.allclose([float(shown.nth(i).get_attribute("data-score")) for i in range(shown.count())],
                               [m.score for m in result.moments], atol=1e-5)
            assert [shown.nth(i).locator("td").nth(1).inner_text() for i in range(shown.count())] == [
                Path(m.video).name for m in result.moments]
        verdicts = page.locator("#g2l-library-results .g2l-verdict")
        assert verdicts.count() == 2  # the demo model has no match threshold, and says so
        expect(verdicts.first).to_contain_text("this model makes no match decision")

        # A click plays that row's video from its moment (it starts there, and pauses at its end);
        # then a row of another video (its start only).
        first = expected[1].moments[0]
        second = next(m for m in expected[0].moments if m.video != first.video)
        for q, moment in ((1, first), (0, second)):
            rank = expected[q].moments.index(moment) + 1
            page.locator(f"#g2l-library-results tr.g2l-hit[data-query='{q}'][data-rank='{rank}']").click()
            expect(page.locator("#g2l-library-playing")).to_contain_text(
                f"{moment.start_s:.2f} s to {moment.end_s:.2f} s of {Path(moment.video).name}")
            page.wait_for_function(
                "([path, start, end]) => { const v = document.querySelector('#g2l-library-player video');"
                " return v && decodeURIComponent(v.currentSrc).includes(path) && v.played.length > 0"
                " && Math.abs(v.played.start(0) - start) < 0.3 && (end === null || (v.paused"
                " && Math.abs(v.currentTime - end) < 0.5)); }",
                arg=[str(Path(moment.video).resolve()), moment.start_s, moment.end_s if q == 1 else None])

        # The played file is served; the index's own files and a video not played are not.
        unplayed = next(p for p in ("a.mp4", "b.mp4", "sub/c.mp4")
                        if str(library / p) not in (first.video, second.video))
        for path, code in ((Path(second.video).resolve(), 200), (library / "lib" / "index.json", 403),
                           (library / unplayed, 403)):
            try:
                code_got = urllib.request.urlopen(f"{app_url}gradio_api/file={path}", timeout=30).status
            except urllib.error.HTTPError as error:
                code_got = error.code
            assert (path.name, code_got) == (path.name, code)

        # An index of another model: the library's sentence, and Search repeats it.
        page.locator("#g2l-library-index textarea, #g2l-library-index input").first.fill(str(library / "other"))
        page.click("#g2l-library-open")
        expect(status.locator(".g2l-error")).to_have_text(f"error: {refused.value}")
        page.click("#g2l-library-search")
        expect(status.locator(".g2l-error")).to_have_text(f"error: {refused.value}")
        assert page.locator("#g2l-library-results tr.g2l-hit").count() == 0


class CountingGrounder:
    def __init__(self):
        self.calls = 0

    def encode_video(self, path, progress=None):
        self.calls += 1
        if progress:
            progress(1.0)
        return object()


def test_a_video_is_encoded_once_and_reused(tmp_path):
    grounder = CountingGrounder()
    cache = VideoCache(grounder, size=2)
    paths = []
    for name in "abc":
        paths.append(tmp_path / f"{name}.mp4")
        paths[-1].write_bytes(name.encode())
    first = cache.get(str(paths[0]))
    assert cache.get(str(paths[0])) is first and grounder.calls == 1
    cache.get(str(paths[1]))
    cache.get(str(paths[2]))  # the oldest goes
    cache.get(str(paths[0]))
    assert grounder.calls == 4 and cache.encodings == 4


def no_decoding(*args, **kwargs):
    raise AssertionError("a frame was decoded")


def test_the_limits_and_the_ground_truth_box(tmp_path, monkeypatch):
    monkeypatch.setattr(g2l.video.decoding, "_get_batch", no_decoding)  # every check reads headers only
    video, _ = demo_example()
    duration = json.loads(Path(str(video).replace(".mp4", ".json")).read_text())["duration"]
    assert check_video_limits(str(video), 60.0).duration_s == pytest.approx(duration, abs=0.5)  # from the container
    with pytest.raises(GroundingError, match=rf"video demo\.mp4 is {duration / 60:.1f} min long and this app takes "
                                             rf"videos of at most {duration / 120:.1f} min"):
        check_video_limits(str(video), duration / 2)
    assert app_queries(" a\n\n b \n", 2) == ["a", "b"]
    with pytest.raises(GroundingError, match="3 queries were given and this app grounds at most 2"):
        app_queries("a\nb\nc", 2)
    assert parse_ground_truths("", 2) is None and parse_ground_truths("\n\n", 2) is None
    assert parse_ground_truths("2.5 12\n\n", 3) == [(2.5, 12.0), None, None]
    assert parse_ground_truths("\n1, 2", 2) == [None, (1.0, 2.0)]
    for bad in ("12 2.5", "1", "a b", "-1 3", "1e308 1e309", "0 inf", "nan 1", "2 2"):  # g2l-ground --gt's rule
        with pytest.raises(GroundingError, match=r"ground-truth line 1 .* with 0 <= START < END"):
            parse_ground_truths(bad, 1)
    assert parse_ground_truths("0 1e308", 1) == [(0.0, 1e308)]
    with pytest.raises(GroundingError, match="2 ground-truth lines were given for 1 queries"):
        parse_ground_truths("1 2\n3 4", 1)
    upload = tmp_path / "gradio" / "3f2a" / "notes.mp4"
    assert user_message(GroundingError(f"video {upload} is not a video"), str(upload)) == "video notes.mp4 is not a video"


@pytest.mark.parametrize("limit, value, message", [
    # a 2 s video of 50 frames of 64 x 48 (153,600 pixels to decode): each limit set just below it
    ("MAX_FRAME_SIDE_PX", 63, r"video short\.mp4 has frames of 64 x 48 pixels and this app decodes frames of at most "
                              r"63 x 63; scale it down"),
    ("MAX_NATIVE_FPS", 24.0, r"video short\.mp4 holds 50 frames in 2\.00 s \(25 a second\) and this app takes at most "
                             r"24 frames a second; re-encode it at a lower frame rate"),
    ("DECODE_PIXELS_PER_S", 153_599 / 60, r"video short\.mp4 is 50 frames of 64 x 48 pixels \(0\.0 billion pixels to "
                                          r"decode\) and this app decodes at most 0\.0 billion a video"),
])
def test_the_frames_and_pixels_are_bounded_from_the_headers(tmp_path, monkeypatch, limit, value, message):
    """Seconds alone do not bound the work (a 0.9 s file of 30,000 frames, a 12000 x 12000 frame):
    frames, frame size and pixels to decode are checked from the headers, nothing decoded."""
    path = tmp_path / "short.mp4"
    write_test_video(path, duration_s=2.0, fps=25.0, size=(64, 48))
    monkeypatch.setattr(g2l.video.decoding, "_get_batch", no_decoding)
    info = check_video_limits(str(path), 60.0)  # within every default limit
    assert (info.num_frames, info.width, info.height) == (50, 64, 48)
    monkeypatch.setattr(g2l.app, limit, value)
    with pytest.raises(GroundingError, match=message):
        check_video_limits(str(path), 60.0)


def test_ground_after_a_failed_upload_repeats_its_message(tmp_path):
    handlers = AppHandlers(CountingGrounder(), tmp_path)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are notes, not a video\n")
    player, status, current = handlers.encode(str(not_video))
    assert player is None and "the video cannot be read" not in NO_VIDEO
    message = current["error"]
    assert "notes.mp4" in message and str(tmp_path) not in message and status == g2l.app.error_html(message)
    shown, moments, figure = handlers.ground(current, "a person runs", "", False)
    assert shown == status and moments == "" and figure is None  # the upload's message, not "no video yet"
    assert handlers.ground(None, "a person runs", "", False)[0] == g2l.app.error_html(NO_VIDEO)
    assert handlers.grounder.calls == 0


def upload(url: str, name: str, data: bytes) -> tuple[int, str]:
    """POST one file to Gradio's upload route, as the page does."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "gradio_api/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_uploads_are_bounded_and_go_with_the_app_on_sigterm(tmp_path):
    """An upload over --max-upload-mb is refused (413); what was uploaded lives in the app's own
    folder inside GRADIO_TEMP_DIR, and SIGTERM removes it (exit 0, as Ctrl+C)."""
    parent, cwd = tmp_path / "gradio-temp", tmp_path / "cwd"
    cwd.mkdir()
    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(parent)}
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "app.py"), "--port", str(port), "--max-upload-mb", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_app(proc, url)
        status, answer = upload(url, "small.mp4", b"x" * 1000)
        (stored,) = json.loads(answer)
        assert status == 200 and Path(stored).read_bytes() == b"x" * 1000
        (ours,) = parent.iterdir()
        assert ours.name.startswith("g2l-app-") and Path(stored).is_relative_to(ours)
        status, answer = upload(url, "big.mp4", b"x" * 1_000_001)
        assert status == 413 and "1000000 bytes" in answer
        assert sorted(p.name for p in ours.rglob("*.mp4")) == ["small.mp4"]  # the refused one is not kept
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output[-2000:]
    assert list(parent.iterdir()) == [] and list(cwd.iterdir()) == []


def test_an_unusable_gradio_temp_dir_is_one_sentence(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "file" / "below"))
    with pytest.raises(G2LError, match=r"the app cannot make its temporary folder in .*/file/below \(Not a directory\); "
                                        "set GRADIO_TEMP_DIR to a folder you can write to"):
        g2l.app.private_temp_dir()
