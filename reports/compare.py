"""compare.html: the verdict matrix of ``lockbench compare`` and the figures of the same runs.

Built from the comparison's ``compare.json`` (``bench.runner.matrix``) and each cell's run
directory (its history for the figures, its report for the link), so it can be rebuilt at any
time. A cell that did not run shows why, never a verdict; a cell's figures sit beside its
verdict, so a fast run that lost mutual exclusion is never read on its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lockbench.history import read_history_lenient
from reports.page import document, esc, verdict_badge
from reports.performance import RunPerformance, run_performance

COMPARE_PAGE = "compare.html"
SUMMARY_FILE = "compare.json"

_STYLE = """<style>
table.matrix td, table.perf td { text-align: center; vertical-align: top; }
table.matrix td.refused { color: #666; font-size: 0.85em; max-width: 16em; text-align: left; }
table.perf td.name { text-align: left; }
td .anomalies, th .mode { display: block; font-size: 0.85em; }
th .mode { font-weight: normal; color: #555; max-width: 14em; }
.legend { font-size: 0.9em; max-width: 60em; }
</style>"""


def _fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _relative(target: Path, start: Path) -> str:
    return os.path.relpath(target, start)


def _mode(entry: Mapping[str, Any]) -> str:
    """A cell's or row's resource mode (fenced in summaries written before there was a choice)."""
    return str(entry.get("resource_mode") or "fenced")


def _cell_key(cell: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return str(cell["backend"]), _mode(cell), str(cell["workload"]), str(cell["fault"])


def matrix_rows(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The rows (backend, resource mode, why that mode); one fenced row per backend if the
    summary predates rows."""
    rows = summary.get("rows")
    if rows:
        return list(rows)
    backends = summary.get("backends", [])
    return [{"backend": b, "resource_mode": "fenced", "note": ""} for b in backends]


def _row_label(row: Mapping[str, Any]) -> str:
    note = f": {row['note']}" if row.get("note") else ""
    return (
        f'{esc(str(row["backend"]))}<span class="mode">{esc(_mode(row))} resource{esc(note)}</span>'
    )


def load_performance(run_dir: Path) -> RunPerformance | None:
    """A run's figures from its history; None if it has no readable history."""
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return None
    history, _problems = read_history_lenient(path)
    return run_performance(history)


def _matrix_cell(cell: Mapping[str, Any], directory: Path) -> str:
    verdict = cell.get("verdict")
    run_dir = cell.get("run_dir")
    if verdict is None:
        reason = cell.get("reason") or "did not run"
        link = ""
        if run_dir:
            link = f' <a href="{esc(_relative(Path(run_dir), directory))}/report.html">run</a>'
        return f'<td class="refused">not run: {esc(reason)}{link}</td>'
    href = f"{_relative(Path(str(run_dir)), directory)}/report.html"
    count = int(cell.get("anomalies") or 0)
    noun = "anomaly" if count == 1 else "anomalies"
    note = f'<span class="anomalies">{count} {noun}</span>'
    reason = cell.get("reason")
    if reason:
        note += f'<span class="anomalies">{esc(reason)}</span>'
    return f'<td><a href="{esc(href)}">{verdict_badge(str(verdict))}</a>{note}</td>'


def matrix_table(summary: Mapping[str, Any], directory: Path) -> str:
    """Rows: backends (one per resource mode); columns: workload x fault."""
    cells = {_cell_key(c): c for c in summary.get("cells", [])}
    workloads = list(summary.get("workloads", []))
    faults = list(summary.get("faults", []))
    head_top = "".join(f'<th colspan="{len(faults)}">{esc(w)}</th>' for w in workloads)
    head_faults = "".join(f"<th>{esc(f)}</th>" for _ in workloads for f in faults)
    rows = []
    for row in matrix_rows(summary):
        tds = []
        for workload in workloads:
            for fault in faults:
                cell = cells.get((str(row["backend"]), _mode(row), workload, fault))
                tds.append(
                    _matrix_cell(cell, directory) if cell else '<td class="refused">pending</td>'
                )
        rows.append(f"<tr><th>{_row_label(row)}</th>{''.join(tds)}</tr>")
    return (
        '<table class="matrix"><thead>'
        f'<tr><th rowspan="2">backend</th>{head_top}</tr><tr>{head_faults}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def performance_rows(
    summary: Mapping[str, Any],
) -> list[tuple[Mapping[str, Any], RunPerformance | None]]:
    """Every cell that ran, with its figures, ordered so backends sit side by side."""
    ran = [c for c in summary.get("cells", []) if c.get("run_dir")]
    backends = list(summary.get("backends", []))
    ran.sort(
        key=lambda c: (
            str(c["workload"]),
            str(c["fault"]),
            backends.index(c["backend"]) if c["backend"] in backends else 0,
            _mode(c),
        )
    )
    return [(c, load_performance(Path(str(c["run_dir"])))) for c in ran]


def performance_table(rows: Sequence[tuple[Mapping[str, Any], RunPerformance | None]]) -> str:
    body = []
    for cell, perf in rows:
        verdict = cell.get("verdict")
        badge = verdict_badge(str(verdict)) if verdict else "not run"
        if perf is None:
            figures = '<td colspan="9">no history</td>'
        else:
            takeovers = len(perf.takeovers)
            figures = (
                f"<td>{perf.ok_ops_per_s:.1f}</td>"
                f"<td>{_fmt(perf.acquire_p50_ms)}</td><td>{_fmt(perf.acquire_p99_ms)}</td>"
                f"<td>{perf.handoffs_per_s:.1f}</td>"
                f"<td>{_fmt(perf.longest_gap_in_fault_s, 2)}</td>"
                f"<td>{takeovers}</td>"
                f"<td>{_fmt(perf.unaware_median_s, 2)}</td>"
                f"<td>{_fmt(perf.unaware_max_s, 2)}</td>"
                f"<td>{perf.never_aware}</td>"
            )
        body.append(
            f'<tr><td class="name">{esc(cell["workload"])} · {esc(cell["fault"])}</td>'
            f"<td>{esc(cell['backend'])} ({esc(_mode(cell))})</td><td>{badge}</td>"
            f"{figures}</tr>"
        )
    return (
        '<table class="perf"><thead><tr><th>workload · fault</th><th>backend</th>'
        "<th>verdict</th><th>ok ops/s</th><th>acquire p50 ms</th><th>acquire p99 ms</th>"
        "<th>hand-offs/s</th><th>longest gap in a fault (s)</th><th>takeovers</th>"
        "<th>unaware median (s)</th><th>unaware max (s)</th><th>never aware</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


_LEGEND = (
    "<p class=\"legend\">Figures are the client's view, from each run's history. "
    "<b>hand-offs/s</b>: grants of a lock to a different process than its previous holder. "
    "<b>longest gap in a fault</b>: the longest time without any ok operation that began while "
    "a fault was active (how long the service was unavailable to these clients). "
    "<b>takeovers</b>: grants of a lock while another process had not begun releasing it; "
    "<b>unaware</b>: for each takeover, how long the old holder went on believing it held the "
    "lock, from the other's grant to its own <code>lease-lost</code> (from its <code>since</code>: "
    "when its client knew the lease may have lapsed) or first failed/unknown op "
    "on the lock (0 when it knew first); <b>never aware</b>: old holders that released without "
    "ever noticing. Refused cells name the reason the fault could not reach the backend. "
    "Each row names its protected resource: <b>fenced</b> refuses a write whose fencing token "
    "is lower than one it has seen, <b>unfenced</b> takes every write (a backend without "
    "fencing tokens runs unfenced unless asked otherwise).</p>"
)


def render_compare_html(directory: Path, summary: Mapping[str, Any]) -> str:
    rows = performance_rows(summary)
    verdicts = [c.get("verdict") for c in summary.get("cells", [])]
    overall = (
        "invalid"
        if "invalid" in verdicts
        else ("valid" if verdicts and all(v == "valid" for v in verdicts) else "unknown")
    )
    title = "lockbench compare"
    meta = (
        f"backends {', '.join(summary.get('backends', []))} · seed {summary.get('seed')} · "
        f"time limit {summary.get('time_limit')} s · concurrency {summary.get('concurrency')}"
    )
    body = (
        f'<header class="banner verdict-{esc(overall)}"><h1>{esc(title)}</h1>'
        f"<p>{esc(meta)}</p></header><main>"
        "<h2>Verdicts (backend &times; workload &times; fault)</h2>"
        f"{matrix_table(summary, directory)}"
        "<h2>Performance and lock-loss awareness (same runs)</h2>"
        f"{performance_table(rows)}{_LEGEND}</main>"
    )
    return document(title, _STYLE, body)


def render_compare(directory: Path, store: Path | None = None) -> Path:
    """Write ``directory/compare.html`` from its compare.json (and a ``store/compare.html`` copy
    of the newest page, whose links point into the store)."""
    summary = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
    out = directory / COMPARE_PAGE
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(render_compare_html(directory, summary), encoding="utf-8")
    os.replace(tmp, out)
    if store is not None:
        latest = store / COMPARE_PAGE
        tmp = latest.with_suffix(".html.tmp")
        tmp.write_text(render_compare_html(store, summary), encoding="utf-8")
        os.replace(tmp, latest)
    return out
