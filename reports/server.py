"""A read-only HTTP view of the store for ``lockbench serve``.

Serves the index at ``/`` (rendered per request, never written), each run's files as they are,
and a run's report rendered in memory when its report.html has not been written yet. Only GET and
HEAD exist; paths that resolve outside the store (through ``..`` or a symlink) are 404.
"""

from __future__ import annotations

import logging
import urllib.parse
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from lockbench.run_dir import HISTORY_FILE, REPORT_FILE, RESULTS_FILE, TEST_FILE, run_time
from reports.index import INDEX_FILE, render_index_html
from reports.render import build_report_html

log = logging.getLogger(__name__)
TEXT_TYPES: dict[str, str] = {
    ".jsonl": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".yaml": "text/plain; charset=utf-8",
    ".json": "application/json",
}


class StoreRequestHandler(SimpleHTTPRequestHandler):
    """Static files of the store plus the generated index and on-demand reports."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **TEXT_TYPES}

    def __init__(self, *args: Any, store: Path, **kwargs: Any) -> None:
        self.store = store.resolve()
        super().__init__(*args, directory=str(self.store), **kwargs)

    def do_GET(self) -> None:
        self._serve(head_only=False)

    def do_HEAD(self) -> None:
        self._serve(head_only=True)

    def _serve(self, *, head_only: bool) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path in ("/", f"/{INDEX_FILE}"):
            self._send_html(render_index_html(self.store, live=True), head_only)
            return
        target = Path(self.translate_path(path)).resolve()
        if not target.is_relative_to(self.store):
            self.send_error(HTTPStatus.NOT_FOUND, "outside the store")
            return
        if target.name == REPORT_FILE and not target.exists() and _looks_like_run(target.parent):
            self._send_html(build_report_html(target.parent), head_only)
            return
        if head_only:
            super().do_HEAD()
        else:
            super().do_GET()

    def _send_html(self, page: str, head_only: bool) -> None:
        body = page.encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _looks_like_run(directory: Path) -> bool:
    if not directory.is_dir():
        return False
    markers = (HISTORY_FILE, RESULTS_FILE, TEST_FILE)
    return any((directory / m).exists() for m in markers) or run_time(directory) is not None


def make_server(store: Path, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """Bind the store server (not yet serving: call ``serve_forever``)."""
    handler = partial(StoreRequestHandler, store=store)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
