"""The report in a real browser: headless Chromium loads it with no console error and no network request.

Skipped, with the reason, only where no Chromium binary exists (Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

from typing import Any

import pytest
from browser import CHROMIUM, EXTERNAL_SCHEMES, NO_CHROMIUM, WIDTH, load_in_chromium
from synthetic_report import write_params, write_results

from mnistbench.report.render import run_report

pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)]


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
