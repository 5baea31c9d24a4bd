"""JUnit XML for a matrix of runs, so any CI system shows a night's results natively.

One ``testcase`` per run: classname ``lockbench.<backend>.<workload>``, name
``<nemesis>@seed<N>``. An invalid run is a ``failure`` carrying the anomaly summary and the
report's path; a run the bench could not complete is an ``error``; a run left out by the budget
is ``skipped``. JUnit has no "unknown": with the policy ``fail`` it is a ``failure`` of type
``unknown``, otherwise ``skipped`` with the reason, so it is never shown as a pass.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from bench.runner.run_series import RunRecord
from lockbench.run_dir import REPORT_FILE


def _report(record: RunRecord) -> str:
    return "" if record.run_dir is None else f"report: {record.run_dir / REPORT_FILE}"


def junit_xml(suite: str, records: Sequence[RunRecord], *, unknown_fails: bool) -> ET.Element:
    cases = []
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for record in records:
        cell = record.cell
        case = ET.Element(
            "testcase",
            {
                "classname": f"lockbench.{cell.backend}.{cell.workload}",
                "name": f"{cell.fault}@seed{cell.seed}",
                "time": f"{record.wall_s:.1f}",
            },
        )
        details = "\n".join(
            part for part in (record.anomaly_summary, record.reason, _report(record)) if part
        )
        if record.skipped:
            ET.SubElement(case, "skipped", {"message": record.skipped})
            counts["skipped"] += 1
        elif record.verdict is None:
            error = ET.SubElement(case, "error", {"message": record.error or "the run failed"})
            error.text = details
            counts["errors"] += 1
        elif record.verdict == "invalid":
            first = record.anomaly_summary.splitlines()[0] if record.anomaly_summary else ""
            failure = ET.SubElement(
                case,
                "failure",
                {"type": "invalid", "message": f"invalid: {first}"[:500]},
            )
            failure.text = details
            counts["failures"] += 1
        elif record.verdict == "unknown":
            message = f"unknown: {record.reason or 'no reason recorded'}"[:500]
            if unknown_fails:
                failure = ET.SubElement(case, "failure", {"type": "unknown", "message": message})
                failure.text = details
                counts["failures"] += 1
            else:
                ET.SubElement(case, "skipped", {"message": message})
                counts["skipped"] += 1
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(
            line
            for line in (
                f"verdict: {record.verdict or record.skipped or 'error'}",
                f"ok ops/s: {record.ok_per_s}" if record.ok_per_s is not None else "",
                f"failover: {record.failover_s} s" if record.failover_s is not None else "",
                _report(record),
            )
            if line
        )
        cases.append(case)
    total = sum(r.wall_s for r in records)
    testsuite = ET.Element(
        "testsuite",
        {
            "name": suite,
            "tests": str(len(records)),
            **{k: str(v) for k, v in counts.items()},
            "time": f"{total:.1f}",
        },
    )
    testsuite.extend(cases)
    root = ET.Element("testsuites", {"name": suite, "tests": str(len(records))})
    root.append(testsuite)
    return root


def write_junit(
    path: Path, suite: str, records: Sequence[RunRecord], *, unknown_fails: bool
) -> Path:
    tree = ET.ElementTree(junit_xml(suite, records, unknown_fails=unknown_fails))
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
