"""The web app in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.
The app is started as ``tools/app.py`` on a free loopback port; the test picks the example, grounds
its two queries and checks the one table of moments against ``g2l-ground --json`` and the status
line's timing, seeks the player by clicking a row, is refused too many queries and a query with
no letters, uploads a file that is not a video (the CLI's message, with the file's name and no
temporary path anywhere in the page; the app keeps serving) and then a good video, which grounds
again. In CI (``CI`` set) a missing browser fails the test.

``G2L_UPDATE_SCREENSHOT=1`` also writes the README's picture, docs/app.png, small."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from g2l.app import VideoCache, app_queries, check_video_length, parse_ground_truths, user_message
from g2l.assets import demo_example
from g2l.cli import ground_main
from g2l.inference import GroundingError

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
def app_url(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("app") / "app.log").open("w")
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "app.py"), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path_factory.mktemp("cwd"))
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise AssertionError("g2l-app did not start: " + Path(log.name).read_text()[-2000:])
                time.sleep(0.5)
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


def test_the_app_in_a_browser(app_url, tmp_path, capsys):
    executable = browser_or_fail()
    from playwright.sync_api import expect, sync_playwright

    video, queries = demo_example()
    assert ground_main([str(video), *queries, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)["results"]
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are notes, not a video\n")
    cli_message = cli_error([str(not_video), queries[0]], capsys)

    expect.set_options(timeout=TIMEOUT_MS)  # encoding on a busy CPU takes a while
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app_url)
            status = page.locator("#g2l-status")

            # The shipped example: its queries are filled in, the video encoded once, both grounded.
            page.click("#g2l-example")
            expect(status).to_contain_text("encoded")
            assert page.locator("#g2l-queries textarea").input_value().splitlines() == queries
            page.locator("#g2l-truths textarea").fill("2.6 12.3\n18.9 29.6")
            page.click("#g2l-ground")
            expect(status).to_contain_text("grounded 2 queries")
            assert re.search(r"grounded 2 queries and explained them in \d+\.\d s on demo\.mp4", status.inner_text())
            # ONE table holds every moment of every query; nothing else lists them again.
            assert page.locator("#g2l-moments table").first.locator("tr.g2l-moment").count() == sum(
                len(r["moments"]) for r in expected)
            assert page.locator("#g2l-moments tr.g2l-moment").count() == sum(len(r["moments"]) for r in expected)
            assert page.locator("#g2l-jump").count() == 0 and page.locator("input[type=radio]").count() == 0
            assert_same_moments(shown_moments(page), expected)
            words = page.locator("#g2l-moments tr.g2l-word[data-query='1']")
            assert [words.nth(i).get_attribute("data-word") for i in range(words.count())] == queries[1].split()
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

            # The app keeps serving: a good upload grounds again.
            page.locator("#g2l-upload button[aria-label='Clear']").click()
            page.locator("#g2l-upload input[type=file]").set_input_files(str(video))
            expect(status).to_contain_text("encoded")
            page.locator("#g2l-queries textarea").fill("\n".join(queries))
            page.locator("#g2l-truths textarea").fill("")
            page.click("#g2l-ground")
            expect(status).to_contain_text("grounded 2 queries")
            assert_same_moments(shown_moments(page), expected)
            assert "/tmp/" not in page.locator("body").inner_text()
        finally:
            browser.close()
    if os.environ.get("G2L_UPDATE_SCREENSHOT"):
        from PIL import Image

        image = Image.open(tmp_path / "app.png").convert("RGB")
        image = image.resize((800, round(image.height * 800 / image.width)), Image.LANCZOS)
        image.quantize(colors=64).save(REPO / "docs" / "app.png", optimize=True)


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


def test_the_limits_and_the_ground_truth_box(tmp_path):
    video, _ = demo_example()
    assert check_video_length(str(video), 60.0) == pytest.approx(40.0, abs=0.5)  # from the container
    with pytest.raises(GroundingError, match=r"video demo\.mp4 is 0\.7 min long and this app takes videos of at most 0\.5 min"):
        check_video_length(str(video), 30.0)
    assert app_queries(" a\n\n b \n", 2) == ["a", "b"]
    with pytest.raises(GroundingError, match="3 queries were given and this app grounds at most 2"):
        app_queries("a\nb\nc", 2)
    assert parse_ground_truths("", 2) is None and parse_ground_truths("\n\n", 2) is None
    assert parse_ground_truths("2.5 12\n\n", 3) == [(2.5, 12.0), None, None]
    assert parse_ground_truths("\n1, 2", 2) == [None, (1.0, 2.0)]
    for bad in ("12 2.5", "1", "a b", "-1 3"):
        with pytest.raises(GroundingError, match="ground-truth line 1"):
            parse_ground_truths(bad, 1)
    with pytest.raises(GroundingError, match="2 ground-truth lines were given for 1 queries"):
        parse_ground_truths("1 2\n3 4", 1)
    upload = tmp_path / "gradio" / "3f2a" / "notes.mp4"
    assert user_message(GroundingError(f"video {upload} is not a video"), str(upload)) == "video notes.mp4 is not a video"
