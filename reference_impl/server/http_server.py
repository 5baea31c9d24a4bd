"""lockd's HTTP port: ``/metrics`` (Prometheus text), ``/health`` and ``/status`` (JSON).

A minimal HTTP/1.0 responder on asyncio: three GET endpoints do not justify a web framework, and
the server must not depend on anything that could call ``time.sleep`` under libfaketime.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from reference_impl.server.metrics import Registry
from reference_impl.server.service import LockService

log = logging.getLogger(__name__)
MAX_REQUEST_HEAD_BYTES = 8192


class HttpServer:
    def __init__(self, service: LockService, registry: Registry) -> None:
        self.service = service
        self.registry = registry
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def _routes(self) -> dict[str, Callable[[], tuple[int, str, str]]]:
        return {
            "/metrics": lambda: (200, "text/plain; version=0.0.4", self.registry.render()),
            "/status": lambda: (200, "application/json", json.dumps(self.service.status())),
            "/health": self._health,
        }

    def _health(self) -> tuple[int, str, str]:
        status = self.service.status()
        healthy = status["leader"] is not None
        body = json.dumps({"healthy": healthy, "leader": status["leader"], "id": status["id"]})
        return (200 if healthy else 503), "application/json", body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            if len(head) > MAX_REQUEST_HEAD_BYTES:
                raise ValueError("request head too large")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
            path = path.split("?", 1)[0]
            route = self._routes().get(path)
            if method != "GET":
                code, ctype, body = 405, "text/plain", "only GET is served\n"
            elif route is None:
                code, ctype, body = 404, "text/plain", "try /metrics, /health or /status\n"
            else:
                code, ctype, body = route()
            data = body.encode()
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}
            writer.write(
                f"HTTP/1.0 {code} {reason.get(code, '')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except (ConnectionError, OSError) as exc:
            log.debug("http client went away: %s", exc)
        finally:
            with contextlib.suppress(Exception):
                writer.close()
