"""The nightly summary page: this night's matrix, and trends over every night in the store.

Reads only the nights' ``nightly.json`` documents (plain data, docs/running.md), so it works on
a store copied off a CI runner. Trends are per test (backend / workload / nemesis): for each
night the verdicts of its seeds, the median ok ops/s and the median failover time.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reports.page import document, esc, verdict_badge

VERDICT_ORDER = ("invalid", "error", "unknown", "skipped", "valid")


def run_state(run: Mapping[str, Any]) -> str:
    """valid / invalid / unknown, or skipped / error for runs without a verdict."""
    if run.get("skipped"):
        return "skipped"
    verdict = run.get("verdict")
    return str(verdict) if verdict in ("valid", "invalid", "unknown") else "error"


def test_key(run: Mapping[str, Any]) -> str:
    labels = run.get("labels") or {}
    parts = (labels.get("backend"), labels.get("workload"), labels.get("nemesis"))
    if all(parts):
        return " / ".join(str(p) for p in parts)
    return f"{run.get('backend')} / {run.get('workload')} / {run.get('fault')}"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _number(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:,.1f}{unit}"


def _link(run: Mapping[str, Any], page_dir: Path | None) -> str:
    badge = verdict_badge(run_state(run))
    run_dir = run.get("run_dir")
    if not run_dir or page_dir is None:
        return badge
    target = Path(run_dir) / "report.html"
    try:
        href = os.path.relpath(target.resolve(), page_dir.resolve())
    except ValueError:
        href = str(target)
    title = esc(run.get("anomaly_summary") or run.get("reason") or f"seed {run.get('seed')}")
    return f'<a href="{esc(href)}" title="{title}">{badge}</a>'


def _counts(runs: Sequence[Mapping[str, Any]]) -> str:
    states = [run_state(r) for r in runs]
    parts = [f"{states.count(s)} {s}" for s in VERDICT_ORDER if states.count(s)]
    return ", ".join(parts) or "no runs"


def matrix_table(night: Mapping[str, Any], page_dir: Path | None) -> str:
    """Rows backend / workload, columns nemesis, a verdict badge per seed linked to its report."""
    runs: list[Mapping[str, Any]] = list(night.get("runs") or ())
    nemeses: list[str] = []
    rows: dict[tuple[str, str], dict[str, list[Mapping[str, Any]]]] = {}
    for run in runs:
        labels = run.get("labels") or {}
        nemesis = str(labels.get("nemesis", run.get("fault")))
        if nemesis not in nemeses:
            nemeses.append(nemesis)
        row = (str(labels.get("backend", run.get("backend"))), str(run.get("workload")))
        rows.setdefault(row, {}).setdefault(nemesis, []).append(run)
    head = "".join(f"<th>{esc(n)}</th>" for n in nemeses)
    body = []
    for (backend, workload), cells in rows.items():
        tds = "".join(
            "<td>" + " ".join(_link(r, page_dir) for r in cells.get(n, ())) + "</td>"
            for n in nemeses
        )
        body.append(f"<tr><td>{esc(backend)}</td><td>{esc(workload)}</td>{tds}</tr>")
    return (
        f"<table><thead><tr><th>backend</th><th>workload</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def trend_rows(nights: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per test: one entry per night (None when the test did not run that night)."""
    keys: list[str] = []
    for night in nights:
        for run in night.get("runs") or ():
            if (key := test_key(run)) not in keys:
                keys.append(key)
    table: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    for night in nights:
        by_key: dict[str, list[Mapping[str, Any]]] = {}
        for run in night.get("runs") or ():
            by_key.setdefault(test_key(run), []).append(run)
        for key in keys:
            runs = by_key.get(key, [])
            table[key].append(
                {
                    "runs": runs,
                    "ok_per_s": _median(
                        [r["ok_per_s"] for r in runs if isinstance(r.get("ok_per_s"), int | float)]
                    ),
                    "failover_s": _median(
                        [
                            r["failover_s"]
                            for r in runs
                            if isinstance(r.get("failover_s"), int | float)
                        ]
                    ),
                }
            )
    return table


def trends_table(nights: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{esc(n.get('started', '?'))}</th>" for n in nights)
    body = []
    for key, entries in trend_rows(nights).items():
        tds = []
        for entry in entries:
            runs = entry["runs"]
            if not runs:
                tds.append('<td class="meta">not run</td>')
                continue
            badges = " ".join(verdict_badge(run_state(r)) for r in runs)
            tds.append(
                f'<td>{badges}<br><span class="meta">{_number(entry["ok_per_s"], " ok/s")} · '
                f"failover {_number(entry['failover_s'], ' s')}</span></td>"
            )
        body.append(f"<tr><td>{esc(key)}</td>{''.join(tds)}</tr>")
    return (
        f'<table class="trends"><thead><tr><th>test</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def nightly_page_html(
    night: Mapping[str, Any], nights: Sequence[Mapping[str, Any]], page_dir: Path | None = None
) -> str:
    """The page for ``night``, with trends over ``nights`` (oldest first, ``night`` included)."""
    runs: list[Mapping[str, Any]] = list(night.get("runs") or ())
    states = [run_state(r) for r in runs]
    worst = next((s for s in VERDICT_ORDER if s in states and s != "skipped"), "unchecked")
    banner_class = {"error": "invalid"}.get(worst, worst)
    skipped = [r for r in runs if r.get("skipped")]
    skipped_html = (
        "<ul>"
        + "".join(
            f"<li>{esc(test_key(r))} seed {esc(r.get('seed'))}: {esc(r.get('skipped'))}</li>"
            for r in skipped
        )
        + "</ul>"
        if skipped
        else '<p class="empty">None: every run fitted in the budget.</p>'
    )
    problems = [r for r in runs if run_state(r) in ("invalid", "error", "unknown")]
    problem_items = "".join(
        f"<li>{verdict_badge(run_state(r))} {esc(test_key(r))} seed {esc(r.get('seed'))}: "
        f"<pre>{esc(r.get('anomaly_summary') or r.get('error') or r.get('reason') or '')}"
        f"</pre>{_link(r, page_dir)}</li>"
        for r in problems
    )
    elapsed = night.get("elapsed_s")
    budget = night.get("budget_s")
    body = (
        f'<header class="banner verdict-{esc(banner_class)}"><h1>lockbench nightly '
        f"{esc(night.get('name', ''))} {esc(night.get('started', ''))}</h1>"
        f"<p>{esc(_counts(runs))} · {_number(elapsed, ' s')} of a "
        f"{_number(budget, ' s')} budget</p></header><main>"
        f"<section><h2>This night's matrix</h2>{matrix_table(night, page_dir)}</section>"
        f"<section><h2>Not as hoped</h2>"
        + (f"<ol>{problem_items}</ol>" if problems else '<p class="empty">Every run valid.</p>')
        + f"</section><section><h2>Skipped</h2>{skipped_html}</section>"
        f"<section><h2>Trends over {len(nights)} night{'s' if len(nights) != 1 else ''}</h2>"
        '<p class="note">Per test and night: the verdict of each seed, the median ok ops/s and '
        "the median failover time (time to the first successful op after a kill or partition)."
        f"</p>{trends_table(nights)}</section></main>"
    )
    return document(f"lockbench nightly {night.get('started', '')}", "", body)


def write_nightly_page(
    path: Path, night: Mapping[str, Any], nights: Sequence[Mapping[str, Any]]
) -> Path:
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(nightly_page_html(night, nights, path.parent), encoding="utf-8")
    tmp.replace(path)
    return path
