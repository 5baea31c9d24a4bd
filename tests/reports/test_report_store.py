"""The store index lists runs newest first; ``lockbench serve`` serves the store read-only."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from reports.index import build_index, find_runs, render_index_html, summarize_run
from reports.server import make_server
from tests.reports.report_support import SampleStore

# Ports for these tests (the task's range is 127.0.0.1:21000-21999).


def test_index_lists_every_run_newest_first(sample_store: SampleStore) -> None:
    page = render_index_html(sample_store.root)
    names = [
        sample_store.invalid,  # 2026-11-22
        sample_store.damaged,  # 2026-11-21
        sample_store.valid,  # 2026-11-20
        sample_store.no_history,  # 2026-11-19
    ]
    positions = [page.index(str(p.relative_to(sample_store.root))) for p in names]
    assert positions == sorted(positions)
    assert "latest" not in [p.name for p in find_runs(sample_store.root)]


def test_index_row_has_the_run_fields(sample_store: SampleStore) -> None:
    summary = summarize_run(sample_store.root, sample_store.invalid)
    assert summary.name == "mutex-unfenced"
    assert summary.verdict == "invalid"
    assert (summary.backend, summary.workload) == ("reference", "fenced-counter")
    assert summary.nemesis == "partition+kill+pause+clock"
    assert summary.ops > 1000
    assert 31.0 < summary.duration_s < 33.0, "the test ran 32 s plus the final reads"
    assert summarize_run(sample_store.root, sample_store.damaged).verdict == "unchecked"


def test_build_index_writes_index_html(sample_store: SampleStore) -> None:
    path = build_index(sample_store.root)
    assert path == sample_store.root / "index.html"
    assert "mutex-fenced" in path.read_text(encoding="utf-8")


def test_an_empty_store_says_how_to_fill_it(tmp_path: Path) -> None:
    assert "lockbench run" in render_index_html(tmp_path)


@pytest.fixture
def served_store(sample_store: SampleStore) -> Iterator[str]:
    server = make_server(sample_store.root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), b""


def test_serve_shows_the_index_and_raw_files(served_store: str, sample_store: SampleStore) -> None:
    status, kind, body = _get(served_store + "/")
    assert status == 200
    assert kind.startswith("text/html")
    assert b"mutex-unfenced" in body
    rel = sample_store.valid.relative_to(sample_store.root).as_posix()
    status, kind, body = _get(f"{served_store}/{rel}/history.jsonl")
    assert status == 200
    assert kind.startswith("text/plain")
    assert body == (sample_store.valid / "history.jsonl").read_bytes()


def test_serve_renders_a_missing_report_without_writing_it(
    served_store: str, sample_store: SampleStore
) -> None:
    report = sample_store.no_history / "report.html"
    report.unlink(missing_ok=True)
    rel = sample_store.no_history.relative_to(sample_store.root).as_posix()
    status, _, body = _get(f"{served_store}/{rel}/report.html")
    assert status == 200
    assert b"history.jsonl is missing" in body
    assert not report.exists(), "serve is read-only"


def test_serve_refuses_writes_and_paths_outside_the_store(served_store: str) -> None:
    request = urllib.request.Request(served_store + "/", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 501
    status, _, _ = _get(served_store + "/%2e%2e/%2e%2e/etc/passwd")
    assert status == 404


def test_serve_does_not_follow_symlinks_out_of_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("outside", encoding="utf-8")
    (store / "leak.txt").symlink_to(secret)
    server = make_server(store, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, _, body = _get(f"http://127.0.0.1:{server.server_port}/leak.txt")
        assert status == 404
        assert b"outside" not in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
