"""The report in a real browser: headless Chromium loads it with no console error and no network request.

Chromium is driven over the DevTools protocol through --remote-debugging-pipe (JSON messages separated by NUL
bytes on file descriptors 3 and 4), so no websocket library and no port are needed. Skipped, with the reason,
only where no Chromium binary exists (Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_report_synthetic import write_params, write_results

from mnistbench.report.render import run_report

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (path := shutil.which(name))), None)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe")
SHARED_SCREENSHOT = Path("/tmp/report_screenshot.png")
EXTERNAL_SCHEMES = ("http:", "https:", "ws:", "wss:", "ftp:")
TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install -y chromium)")


def _above_4(fd: int) -> int:
    """The same pipe end on a descriptor >= 10, so that moving it onto 3 or 4 cannot clobber another end."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class DevToolsPipe:
    """A minimal DevTools client over Chromium's debugging pipe: send commands, collect every event."""

    def __init__(self, user_data_dir: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        to_browser_read, from_browser_write = _above_4(to_browser_read), _above_4(from_browser_write)
        # The pipe protocol wants the browser's ends on fds 3 (commands in) and 4 (replies out): bash moves them.
        moves = f"3<&{to_browser_read} 4>&{from_browser_write} {to_browser_read}<&- {from_browser_write}>&-"
        self._process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" {moves}', CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}",
             "about:blank"],
            pass_fds=(to_browser_read, from_browser_write), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Run one DevTools command and return its result (events arriving meanwhile go to self.events)."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._next_message(deadline)
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def wait_for(self, method: str) -> None:
        """Block until an event named `method` has arrived."""
        deadline = time.monotonic() + TIMEOUT
        while not any(event["method"] == method for event in self.events):
            self._next_message(deadline)

    def drain(self, seconds: float) -> None:
        """Collect events for `seconds` more."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._next_message(deadline)
        except TimeoutError:
            pass

    def _next_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError("no message from chromium in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed the debugging pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError, ConnectionError):
            self.send("Browser.close")
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def load_in_chromium(html: Path, user_data_dir: Path) -> dict[str, Any]:
    """Open `html` in headless Chromium; return its events, a full-page PNG and a few DOM facts."""
    browser = DevToolsPipe(user_data_dir)
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session)
        browser.send("Emulation.setDeviceMetricsOverride", session, width=1280, height=900, deviceScaleFactor=1,
                     mobile=False)
        browser.send("Page.navigate", session, url=html.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        browser.drain(1.0)
        facts = browser.send("Runtime.evaluate", session, returnByValue=True, expression="""({
            headings: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),
            images: document.images.length,
            broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length,
            height: document.documentElement.scrollHeight})""")["result"]["value"]
        shot = browser.send("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": 1280, "height": facts["height"], "scale": 1})
        return {"events": browser.events, "png": base64.b64decode(shot["data"]), **facts}
    finally:
        browser.close()


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    errors = [json.dumps(e["params"])[:300] for e in events if e["method"] == "Runtime.exceptionThrown"]
    errors += [json.dumps(e["params"])[:300] for e in events
               if e["method"] == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert")]
    errors += [e["params"]["entry"].get("text", "") for e in events
               if e["method"] == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"]
    return errors


def requested_urls(events: list[dict[str, Any]]) -> list[str]:
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("browser")
    params = write_params(root)
    layout = write_results(root, params, frozenset({("scratch_sgd", 1)}))
    run_report(params, layout)
    page = load_in_chromium(layout.report_html, root / "chromium-profile")
    page["report"] = layout.report_html
    screenshot = root / "report_screenshot.png"
    screenshot.write_bytes(page["png"])
    with contextlib.suppress(OSError):
        SHARED_SCREENSHOT.write_bytes(page["png"])
    page["screenshot"] = screenshot
    return page


def test_report_loads_without_console_errors(loaded):
    assert console_errors(loaded["events"]) == []


def test_report_makes_no_network_request(loaded):
    urls = requested_urls(loaded["events"])
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
    assert width == 1280 and height == loaded["height"] > 2000
