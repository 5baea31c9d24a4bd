"""The store index: one page listing every run, newest first, filterable, linking to reports.

``build_index(store)`` writes ``store/index.html``; ``lockbench serve`` renders the same page per
request with ``render_index_html`` so it never writes into the store. Summaries read the run
directory through its contract (``lockbench.run_dir``: test.yaml, results.json and the history's
extent, no pairing, no figures), and are cached by file size and modification time so refreshing
the page of a large store stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from lockbench.run_dir import (
    HISTORY_FILE,
    REPORT_FILE,
    RESULTS_FILE,
    TEST_FILE,
    RunDirProblem,
    history_extent,
    read_results,
    read_test_data,
    run_time,
)
from reports.page import document, esc, inline_script, verdict_badge
from reports.run_data import describe_component

INDEX_FILE = "index.html"
RUN_MARKERS: tuple[str, ...] = (HISTORY_FILE, RESULTS_FILE, TEST_FILE)

_FILTER_SCRIPT = """
(function () {
  "use strict";
  function apply() {
    var text = document.getElementById("filter-text").value.toLowerCase();
    var verdict = document.getElementById("filter-verdict").value;
    var shown = 0;
    document.querySelectorAll("tr.run").forEach(function (row) {
      var match = row.textContent.toLowerCase().indexOf(text) !== -1 &&
        (verdict === "" || row.getAttribute("data-verdict") === verdict);
      row.style.display = match ? "" : "none";
      if (match) { shown += 1; }
    });
    document.getElementById("shown-count").textContent = String(shown);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("filter-text").addEventListener("input", apply);
    document.getElementById("filter-verdict").addEventListener("change", apply);
    apply();
  });
})();
"""


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One row of the index."""

    path: str
    name: str
    time: datetime | None
    backend: str
    workload: str
    nemesis: str
    verdict: str
    status: str  # "" for a run that ran to its end, else why it is not a whole run
    ops: int
    duration_s: float
    has_report: bool


def find_runs(store: Path) -> list[Path]:
    """Run directories of the store (``<test>/<timestamp>/``), skipping the ``latest`` link."""
    runs: list[Path] = []
    if not store.is_dir():
        return runs
    for test_dir in sorted(store.iterdir()):
        if test_dir.is_symlink() or not test_dir.is_dir():
            continue
        if _is_run(test_dir):
            runs.append(test_dir)
            continue
        runs.extend(d for d in sorted(test_dir.iterdir()) if d.is_dir() and _is_run(d))
    return runs


def _is_run(directory: Path) -> bool:
    return any((directory / marker).is_file() for marker in RUN_MARKERS)


def summarize_run(store: Path, run_dir: Path) -> RunSummary:
    stamps = tuple(_stamp(run_dir / name) for name in (*RUN_MARKERS, REPORT_FILE))
    return _summarize_cached(str(store.resolve()), str(run_dir.resolve()), stamps)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4096)
def _summarize_cached(store: str, run_dir: str, _stamps: tuple[Any, ...]) -> RunSummary:
    directory = Path(run_dir)
    test = _read_test(directory)
    verdict, status = _read_verdict(directory)
    extent = history_extent(directory)
    name = test.get("name")
    return RunSummary(
        path=str(directory.relative_to(store)),
        name=str(name) if name else directory.parent.name,
        time=run_time(directory),
        backend=describe_component(test.get("backend")),
        workload=describe_component(test.get("workload")),
        nemesis=describe_component(test.get("nemesis")),
        verdict=verdict,
        status=status,
        ops=extent.client_invocations,
        duration_s=extent.duration_s,
        has_report=(directory / REPORT_FILE).is_file(),
    )


def _read_test(run_dir: Path) -> dict[str, Any]:
    try:
        return read_test_data(run_dir) or {}
    except RunDirProblem:
        return {}


def _read_verdict(run_dir: Path) -> tuple[str, str]:
    """The verdict, and the run's status: unfinished, set-up failed, never started, or ""."""
    try:
        stored = read_results(run_dir)
    except RunDirProblem:
        return "unchecked", ""
    if stored is None:
        return "unchecked", ""
    verdict = "unchecked" if stored.verdict is None else stored.verdict
    notes = stored.notes or {}
    status = ""
    if notes.get("setup_failed"):
        status = "set-up failed"
    elif notes.get("started") is False:
        status = "never started"
    elif notes.get("finished") is False:
        status = "unfinished"
    return verdict, status


def render_index_html(store: Path, *, live: bool = False) -> str:
    """The index page. ``live`` (lockbench serve) links reports even before they are written."""
    summaries = [summarize_run(store, run) for run in find_runs(store)]
    summaries.sort(key=lambda s: (s.time or datetime.min, s.path), reverse=True)
    rows = [_row(s, live) for s in summaries]
    verdicts = "".join(
        f'<option value="{v}">{v}</option>' for v in ("valid", "invalid", "unknown", "unchecked")
    )
    table = (
        "<table><thead><tr><th>name</th><th>time</th><th>backend</th><th>workload</th>"
        "<th>nemesis</th><th>verdict</th><th>ops</th><th>duration</th><th>report</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else f'<p class="empty">No runs in {esc(store)} yet: run <code>lockbench run</code>.</p>'
    )
    body = (
        '<header class="banner verdict-unchecked"><h1>lockbench runs</h1>'
        f"<p>{esc(store.resolve())} · {len(summaries)} runs, newest first</p></header><main>"
        '<div class="filters"><input id="filter-text" type="search" placeholder="filter: name, '
        'backend, workload, nemesis…" size="40" aria-label="filter runs">'
        '<select id="filter-verdict" aria-label="verdict"><option value="">any verdict</option>'
        f'{verdicts}</select><span class="note"><span id="shown-count">{len(summaries)}</span> '
        f"shown</span></div>{table}</main>"
    )
    return document("lockbench runs", "", body + inline_script(_FILTER_SCRIPT))


def _row(summary: RunSummary, live: bool) -> str:
    when = summary.time.strftime("%Y-%m-%d %H:%M:%S") if summary.time else ""
    href = f"{summary.path}/{REPORT_FILE}"
    status = f' <span class="meta status">{esc(summary.status)}</span>' if summary.status else ""
    if summary.has_report or live:
        link = f'<a href="{esc(href)}">report</a>'
    else:
        link = f'<span class="meta">none yet: lockbench report {esc(summary.path)}</span>'
    return (
        f'<tr class="run" data-verdict="{esc(summary.verdict)}">'
        f'<td><a href="{esc(href)}">{esc(summary.name)}</a></td><td>{esc(when)}</td>'
        f"<td>{esc(summary.backend)}</td><td>{esc(summary.workload)}</td>"
        f"<td>{esc(summary.nemesis)}</td><td>{verdict_badge(summary.verdict)}{status}</td>"
        f"<td>{summary.ops}</td><td>{summary.duration_s:.1f} s</td><td>{link}</td></tr>"
    )


def build_index(store: Path) -> Path:
    """Write ``store/index.html`` listing every run of the store."""
    out = store / INDEX_FILE
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(render_index_html(store), encoding="utf-8")
    tmp.replace(out)
    return out
