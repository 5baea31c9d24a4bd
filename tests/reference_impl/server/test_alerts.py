"""The shipped Prometheus alerting rules are valid (checked by promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import reference_impl

ALERTS = Path(reference_impl.__file__).parent / "monitoring" / "alerts.yml"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")
def test_alert_rules_pass_promtool_check() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_every_alert_the_issue_asks_for_is_present() -> None:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    names = {rule["alert"] for rule in rules}
    assert names == {
        "LockdNoLeader",
        "LockdFrequentElections",
        "LockdSlowFsync",
        "LockdApplyLagGrowing",
        "LockdNodeUnreachable",
    }
