"""Benchmark of the HTML report: render time and file size for a 60 s run and a 100,000-op history.

An op is a client operation (invoke + completion, two history records), so the large case has
about 200,000 records: the stricter reading of the target.

Targets (issue 9): a 60 s run's report in at most 5 s; a 100,000-op history's in at most 20 s,
with a file under 10 MB. The runs are synthetic (reports.synthetic): five clients, two locks, a
fault every 7 s, about 1,350 ops/s. Prints one line per figure; ``--browser`` also times how long
headless Chromium takes until every plot is drawn, ``--screenshot PATH`` saves a picture of the
sample report (docs/img/report.png).

    .venv/bin/python -m benchmarks.reports [--repeat 3] [--browser] [--screenshot PATH]
        [--records 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reports.render import render_report
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.synthetic_runs import SyntheticRunSpec, write_synthetic_run

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, Page

TARGET_OPS = 100_000


def time_render(run_dir: Path, repeat: int) -> tuple[float, float, float, int]:
    """(median wall s, max wall s, median CPU s, bytes) of render_report, in this process.

    CPU time is printed too because this machine is shared: wall time includes waiting for a
    core, CPU time is what the report itself costs.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = render_report(run_dir)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), max(walls), statistics.median(cpus), out.stat().st_size


def time_cli(run_dir: Path) -> float:
    """Wall time of ``lockbench report`` in a fresh interpreter (imports included)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bench.cli", "report", str(run_dir)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return time.perf_counter() - started


def history_records(run_dir: Path) -> int:
    with (run_dir / "history.jsonl").open(encoding="utf-8") as fh:
        return sum(1 for _ in fh)


def client_operations(run_dir: Path) -> int:
    """Client invocations (an operation is an invoke plus its completion: two records)."""
    with (run_dir / "history.jsonl").open(encoding="utf-8") as fh:
        return sum(1 for line in fh if '"type":"invoke"' in line and '"nemesis"' not in line)


def browser_ready_seconds(report: Path, screenshot: Path | None) -> float:
    ready, _ = browser_figures(report, screenshot, zooms=False)
    return ready


# A zoom into 10 s of a figure and back out, timed in the page (Plotly.relayout's promises).
ZOOM_JS = """
async (id) => {
  const el = document.getElementById(id);
  const range = el._fullLayout.xaxis.range;
  const middle = (range[0] + range[1]) / 2;
  const started = performance.now();
  await Plotly.relayout(el, {"xaxis.range": [middle - 5, middle + 5]});
  await Plotly.relayout(el, {"xaxis.autorange": true});
  return (performance.now() - started) / 1000;
}
"""
ZOOMED_FIGURES = ("fig-timeline", "fig-lock-0", "fig-latency")


def browser_figures(
    report: Path, screenshot: Path | None, *, zooms: bool
) -> tuple[float, dict[str, float]]:
    """Seconds until headless Chromium has drawn every plot, and (``zooms``) seconds for a
    zoom in and out of the timeline, the first lock chart and the latency chart; raises if the
    page reported a drawing error."""
    from playwright.sync_api import sync_playwright  # only this figure needs a browser

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            started = time.perf_counter()
            page.goto(report.as_uri(), timeout=300_000)
            page.wait_for_function("window.lockbenchReady === true", timeout=300_000)
            elapsed = time.perf_counter() - started
            errors = page.evaluate("window.lockbenchErrors")
            if errors:
                raise RuntimeError(f"the report failed to draw: {errors}")
            zoomed = (
                {name: float(page.evaluate(ZOOM_JS, name)) for name in ZOOMED_FIGURES}
                if zooms
                else {}
            )
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True, clip=_clip(page))
            return elapsed, zoomed
        finally:
            browser.close()


def _clip(page: Page) -> FloatRect:
    """From the banner down through the first lock chart (what a reader looks at first)."""
    bottom = page.evaluate(
        "document.getElementById('fig-lock-0').getBoundingClientRect().bottom + window.scrollY"
    )
    return {"x": 0, "y": 0, "width": 1400, "height": float(bottom) + 10}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="renders per case (median shown)")
    parser.add_argument("--browser", action="store_true", help="also time headless Chromium")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the 60 s report")
    parser.add_argument(
        "--records",
        type=int,
        default=0,
        help="also a run of about this many history records (e.g. 1000000), with --browser "
        "its load and zoom times in headless Chromium",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockbench-bench-reports-") as tmp:
        store = Path(tmp)
        sixty = write_synthetic_run(
            store, SyntheticRunSpec(kind="invalid", seconds=60.0, test_name="sixty-seconds")
        )
        median, worst, cpu, size = time_render(sixty, args.repeat)
        records = history_records(sixty)
        print(
            f"60 s run ({records} history records): render_report wall median {median:.2f} s, "
            f"max {worst:.2f} s, CPU median {cpu:.2f} s (target <= 5 s); file {size / 1e6:.2f} MB"
        )
        print(f"60 s run: `lockbench report` in a fresh process {time_cli(sixty):.2f} s")
        seconds = 60.0 * TARGET_OPS / client_operations(sixty) * 1.05
        big = write_synthetic_run(
            store,
            SyntheticRunSpec(
                kind="invalid",
                seconds=seconds,
                test_name="hundred-thousand",
                started=datetime(2026, 11, 26, 13),
            ),
        )
        median, worst, cpu, size = time_render(big, args.repeat)
        print(
            f"{client_operations(big)}-op history ({history_records(big)} records, "
            f"{seconds:.0f} s run): render_report wall "
            f"median {median:.2f} s, max {worst:.2f} s, CPU median {cpu:.2f} s (target <= 20 s); "
            f"file {size / 1e6:.2f} MB (target < 10 MB)"
        )
        if args.browser or args.screenshot:
            ready = browser_ready_seconds(sixty / "report.html", args.screenshot)
            print(f"60 s run: headless Chromium load until every plot is drawn {ready:.2f} s")
            if args.screenshot:
                print(f"screenshot: {args.screenshot}")
        if args.records:
            long_run(store, args.records, args.repeat, browser=args.browser)
    return 0


# History records per simulated second with 20 clients on 4 locks (measured: a 272 s run wrote
# 1,013,065 records).
LONG_RUN_RECORDS_PER_S = 3_724


def long_run(store: Path, records: int, repeat: int, *, browser: bool) -> None:
    """A run of about ``records`` history records (20 clients, 4 locks; target for 1M records:
    the report in <= 30 s, usable in headless Chromium)."""
    clients = 20
    seconds = records / LONG_RUN_RECORDS_PER_S
    run = write_synthetic_run(
        store,
        SyntheticRunSpec(
            kind="invalid",
            seconds=seconds,
            concurrency=clients,
            locks=4,
            test_name="long-run",
            started=datetime(2026, 11, 26, 14),
        ),
    )
    median, worst, cpu, size = time_render(run, repeat)
    print(
        f"long run ({history_records(run)} records, {seconds:.0f} s, {clients} clients): "
        f"render_report wall median {median:.2f} s, max {worst:.2f} s, CPU median {cpu:.2f} s "
        f"(target <= 30 s for 1M records); file {size / 1e6:.2f} MB"
    )
    if browser:
        readies, zooms = [], []
        for _ in range(repeat):
            ready, zoomed = browser_figures(run / "report.html", None, zooms=True)
            readies.append(ready)
            zooms.append(zoomed)
        spans = ", ".join(
            f"{name} {statistics.median(z[name] for z in zooms):.2f} s" for name in ZOOMED_FIGURES
        )
        print(
            f"long run: headless Chromium until every plot is drawn, median "
            f"{statistics.median(readies):.2f} s (runs {', '.join(f'{r:.2f}' for r in readies)}); "
            f"zoom into 10 s and back, median: {spans}"
        )


if __name__ == "__main__":
    sys.exit(main())
