"""Headless Chromium for the report tests (a helper module, no tests): Playwright drives Debian's Chromium
through `executable_path`, offline, with no browser download."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (path := shutil.which(name))), None)
# No background connections: this machine's closed network would refuse them, and they are not the page's.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
EXTERNAL_SCHEMES = ("http:", "https:", "ws:", "wss:", "ftp:")
WIDTH = 1280

NO_CHROMIUM = "no chromium binary (Debian: apt-get install -y chromium)"


def load_in_chromium(html: Path, screenshot: bool = True) -> dict[str, Any]:
    """Open `html` in headless Chromium; return every requested URL, console errors, DOM facts and, with
    `screenshot`, a full-page PNG (seconds for a long report: Chromium draws and encodes all of it)."""
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
                confusion_rows: Array.from(document.querySelectorAll('.confusion table'))
                    .map(t => t.querySelectorAll('tr').length),
                height: document.documentElement.scrollHeight,
                scroll_width: document.documentElement.scrollWidth,
                inner_width: window.innerWidth,
                past_right_edge: Array.from(document.querySelectorAll('body *'))
                    .filter(e => e.getBoundingClientRect().right > window.innerWidth)
                    .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : ''))})""")
            png = page.screenshot(full_page=True) if screenshot else None
        finally:
            browser.close()
    return {"requests": requests, "errors": errors, "png": png, **facts}
