"""Suite-wide pytest setup: tests marked ``root`` skip, with the reason, when not run as root."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip_root = pytest.mark.skip(
        reason="needs root (network namespaces, iptables, sshd per node); CI runs as root"
    )
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip_root)
