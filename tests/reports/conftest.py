"""Synthetic store directories (valid, invalid, damaged, without history) and a headless browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from reports.render import render_report
from tests.reports.report_support import SampleStore
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.synthetic_runs import SyntheticRunSpec, write_synthetic_run


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> SampleStore:
    root = tmp_path_factory.mktemp("store")
    common: dict[str, Any] = {"seconds": 32.0, "concurrency": 3, "think_ms": 40.0}
    valid = write_synthetic_run(
        root,
        SyntheticRunSpec(
            kind="valid", test_name="mutex-fenced", started=datetime(2026, 11, 20, 9), **common
        ),
    )
    invalid = write_synthetic_run(
        root,
        SyntheticRunSpec(
            kind="invalid", test_name="mutex-unfenced", started=datetime(2026, 11, 22, 9), **common
        ),
    )
    damaged = write_synthetic_run(
        root,
        SyntheticRunSpec(
            kind="damaged", test_name="mutex-crashed", started=datetime(2026, 11, 21, 9), **common
        ),
    )
    no_history = root / "mutex-crashed" / "20261119T090000"
    shutil.copytree(damaged, no_history)
    (no_history / "history.jsonl").unlink()
    return SampleStore(root, valid, invalid, damaged, no_history)


@pytest.fixture(scope="session")
def report_pages(sample_store: SampleStore) -> dict[str, str]:
    """Each sample run's report, rendered once per session (render_report writes report.html)."""
    runs = {
        "valid": sample_store.valid,
        "invalid": sample_store.invalid,
        "damaged": sample_store.damaged,
        "no_history": sample_store.no_history,
    }
    return {kind: render_report(run).read_text(encoding="utf-8") for kind, run in runs.items()}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian chromium is not installed (/usr/bin/chromium): scripts/setup.sh adds it"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (dev extra) drives the browser tests"
    )
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
