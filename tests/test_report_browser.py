"""The report in a real browser: headless Chromium loads it with no console error and no network request.

Playwright drives Debian's Chromium (`executable_path`, no browser download), offline. Skipped, with the reason,
only where no Chromium binary exists (Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright
from synthetic_report import write_params, write_results

from mnistbench.report.render import run_report

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (path := shutil.which(name))), None)
# No background connections: this machine's closed network would refuse them, and they are not the page's.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
EXTERNAL_SCHEMES = ("http:", "https:", "ws:", "wss:", "ftp:")
WIDTH = 1280

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install -y chromium)")


def load_in_chromium(html: Path) -> dict[str, Any]:
    """Open `html` in headless Chromium; return every requested URL, console errors, a full-page PNG, DOM facts."""
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: errors.append(message.text) if message.type in ("error", "assert")
                    else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(500)
            facts = page.evaluate("""() => ({
                headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
                images: document.images.length,
                broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length,
                height: document.documentElement.scrollHeight})""")
            png = page.screenshot(full_page=True)
        finally:
            browser.close()
    return {"requests": requests, "errors": errors, "png": png, **facts}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("browser")
    params = write_params(root)
    layout = write_results(root, params, frozenset({("scratch_sgd", 1)}))
    run_report(params, layout)
    page = load_in_chromium(layout.report_html)
    page["report"] = layout.report_html
    screenshot = root / "report_screenshot.png"
    screenshot.write_bytes(page["png"])
    page["screenshot"] = screenshot
    return page


def test_report_loads_without_console_errors(loaded):
    assert loaded["errors"] == []


def test_report_makes_no_network_request(loaded):
    urls = loaded["requests"]
    page = loaded["report"].resolve().as_uri()
    assert page in urls, "the page load itself should be seen, or the check proves nothing"
    assert [url for url in urls if url.startswith(EXTERNAL_SCHEMES)] == []
    assert [url for url in urls if url != page and not url.startswith("data:")] == []


def test_report_renders_every_section_and_image(loaded):
    assert len(loaded["headings"]) == 10
    assert loaded["images"] >= 9 and loaded["broken"] == 0


def test_screenshot_is_a_full_page_png(loaded):
    png = loaded["screenshot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == WIDTH and height == loaded["height"] > 2000
