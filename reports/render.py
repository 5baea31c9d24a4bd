"""The per-run HTML report: one self-contained file that explains what happened and why.

``render_report(run_dir)`` writes ``run_dir/report.html``; ``build_report_html`` returns the same
page as a string (``lockbench serve`` uses it for runs that have no report yet, without writing).
plotly.js is embedded once, inline, so the page works offline from a file.

Every section of the page is a report panel found through the ``lockbench.report_panels`` entry
points, the built-in ones (``SECTIONS`` below, declared in lockbench's pyproject.toml) exactly as
an installed package's: the page shows them in their ``order`` (an installed panel without one
after the run's own sections, before Configuration and Files).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from lockbench.history import Op
from lockbench.plugins import REPORT_PANELS, load_plugin, plugin_names
from lockbench.protocols import Anomaly, ReportPanel, RunView
from lockbench.run_dir import REPORT_FILE, TEST_FILE
from reports import analysis, figures
from reports.page import asset, document, esc, inline_script, json_script
from reports.run_data import RunData, fields_of, load_run

# Lock charts beyond this many locks (the busiest first) are left out, with a note saying so.
MAX_LOCK_CHARTS = 6
# Holds (and, separately, resource accesses) drawn across all lock charts together; past it each
# chart thins its own share, keeping refused accesses, unknown holds and anomaly ops. With the
# timeline and latency caps this keeps a report near 8 MB however long the run (plotly.js is 4.9).
LOCK_POINT_BUDGET = 12_000
# Where a panel that gives no ``order`` goes: after the built-in sections about the run (10-70),
# before Configuration and Files (90, 100).
DEFAULT_PANEL_ORDER = 80


def render_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` for a run directory (damaged ones included)."""
    page = build_report_html(run_dir)
    out = run_dir / REPORT_FILE
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def build_report_html(run_dir: Path) -> str:
    started = time.perf_counter()
    data = load_run(run_dir)
    body = _page_body(data)
    head = inline_script(get_plotlyjs())
    summary = fields_of(data)
    title = f"lockbench {summary['verdict'].upper()}: {data.name} {summary['time']}"
    elapsed = time.perf_counter() - started
    footer = f'<p class="note">Report generated in {elapsed:.2f} s by lockbench.</p></main>'
    return document(title, head, body + footer + inline_script(asset("report.js")))


def _figure_div(div_id: str, fig: Any) -> str:
    spec = pio.to_json(fig, validate=False)
    config = json.dumps(figures.PLOT_CONFIG)
    payload = '{"config":' + config + "," + spec.lstrip()[1:]
    return f'<div class="plot" id="{esc(div_id)}"></div>' + json_script(
        payload, data_figure_for=div_id
    )


def installed_panels() -> list[ReportPanel]:
    """Every ``lockbench.report_panels`` entry point, built-in and installed, in page order."""
    panels: list[ReportPanel] = [
        load_plugin(REPORT_PANELS, name) for name in plugin_names(REPORT_PANELS)
    ]
    return sorted(panels, key=lambda panel: getattr(panel, "order", DEFAULT_PANEL_ORDER))


def _whole_section(panel: ReportPanel) -> bool:
    return getattr(panel, "whole_section", False) is True


def _anchor(panel: ReportPanel) -> str:
    return panel.name if _whole_section(panel) else f"panel-{panel.name}"


def _page_body(data: RunData) -> str:
    rendered = [(panel, _panel_html(panel, data)) for panel in installed_panels()]
    shown = [(panel, html) for panel, html in rendered if html]
    parts = [_banner(data), _nav([panel for panel, _ in shown]), "<main>", _problems(data)]
    parts += [_Report.of(data).sampling(), *(html for _, html in shown)]
    return "".join(parts)


def _panel_html(panel: ReportPanel, data: RunData) -> str:
    """One panel's section; a failing panel says so in its place."""
    section = _anchor(panel)
    try:
        html = panel.render(data)
    except Exception as exc:
        failed = f'<p class="empty">This panel failed: {esc(type(exc).__name__)}: {esc(exc)}</p>'
        return f'<section id="{esc(section)}"><h2>{esc(panel.title)}</h2>{failed}</section>'
    if not html:
        return ""
    if _whole_section(panel):
        return html
    return f'<section id="{esc(section)}"><h2>{esc(panel.title)}</h2>{html}</section>'


def _banner(data: RunData) -> str:
    summary = fields_of(data)
    verdict = summary["verdict"]
    facts = [
        summary["name"],
        summary["time"],
        f"backend {summary['backend']}",
        f"workload {summary['workload']}",
        f"nemesis {summary['nemesis']}",
        f"seed {data.seed if data.seed is not None else 'unknown'}",
        f"{len(data.calls)} ops",
        f"{data.duration_s:.1f} s",
    ]
    headline = {
        "valid": "VALID: no checker found an anomaly",
        "invalid": "INVALID: anomalies found",
        "unknown": "UNKNOWN: a checker could not decide",
        "unchecked": "UNCHECKED: no checker results",
    }[verdict]
    return (
        f'<header class="banner verdict-{esc(verdict)}" id="verdict"><h1>{esc(headline)}</h1>'
        f"<p>{' · '.join(esc(f) for f in facts)}</p></header>"
    )


def _nav(shown: Sequence[ReportPanel]) -> str:
    links = "".join(f'<a href="#{esc(_anchor(panel))}">{esc(panel.title)}</a>' for panel in shown)
    return f'<nav class="sections">{links}</nav>'


def _problems(data: RunData) -> str:
    if not data.problems:
        return ""
    items = "".join(f"<li>{esc(p)}</li>" for p in data.problems)
    return (
        '<section id="problems"><h2>What is missing</h2><div class="problems">'
        f"<p>This run directory is incomplete; the report shows what is there.</p>"
        f"<ul>{items}</ul></div></section>"
    )


class _Report:
    """What the built-in sections of one page share (the calls as a frame, fault windows, the
    ops anomalies name, what the plots draw), computed once per page and kept on the run's
    ``memo``; each section is one method."""

    @staticmethod
    def of(data: RunData) -> _Report:
        report = data.memo.get(_MEMO_KEY)
        if not isinstance(report, _Report):
            report = data.memo[_MEMO_KEY] = _Report(data)
        return report

    def __init__(self, data: RunData) -> None:
        self.data = data
        self.end = data.duration_s
        self.calls = analysis.calls_frame(data.calls, self.end)
        self.times = analysis.op_times(data.ops)
        self.faults = analysis.fault_windows(data.ops, self.end)
        self.keep = analysis.anomaly_indices(data.results)
        # what the timeline and the latency scatter draw (bounded; see docs/reports.md)
        self.shown = analysis.thin_calls(self.calls, self.keep, analysis.MAX_PLOTTED_CALLS)
        self.counterexamples = analysis.counterexample_windows(data.results, self.times)
        self.anomaly_windows: list[analysis.TimeWindow] = []
        for result in data.results:
            for anomaly in result.anomalies:
                span = analysis.anomaly_span(anomaly, self.times)
                if span is not None:
                    self.anomaly_windows.append(analysis.TimeWindow(*span, anomaly.kind))

    def sampling(self) -> str:
        """For a long run: what the plots draw a sample of, and what is always exact."""
        if len(self.shown) == len(self.calls):
            return ""
        return (
            '<p class="note sampling" id="sampling"><b>Long run: the plots draw a sample.</b> '
            f"This history has {len(self.calls):,} calls; to stay usable in a browser the "
            f"timeline and the latency scatter draw {len(self.shown):,} of them, and each lock "
            f"chart at most {LOCK_POINT_BUDGET:,} holds and as many resource accesses shared "
            "among the charts (each panel says how many). Anomalies are exact: every op an "
            "anomaly or counterexample names is always drawn, and the verdicts, anomalies, "
            "counts, percentile lines, throughput, overlapping holds, fault windows, roles and "
            "clocks are computed from every record.</p>"
        )

    def checkers(self) -> str:
        results = self.data.results
        if not results:
            return (
                '<section id="checkers"><h2>Checkers</h2>'
                '<p class="empty">No checker results.</p></section>'
            )
        rows = []
        for r in results:
            window = f"ops {r.window[0]} to {r.window[1]}" if r.window else ""
            stats = stats_html(r.stats)
            rows.append(
                f'<tr class="check verdict-{esc(r.verdict)}"><td>{esc(r.checker)}</td>'
                f'<td class="verdict">{esc(r.verdict)}</td><td>{len(r.anomalies)}</td>'
                f"<td>{esc(window)}</td><td>{esc(r.reason or '')}</td>"
                f'<td class="stats">{stats}</td></tr>'
            )
        return (
            '<section id="checkers"><h2>Checkers</h2>'
            '<label class="note"><input type="checkbox" id="only-failing"> only checkers that '
            "did not pass</label><table><thead><tr><th>checker</th><th>verdict</th>"
            "<th>anomalies</th><th>counterexample</th><th>reason</th><th>stats</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>"
        )

    def anomalies(self) -> str:
        """One entry per group of anomalies of the same kind and cause: its count, its first
        example and the span it covers on the timeline; the other members fold away."""
        groups = analysis.group_anomalies(self.data.results, self.times)
        if not groups:
            verdict = self.data.verdict
            text = "No anomalies." if verdict else "No anomalies known: the run was not checked."
            return (
                f'<section id="anomalies"><h2>Anomalies</h2><p class="empty">{text}</p></section>'
            )
        items = [self._anomaly_group(group) for group in groups]
        total = sum(len(group.members) for group in groups)
        kinds = f"{len(groups)} group{'s' if len(groups) != 1 else ''}"
        return (
            f'<section id="anomalies"><h2>Anomalies ({total} in {kinds})</h2>'
            f'<ol class="anomaly-groups">{"".join(items)}</ol></section>'
        )

    def _anomaly_group(self, group: analysis.AnomalyGroup) -> str:
        count = len(group.members)
        if group.span is None:
            span = '<span class="meta">(no time recorded: not on the timeline)</span>'
        else:
            span = (
                f'<a class="jump group-span" href="#timeline" data-start="{group.span[0]:.6f}" '
                f'data-end="{group.span[1]:.6f}">from {group.span[0]:.3f} s to '
                f"{group.span[1]:.3f} s</a>"
            )
        head = (
            f'<p class="group-head"><span class="kind">{esc(group.kind)}</span> '
            f'<b class="count">&times; {count}</b> <span class="meta">checker {esc(group.checker)}'
            f"</span> {span}</p>"
        )
        first = f'<ol class="anomalies">{self._anomaly_item(*group.first)}</ol>'
        rest = ""
        if count > 1:
            others = "".join(self._anomaly_item(n, a) for n, a in group.members[1:])
            rest = (
                f"<details><summary>{count - 1} more like it</summary>"
                f'<ol class="anomalies">{others}</ol></details>'
            )
        return f'<li class="anomaly-group">{head}{first}{rest}</li>'

    def _anomaly_item(self, number: int, anomaly: Anomaly) -> str:
        span = analysis.anomaly_span(anomaly, self.times)
        if span is None:
            link = '<span class="meta">(no time recorded: not on the timeline)</span>'
        else:
            link = (
                f'<a class="jump" href="#timeline" data-start="{span[0]:.6f}" '
                f'data-end="{span[1]:.6f}">show on timeline ({span[0]:.3f} s to '
                f"{span[1]:.3f} s)</a>"
            )
        meta = []
        if anomaly.key:
            meta.append(f"lock {anomaly.key}")
        if anomaly.processes:
            meta.append("processes " + ", ".join(str(p) for p in anomaly.processes))
        if anomaly.op_indices:
            shown = ", ".join(str(i) for i in anomaly.op_indices[:12])
            more = "…" if len(anomaly.op_indices) > 12 else ""
            meta.append(f"ops {shown}{more}")
        return (
            f'<li class="anomaly" id="anomaly-{number}">{esc(anomaly.explanation)}<br>'
            f'<span class="meta">{esc(" · ".join(meta))}</span> {link}</li>'
        )

    def _no_ops(self, section: str, title: str) -> str:
        return (
            f'<section id="{section}"><h2>{esc(title)}</h2>'
            '<p class="empty">No operations to show (see what is missing above).</p></section>'
        )

    def timeline(self) -> str:
        if self.calls.empty:
            return self._no_ops("timeline", "Timeline")
        shown = self.shown
        note = (
            f"All {len(self.calls)} calls shown."
            if len(shown) == len(self.calls)
            else f"Showing {len(shown):,} of {len(self.calls):,} calls (a sample): past "
            f"{analysis.MAX_PLOTTED_CALLS:,} calls the timeline is thinned evenly. Anomalies "
            "are exact: every op an anomaly names is kept, then fail/info/pending calls, then "
            "ok calls."
        )
        fig = figures.timeline_figure(
            shown,
            self.faults,
            self.counterexamples,
            self.anomaly_windows,
            self._anomaly_points(),
        )
        return (
            '<section id="timeline"><h2>Timeline</h2>'
            f'<p class="note">{esc(note)} Shaded: fault windows. Red outline: counterexample; '
            "dotted: anomalies. Drag to zoom, double-click to reset. "
            '<button class="reset-zoom" data-target="fig-timeline">reset zoom</button></p>'
            f"{_figure_div('fig-timeline', fig)}</section>"
        )

    def _anomaly_points(self) -> pd.DataFrame:
        """(anomaly number, time, process, op index) of each client op an anomaly names."""
        by_index: dict[int, Op] = {op.index: op for op in self.data.ops if op.index in self.keep}
        rows: list[tuple[int, float, Any, int]] = []
        number = 0
        for result in self.data.results:
            for anomaly in result.anomalies:
                number += 1
                for i in sorted(set(anomaly.op_indices)):
                    op = by_index.get(i)
                    if op is not None and op.is_client:
                        rows.append((number, op.time / analysis.NS_PER_S, op.process, i))
        return pd.DataFrame(rows, columns=["anomaly", "time", "process", "index"])

    def locks(self) -> str:
        if self.calls.empty:
            return self._no_ops("locks", "Locks")
        ttl = self.data.test.get("ttl")
        holds = analysis.lock_holds(
            self.calls, float(ttl) if isinstance(ttl, int | float) else None
        )
        accesses = analysis.resource_accesses(self.calls)
        if holds.empty and accesses.empty:
            return (
                '<section id="locks"><h2>Locks</h2><p class="empty">No acquire or resource '
                "operations in this history.</p></section>"
            )
        counts = pd.concat([holds["key"], accesses["key"]]).value_counts()
        locks = sorted(counts.index[:MAX_LOCK_CHARTS])
        parts = ['<section id="locks"><h2>Locks</h2>']
        if len(counts) > MAX_LOCK_CHARTS:
            parts.append(
                f'<p class="note">Showing the {MAX_LOCK_CHARTS} busiest of {len(counts)} locks.</p>'
            )
        for n, lock in enumerate(locks):
            lock_holds = holds[holds["key"] == lock]
            lock_access = accesses[accesses["key"] == lock]
            total_holds, total_access = len(lock_holds), len(lock_access)
            share = LOCK_POINT_BUDGET // len(locks)
            must = lock_holds["index"].isin(self.keep).to_numpy()
            unknown = (~lock_holds["certain"]).to_numpy()
            lock_holds = analysis.thin_rows(lock_holds, must, share, preferred=unknown)
            must = lock_access["index"].isin(self.keep).to_numpy()
            refused = (~lock_access["accepted"]).to_numpy()
            lock_access = analysis.thin_rows(lock_access, must, share, preferred=refused)
            windows = self._anomaly_windows_for(lock)
            overlaps = analysis.overlapping_holds(holds[holds["key"] == lock])
            refused_count = int(refused.sum())
            thinned = len(lock_holds) < total_holds or len(lock_access) < total_access
            note = (
                f"; drawn: a sample of {len(lock_holds):,} holds and {len(lock_access):,} "
                f"accesses (thinned evenly past {share:,} each; anomaly ops always kept, "
                "refused accesses and unknown holds before the rest; the counts here are exact)"
                if thinned
                else ""
            )
            overlap_text = (
                f' <b class="overlap">{len(overlaps)} time(s) two clients both believed they '
                "held it (red bands).</b>"
                if len(overlaps)
                else " No two clients ever both believed they held it."
            )
            parts.append(
                f'<h3 id="lock-{n}">{esc(lock)}</h3><p class="note">{total_holds} holds, '
                f"{total_access} resource accesses, {refused_count} refused{esc(note)}."
                f"{overlap_text}</p>"
            )
            fig = figures.lock_figure(lock, lock_holds, lock_access, self.faults, windows, overlaps)
            parts.append(_figure_div(f"fig-lock-{n}", fig))
        parts.append("</section>")
        return "".join(parts)

    def _anomaly_windows_for(self, lock: str) -> list[analysis.TimeWindow]:
        out = []
        for result in self.data.results:
            for anomaly in result.anomalies:
                span = analysis.anomaly_span(anomaly, self.times)
                if span is not None and anomaly.key in (lock, None):
                    out.append(analysis.TimeWindow(*span, anomaly.kind))
        return out

    def latency(self) -> str:
        if self.calls.empty:
            return self._no_ops("latency", "Latency and throughput")
        bucket = analysis.bucket_seconds(max(self.end, 1e-3))
        percentiles = analysis.latency_percentiles(self.calls, bucket)
        rates = analysis.throughput(self.calls, bucket)
        shown = self.shown
        note = "Percentile lines and throughput use every call" + (
            f"; the scatter shows a sample, {len(shown):,} of {len(self.calls):,} calls "
            "(anomaly ops, exact, then non-ok calls, are kept first)."
            if len(shown) < len(self.calls)
            else "."
        )
        fig = figures.latency_figure(shown, percentiles, rates, bucket, self.faults)
        return (
            f'<section id="latency"><h2>Latency and throughput</h2><p class="note">{esc(note)}'
            f"</p>{_figure_div('fig-latency', fig)}</section>"
        )

    def roles(self) -> str:
        spans = analysis.leader_spans(self.data.ops, self.end)
        if not spans:
            return (
                '<section id="roles"><h2>Cluster roles</h2><p class="empty">No leader '
                "observations in the history (the backend reports no leader, or the observer "
                "did not run).</p></section>"
            )
        gaps = analysis.failover_gaps(spans, self.faults)
        nodes = self.data.test.get("nodes")
        node_names = [str(n) for n in nodes] if isinstance(nodes, list) else []
        fig = figures.roles_figure(spans, gaps, self.faults, node_names)
        summary = "; ".join(text for _, _, text in gaps) or "no failover"
        return (
            f'<section id="roles"><h2>Cluster roles</h2><p class="note">{esc(summary)}</p>'
            f"{_figure_div('fig-roles', fig)}</section>"
        )

    def clock(self) -> str:
        offsets = analysis.clock_offsets(self.data.ops)
        if offsets.empty:
            return (
                '<section id="clock"><h2>Clocks</h2><p class="empty">No clock offsets recorded '
                "(the clock nemesis did not run).</p></section>"
            )
        fig = figures.clock_figure(offsets, self.faults)
        return f'<section id="clock"><h2>Clocks</h2>{_figure_div("fig-clock", fig)}</section>'

    def config(self) -> str:
        path = self.data.run_dir / TEST_FILE
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        seed = self.data.seed
        seed_line = (
            f"Seed: <b>{esc(seed)}</b> (rerun with the same test file and seed to replay the "
            "fault schedule and the workload)."
            if seed is not None
            else "Seed: unknown."
        )
        body = f"<pre>{esc(text)}</pre>" if text else '<p class="empty">No test.yaml.</p>'
        return f'<section id="config"><h2>Configuration</h2><p>{seed_line}</p>{body}</section>'

    def files(self) -> str:
        links = [_file_link(name) for name in self.data.other_files]
        node_links = [_file_link(name) for name in self.data.node_logs]
        nodes = f"<h3>Node logs</h3><ul>{''.join(node_links)}</ul>" if node_links else ""
        missing = "" if node_links else '<p class="empty">No node logs.</p>'
        return (
            f'<section id="files"><h2>Files</h2><ul>{"".join(links)}</ul>{nodes}{missing}</section>'
        )


_MEMO_KEY = "reports.render"


@dataclass(frozen=True, slots=True)
class Section:
    """A section every report has, a ``lockbench.report_panels`` entry point like an installed
    panel; it renders its whole ``<section id=NAME>`` (heading included)."""

    name: str
    title: str  # its link in the page's navigation
    order: int
    build: Callable[[_Report], str]
    whole_section: bool = True

    def render(self, run: RunView) -> str | None:
        """The section for a run the report read (a RunData); nothing for any other view."""
        return self.build(_Report.of(run)) if isinstance(run, RunData) else None


CHECKERS = Section("checkers", "Checkers", 10, _Report.checkers)
ANOMALIES = Section("anomalies", "Anomalies", 20, _Report.anomalies)
TIMELINE = Section("timeline", "Timeline", 30, _Report.timeline)
LOCKS = Section("locks", "Locks", 40, _Report.locks)
LATENCY = Section("latency", "Latency", 50, _Report.latency)
ROLES = Section("roles", "Cluster roles", 60, _Report.roles)
CLOCK = Section("clock", "Clocks", 70, _Report.clock)
CONFIG = Section("config", "Configuration", 90, _Report.config)
FILES = Section("files", "Files", 100, _Report.files)
SECTIONS: tuple[Section, ...] = (
    CHECKERS,
    ANOMALIES,
    TIMELINE,
    LOCKS,
    LATENCY,
    ROLES,
    CLOCK,
    CONFIG,
    FILES,
)


def _file_link(relative: str) -> str:
    return f'<li><a href="{esc(quote(relative))}">{esc(relative)}</a></li>'


# Past this many entries a list in the checker stats is summarised by its length.
MAX_STATS_LIST = 12


def stats_html(stats: Any, depth: int = 0) -> str:
    """Checker stats as nested name: value lines a person can read (not raw JSON)."""
    if isinstance(stats, Mapping):
        if not stats:
            return ""
        rows = "".join(
            f"<dt>{esc(str(k).replace('_', ' '))}</dt><dd>{stats_html(v, depth + 1)}</dd>"
            for k, v in stats.items()
        )
        return f'<dl class="stats">{rows}</dl>'
    if isinstance(stats, list | tuple):
        if not stats:
            return "none"
        if len(stats) > MAX_STATS_LIST or depth > 3:
            return f"{len(stats)} entries"
        return "<ol>" + "".join(f"<li>{stats_html(v, depth + 1)}</li>" for v in stats) + "</ol>"
    if isinstance(stats, bool) or stats is None:
        return esc(str(stats).lower() if stats is not None else "none")
    if isinstance(stats, int):
        return f"{stats:,}"
    if isinstance(stats, float):
        return f"{stats:,.4g}"
    return esc(str(stats))
