"""The web page in a real headless Chromium (Debian's /usr/bin/chromium, driven by playwright):
type a post, attach a PNG, submit, and check the rendered entities / relations. Screenshots go
to artifacts/browser/. Without chromium these tests FAIL: install it with
`apt-get install -y chromium` (never `playwright install`)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from mmie.serve.app import create_app
from test_serve import FakeNER, FakePipeline, FakeRE

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MMIE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# An emoji before the mentions: UTF-16 indices (JS) and code-point offsets (Python) differ.
POST = "\U0001F3C0 Jordan scores 30 in Chicago tonight"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """uvicorn in a thread on a free port."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium with "
                    f"`apt-get install -y chromium` (do not use `playwright install`)")
    from playwright.sync_api import sync_playwright

    exe = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROME_ARGS)
        yield b
        b.close()


@pytest.fixture
def picture(tmp_path) -> Path:
    path = tmp_path / "post.png"
    im = Image.new("RGB", (64, 48), (30, 90, 200))
    for x in range(20, 44):
        for y in range(12, 36):
            im.putpixel((x, y), (250, 200, 20))
    im.save(path)
    return path


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)
    return page, errors


def test_page_ner_entities_with_picture(browser, picture):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ner = FakeNER()
    with _Server(create_app(ner, pipeline=FakePipeline())) as url:
        page, errors = _open(browser, url)
        assert page.locator("#mention-fields").is_hidden()
        assert page.locator("#labels-field").is_hidden()
        page.fill("#text", POST)
        page.set_input_files("#image", str(picture))
        page.wait_for_function("document.getElementById('preview').naturalWidth === 64")
        page.click("#submit")
        page.wait_for_selector("body[data-rendered='1']", timeout=10_000)
        ents = page.locator("#annotated span.entity")
        got = [(ents.nth(i).locator(".entity-text").inner_text(), ents.nth(i).get_attribute("data-type"))
               for i in range(ents.count())]
        assert got == [("Jordan", "PER"), ("Chicago", "LOC")]
        # the server saw the picture: score 0.9 only when an image arrived, with its size
        assert ents.nth(0).get_attribute("data-score") == "0.900"
        assert ner.images[-1] == (64, 48)
        # the text around the entities is kept intact (emoji included)
        annotated = page.locator("#annotated").evaluate(
            "n => Array.from(n.childNodes).map(c => c.nodeType === 3 ? c.textContent"
            " : c.querySelector('.entity-text').textContent).join('')")
        assert annotated == POST
        assert page.locator("#entities-table tbody tr").count() == 2
        page.screenshot(path=str(ARTIFACTS / "ner.png"), full_page=True)

        # the same post through /extract: relations between the highlighted entities
        page.check("#use-extract")
        page.click("#submit")
        page.wait_for_selector("body[data-rendered='2']", timeout=10_000)
        cells = page.locator("#relations-table tbody tr").first.locator("td").all_inner_texts()
        assert cells == ["0: Jordan", "/per/loc/place_of_residence", "1: Chicago", "0.700"]
        page.screenshot(path=str(ARTIFACTS / "extract.png"), full_page=True)

        # an error from the service is shown, not swallowed
        page.uncheck("#use-extract")
        page.fill("#text", "BOOM " + POST)
        page.click("#submit")
        page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert page.locator("#error").inner_text().startswith("500: model error")
        # ... and the previous post's result is gone
        assert page.locator("#output").is_hidden()
        assert page.locator("#annotated span.entity").count() == 0
        assert errors == []
        page.close()
    assert (ARTIFACTS / "ner.png").stat().st_size > 5000


def test_page_relation_head_tail_offsets(browser, picture):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with _Server(create_app(FakeRE())) as url:
        page, errors = _open(browser, url)
        assert page.locator("#mention-fields").is_visible()
        page.fill("#text", POST)
        page.set_input_files("#image", str(picture))
        page.fill("#head", "Jordan")
        page.fill("#tail", "Chicago")
        page.click("#submit")
        page.wait_for_selector("body[data-rendered='1']", timeout=10_000)
        # FakeRE names the relation after the text at the offsets it received: correct only
        # if the page converted UTF-16 indices to code-point offsets
        cells = page.locator("#relations-table tbody tr").first.locator("td").all_inner_texts()
        assert cells == ["Jordan", "Jordan->Chicago", "Chicago", "0.750"]
        marked = page.locator("#annotated span.entity .entity-text").all_inner_texts()
        assert marked == ["Jordan", "Chicago"]
        page.screenshot(path=str(ARTIFACTS / "re.png"), full_page=True)
        page.fill("#tail", "Boston")
        page.click("#submit")
        assert "does not occur" in page.locator("#error").inner_text()
        assert errors == []
        page.close()


def test_page_with_a_bearer_token(browser):
    """A service started with --token: the page asks for the token, then works with it."""
    with _Server(create_app(FakeNER(), token="s3cret")) as url:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#error:not([hidden])", timeout=10_000)
        assert "access token" in page.locator("#error").inner_text()
        assert page.locator("#token-field").is_visible()
        page.fill("#token", "s3cret")
        page.click("#token-apply")
        page.wait_for_selector("body[data-ready='1']", timeout=10_000)
        page.fill("#text", POST)
        page.click("#submit")
        page.wait_for_selector("body[data-rendered='1']", timeout=10_000)
        ents = page.locator("#annotated span.entity")
        assert [ents.nth(i).get_attribute("data-type") for i in range(ents.count())] == \
            ["PER", "LOC"]
        assert errors == []
        page.close()
