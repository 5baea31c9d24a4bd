"""Counters from a lockd node's Prometheus ``/metrics`` page, as plain numbers."""

from __future__ import annotations

import urllib.request


def scrape(host: str, http_port: int, timeout: float = 2.0) -> dict[str, float]:
    """Every series on the page by name (labels dropped; the first series of a name wins).

    Raises OSError when the node does not answer.
    """
    url = f"http://{host}:{http_port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        values.setdefault(series.split("{", 1)[0], float(value))
    return values
