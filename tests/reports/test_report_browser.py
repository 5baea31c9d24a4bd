"""Reports and the index work in a real browser: headless Debian Chromium driven by playwright."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from reports.figures import MAX_TOKEN_LABELS
from reports.server import make_server
from tests.reports.report_support import SampleStore

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

READY_TIMEOUT_MS = 90_000

PLOT_STATE_JS = """
() => Array.from(document.querySelectorAll("div.plot")).map((div) => {
  const svg = div.querySelector("svg.main-svg");
  const traces = div.querySelectorAll(".scatterlayer .trace path, .scatterlayer .trace text");
  const canvases = Array.from(div.querySelectorAll("canvas")).filter(
    (c) => c.width > 0 && c.height > 0);
  return {
    id: div.id,
    plotted: div.classList.contains("js-plotly-plot"),
    svgChildren: svg ? svg.childElementCount : 0,
    svgTraces: traces.length,
    canvases: canvases.length,
    traces: (div._fullData || []).length,
    glTraces: (div._fullData || []).filter((t) => t.type === "scattergl").length,
    svgVisible: (div._fullData || []).filter(
      (t) => t.type !== "scattergl" && t.visible === true).length,
  };
})
"""


class PageLog:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)


def _open(browser: Any, url: str) -> tuple[Any, PageLog]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log = PageLog(page)
    page.goto(url)
    page.wait_for_function("window.lockbenchReady === true", timeout=READY_TIMEOUT_MS)
    return page, log


def _assert_every_plot_drawn(page: Any) -> list[dict[str, Any]]:
    plots: list[dict[str, Any]] = page.evaluate(PLOT_STATE_JS)
    assert plots, "the report has plots"
    for plot in plots:
        assert plot["plotted"], plot
        assert plot["svgChildren"] > 0, plot
        assert plot["traces"] > 0, plot
        if plot["glTraces"]:
            assert plot["canvases"] > 0, f"WebGL traces need a drawn canvas: {plot}"
        if plot["svgVisible"]:
            assert plot["svgTraces"] > 0, f"SVG traces must draw paths or text: {plot}"
    assert page.evaluate("window.lockbenchErrors") == []
    return plots


def test_report_draws_every_plot_and_anomaly_links_jump_to_the_timeline(
    browser: Any, sample_store: SampleStore, report_pages: dict[str, str]
) -> None:
    page, log = _open(browser, (sample_store.invalid / "report.html").as_uri())
    try:
        plots = _assert_every_plot_drawn(page)
        ids = {p["id"] for p in plots}
        assert {"fig-timeline", "fig-latency", "fig-roles", "fig-clock"} <= ids
        full = page.evaluate("document.getElementById('fig-timeline')._fullLayout.xaxis.range")
        # each group's first example is shown; the rest fold into a closed <details>
        links = page.query_selector_all("ol.anomaly-groups > li > ol.anomalies a.jump")
        assert len(links) >= 1
        for link in links:
            page.evaluate("window.scrollTo(0, 0)")
            start = float(link.get_attribute("data-start"))
            end = float(link.get_attribute("data-end"))
            link.click()
            page.wait_for_function(
                "(s) => { const r = document.getElementById('fig-timeline')._fullLayout"
                ".xaxis.range; return r[0] <= s[0] && r[1] >= s[1] && r[1] - r[0] < s[2]; }",
                arg=[start, end, full[1] - full[0]],
                timeout=30_000,
            )
            top = page.evaluate("document.getElementById('timeline').getBoundingClientRect().top")
            assert 0 <= top < 200, f"the timeline is scrolled into view (top at {top}px)"
            assert page.evaluate("window.location.hash") == "#timeline"
            anomaly = link.evaluate("(a) => a.closest('li.anomaly').id")
            markers = page.evaluate(
                "(id) => document.getElementById('fig-timeline').data"
                ".filter((t) => t.meta === id).map((t) => t.visible)",
                anomaly,
            )
            assert markers == [True], f"the ops of {anomaly} are marked on the timeline"
        _assert_token_labels_appear_when_zoomed_in(page)
        assert log.errors == []
    finally:
        page.close()


LABELS_VISIBLE_JS = """
() => { const d = document.getElementById('fig-lock-0').data;
        return d.filter((t) => t.meta === 'token-labels').map((t) => t.visible !== false); }
"""


def _assert_token_labels_appear_when_zoomed_in(page: Any) -> None:
    assert page.evaluate(LABELS_VISIBLE_JS) == [False], "too many holds to label at full zoom"
    page.evaluate(
        "Plotly.relayout(document.getElementById('fig-lock-0'), {'xaxis.range': [12, 13]})"
    )
    page.wait_for_function(f"({LABELS_VISIBLE_JS.strip()})()[0] === true", timeout=30_000)
    texts = page.evaluate(
        "Array.from(document.querySelectorAll('#fig-lock-0 .textpoint text'))"
        ".map((t) => t.textContent).filter((t) => t.length)"
    )
    assert texts, texts[:5]
    assert all(t.isdigit() for t in texts), texts[:5]
    # only the holds in view are labelled (thousands of text nodes made every zoom slow)
    assert len(texts) <= MAX_TOKEN_LABELS
    page.evaluate(
        "Plotly.relayout(document.getElementById('fig-lock-0'), {'xaxis.autorange': true})"
    )
    page.wait_for_function(f"({LABELS_VISIBLE_JS.strip()})()[0] === false", timeout=30_000)


@pytest.mark.parametrize("kind", ["damaged", "no_history"])
def test_reports_of_broken_runs_render_cleanly(
    browser: Any, sample_store: SampleStore, report_pages: dict[str, str], kind: str
) -> None:
    run = getattr(sample_store, kind)
    page, log = _open(browser, (run / "report.html").as_uri())
    try:
        assert "What is missing" in page.inner_text("#problems")
        if kind == "damaged":
            _assert_every_plot_drawn(page)
        assert log.errors == []
    finally:
        page.close()


@pytest.fixture
def served(sample_store: SampleStore) -> Iterator[str]:
    server = make_server(sample_store.root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_index_page_filters_runs_and_opens_reports(
    browser: Any, served: str, report_pages: dict[str, str]
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log = PageLog(page)
    try:
        page.goto(served)
        rows = page.locator("tr.run")
        assert rows.count() == 4
        page.fill("#filter-text", "unfenced")
        assert page.locator("tr.run:visible").count() == 1
        page.fill("#filter-text", "")
        page.select_option("#filter-verdict", "unchecked")
        assert page.locator("tr.run:visible").count() == 2
        page.select_option("#filter-verdict", "")
        assert page.inner_text("#shown-count") == "4"
        page.click("text=mutex-unfenced")
        page.wait_for_function("window.lockbenchReady === true", timeout=READY_TIMEOUT_MS)
        assert "INVALID" in page.inner_text("header")
        _assert_every_plot_drawn(page)
        assert log.errors == []
    finally:
        page.close()
