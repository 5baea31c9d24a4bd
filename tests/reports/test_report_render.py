"""The report page states the verdict, every checker and anomaly, and works offline."""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.checking import run_checkers
from bench.cli import main
from lockbench.history import read_history
from lockbench.run_dir import write_results
from reports.render import build_report_html, render_report
from reports.run_data import load_run
from tests.reports.report_support import SampleStore, write_history


def _figures(page: str) -> dict[str, dict[str, object]]:
    found = re.findall(
        r'<script type="application/json" data-figure-for="([^"]+)">(.*?)</script>', page, re.S
    )
    return {name: json.loads(body.replace("<\\/", "</")) for name, body in found}


def test_invalid_report_explains_each_anomaly_with_a_timeline_link(
    sample_store: SampleStore, report_pages: dict[str, str]
) -> None:
    page = report_pages["invalid"]
    data = load_run(sample_store.invalid)
    assert "INVALID" in page
    for result in data.results:
        assert f"<td>{result.checker}</td>" in page
        for anomaly in result.anomalies:
            assert html.escape(anomaly.explanation) in page
            assert anomaly.time_start is not None
            assert f'data-start="{anomaly.time_start / 1e9:.6f}"' in page
    assert page.count('class="jump" href="#timeline"') == sum(
        len(r.anomalies) for r in data.results
    )


def test_plotly_is_embedded_once_and_nothing_is_fetched(report_pages: dict[str, str]) -> None:
    page = report_pages["valid"]
    assert page.count("plotly.js v") <= 2, "the library banner appears once (plus its licence)"
    assert len(re.findall(r"<script>/\*\*\s*\n?\s*\* plotly\.js", page)) <= 1
    assert not re.search(r'<script[^>]+src="http', page), "no script loaded from the network"
    assert not re.search(r'<link[^>]+href="http', page)


def test_report_has_every_figure_with_fault_shading(report_pages: dict[str, str]) -> None:
    page = report_pages["valid"]
    figures = _figures(page)
    assert {"fig-timeline", "fig-latency", "fig-roles", "fig-clock"} <= set(figures)
    assert any(name.startswith("fig-lock-") for name in figures)
    timeline = figures["fig-timeline"]
    layout = timeline["layout"]
    assert isinstance(layout, dict)
    labels = [a["text"] for a in layout["annotations"]]
    assert any(label.startswith("partition n") and " | " in label for label in labels)
    assert any(label.startswith("kill n") for label in labels)
    roles_layout = figures["fig-roles"]["layout"]
    assert isinstance(roles_layout, dict)
    assert any("failover" in a["text"] for a in roles_layout["annotations"])


def test_counterexample_window_is_highlighted(report_pages: dict[str, str]) -> None:
    page = report_pages["invalid"]
    layout = _figures(page)["fig-timeline"]["layout"]
    assert isinstance(layout, dict)
    assert any("counterexample" in a["text"] for a in layout["annotations"])


def test_damaged_run_report_says_what_is_missing(report_pages: dict[str, str]) -> None:
    page = report_pages["damaged"]
    assert "What is missing" in page
    assert "truncated" in page
    assert "results.json is missing" in page
    assert "UNCHECKED" in page
    assert "fig-timeline" in _figures(page), "what could be read is still drawn"


def test_run_without_history_gets_a_report_without_figures(report_pages: dict[str, str]) -> None:
    page = report_pages["no_history"]
    assert "history.jsonl is missing" in page
    assert "No operations to show" in page
    assert _figures(page) == {}


def test_report_links_node_logs_and_raw_history(report_pages: dict[str, str]) -> None:
    page = report_pages["valid"]
    assert '<a href="history.jsonl">' in page
    assert '<a href="nodes/n1/lockd.log">' in page
    assert "Seed: <b>7</b>" in page


@pytest.mark.process
def test_lockbench_report_command_writes_the_report(sample_store: SampleStore) -> None:
    target = sample_store.invalid / "report.html"
    target.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "report", str(sample_store.invalid)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert target.is_file()
    assert str(target) in proc.stdout


def test_lockbench_report_on_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2


def test_near_identical_anomalies_are_one_group_with_count_first_example_and_span(
    tmp_path: Path,
) -> None:
    # A restarted leader reused 21 tokens: 21 duplicate-token lines that differ only in lock,
    # processes and token once filled the page; they are one group now.
    records: list[dict[str, object]] = []
    for i in range(21):
        token = 100 + i
        for process in (2 * i, 2 * i + 1):
            records.append({"process": process, "type": "invoke", "f": "acquire", "key": "L"})
            records.append(
                {"process": process, "type": "ok", "f": "acquire", "key": "L", "value": token}
            )
            records.append({"process": process, "type": "invoke", "f": "release", "key": "L"})
            records.append({"process": process, "type": "ok", "f": "release", "key": "L"})
    write_history(tmp_path, records, step_ns=10_000_000)
    ops = read_history(tmp_path / "history.jsonl")
    verdict, results = run_checkers(ops, ["fencing"], {})
    assert verdict == "invalid"
    assert len(results["fencing"].anomalies) == 20
    write_results(tmp_path, verdict, results)
    page = render_report(tmp_path).read_text(encoding="utf-8")
    assert "Anomalies (20 in 1 group)" in page
    assert '<b class="count">&times; 20</b>' in page
    first = results["fencing"].anomalies[0]
    assert html.escape(first.explanation) in page
    assert "19 more like it" in page
    spans = [(a.time_start or 0) / 1e9 for a in results["fencing"].anomalies]
    assert f'class="jump group-span" href="#timeline" data-start="{min(spans):.6f}"' in page


def test_checker_stats_are_readable_names_and_values_not_json(
    report_pages: dict[str, str],
) -> None:
    page = report_pages["valid"]
    stats = page[page.index('<section id="checkers">') : page.index('<section id="anomalies">')]
    assert '<dl class="stats">' in stats
    assert "<dt>keys</dt><dd>2</dd>" in stats  # the linearizable stats, by name
    assert '{"' not in stats
    assert "&quot;" not in stats


def test_a_long_run_says_what_its_plots_sample_and_that_anomalies_are_exact(
    sample_store: SampleStore, report_pages: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert 'id="sampling"' not in report_pages["invalid"], "a short run draws every call"
    monkeypatch.setattr("reports.analysis.MAX_PLOTTED_CALLS", 200)
    page = build_report_html(sample_store.invalid)
    note = re.search(r'<p class="note sampling" id="sampling">(.*?)</p>', page, re.S)
    assert note is not None
    assert "Anomalies are exact" in note.group(1)
    assert "draw 2" in note.group(1)  # the number of calls drawn, e.g. "draw 2xx of them"
    assert "(a sample)" in page  # the timeline's own note
    traces = _figures(page)["fig-timeline"]["data"]
    assert isinstance(traces, list)
    shown = {
        index
        for trace in traces
        if isinstance(trace, dict) and str(trace.get("meta", "")).startswith("anomaly-")
        for index in _decoded_ints(trace.get("customdata"))
    }
    data = load_run(sample_store.invalid)
    client = {op.index for op in data.ops if op.is_client}
    named = {i for r in data.results for a in r.anomalies for i in a.op_indices} & client
    assert named, "the sample run has anomalies naming client ops"
    assert shown == named, "every op an anomaly names is drawn, however few calls are"


def _decoded_ints(values: object) -> list[int]:
    """A figure array as plotly embeds it: a list, or {dtype, bdata} (base64 of a typed array)."""
    if isinstance(values, dict):
        raw = base64.b64decode(str(values["bdata"]))
        return [int(v) for v in np.frombuffer(raw, dtype=np.dtype(str(values["dtype"])))]
    return [int(v) for v in values] if isinstance(values, list) else []
