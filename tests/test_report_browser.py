"""The report in a real browser: headless Chromium loads it with no console error and no network request.

Skipped, with the reason, only where no Chromium binary exists (Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

from typing import Any

import pytest
from browser import CHROMIUM, EXTERNAL_SCHEMES, NO_CHROMIUM, WIDTH, load_in_chromium
from synthetic_report import sweep_models, write_params, write_results

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


@pytest.fixture(scope="module")
def loaded_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 16-model learning-rate sweep (two families of 8), with 10,000 test images."""
    root = tmp_path_factory.mktemp("browser_sweep")
    models, skill = sweep_models(8, ("scratch_sgd", "scratch_adam"))
    data = {"n_train": 500, "n_val": 100, "n_test": 10_000}
    params = write_params(root, data=data, models=models)
    layout = write_results(root, params, frozenset({(next(iter(models)), 1)}), skill=skill)
    run_report(params, layout)
    page = load_in_chromium(layout.report_html)
    (root / "report_screenshot.png").write_bytes(page["png"])
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
    assert loaded["images"] >= 7 and loaded["broken"] == 0
    # Each model with a successful run: its confusion matrix as two tables, a header row and ten digits each.
    assert loaded["confusion_rows"] == [11] * 2 * 3


def test_screenshot_is_a_full_page_png(loaded):
    png = loaded["screenshot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width == WIDTH and height == loaded["height"] > 2000


@pytest.mark.parametrize("report", ["loaded", "loaded_sweep"], ids=["default", "16 models"])
def test_report_fits_a_1280_px_window_without_scrolling_sideways(report, request):
    page = request.getfixturevalue(report)
    assert page["inner_width"] == WIDTH
    assert page["past_right_edge"] == []
    assert page["scroll_width"] <= page["inner_width"]


@pytest.mark.slow
def test_the_fixture_pipeline_s_own_report_fits_a_1280_px_window(built_repo):
    """A report of real runs, whose timings have more digits than the synthetic ones (0.00218 s, 2,396,087/s): its
    summary table ran 59 px past the right edge."""
    page = load_in_chromium(built_repo / "reports" / "report.html", screenshot=False)
    assert page["errors"] == []
    assert page["past_right_edge"] == []
    assert page["scroll_width"] <= page["inner_width"]
