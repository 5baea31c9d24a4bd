"""Bad test files are refused before anything starts, naming the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.runner.config import load_test_config
from lockbench.errors import EXIT_USAGE, ConfigError
from tests.bench.runner.runner_support import write_test_file


@pytest.mark.parametrize(
    ("keys", "key", "reason"),
    [
        ({"concurrencyy": 3}, "concurrencyy", "unknown key"),
        ({"concurrency": "ten"}, "concurrency", "expected an integer"),
        ({"concurrency": 0}, "concurrency", "at least 1"),
        ({"time_limit": -1}, "time_limit", "must be positive"),
        ({"rate": 0}, "rate", "must be positive"),
        ({"resource_mode": "sometimes"}, "resource_mode", "must be one of"),
        ({"workload": "juggling"}, "workload", "unknown workload"),
        ({"workload_options": {"locks": 0}}, "workload_options.locks", "at least 1"),
        ({"workload_options": {"lcks": 2}}, "workload_options.lcks", "unknown key"),
        (
            {"workload": "watch", "workload_options": {"watchers": 6}},
            "workload_options.watchers",
            "less than concurrency",
        ),
        ({"backend": "nosuch"}, "backend", "unknown backend"),
        ({"backend": "bench.nosuch:Backend"}, "backend", "cannot import module"),
        ({"backend": "bench.backends.memory:Nope"}, "backend", "has no attribute"),
        (
            {"backend": "workloads.resource:ResourceState"},
            "backend",
            "does not implement the Backend protocol",
        ),
        ({"backend_options": {"unsafe": ["typo"]}}, "backend_options", "unknown switch"),
        ({"runtime": "netns"}, "runtime", "runs only on runtime(s) none"),
        ({"runtime": "ssh", "backend": "reference"}, "inventory", "runtime ssh needs an inventory"),
        ({"nemesis": [{"fault": "kill"}]}, "nemesis[0]", "cannot inject kill"),
        ({"nemesis": [{"fault": "lightning"}]}, "nemesis[0]", "unknown nemesis fault"),
        ({"checkers": ["linearizable", "vibes"]}, "checkers[1]", "unknown checker"),
        ({"checker_options": {"tiem_budget_s": 5}}, "checker_options", "unknown checker option"),
    ],
)
def test_a_bad_key_is_refused_with_file_key_and_reason(
    tmp_path: Path, keys: dict[str, Any], key: str, reason: str
) -> None:
    path = write_test_file(tmp_path, **keys)
    with pytest.raises(ConfigError) as error:
        load_test_config(path)
    message = str(error.value)
    assert message.startswith(str(path)), message
    assert key in message, message
    assert reason in message, message


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: a test file is a mapping"):
        load_test_config(path)


def test_a_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.yaml: cannot read"):
        load_test_config(tmp_path / "absent.yaml")


def test_a_flag_override_is_validated_and_blamed_on_the_command_line(tmp_path: Path) -> None:
    path = write_test_file(tmp_path)
    with pytest.raises(ConfigError, match=r"concurrency: .*value from the command line"):
        load_test_config(path, {"concurrency": 0})


def test_overrides_reach_nested_keys_and_auto_values_are_resolved(tmp_path: Path) -> None:
    path = write_test_file(tmp_path, seed=None)
    config = load_test_config(path, {"workload_options.locks": 5, "concurrency": 3})
    assert config.workload_options["locks"] == 5
    assert config.concurrency == 3
    assert config.runtime == "none"  # the memory backend lives in the bench process
    assert isinstance(config.seed, int)  # a random seed, written to test.yaml for replay
    assert config.resolved_checkers == (
        "linearizable",
        "mutual-exclusion",
        "fencing",
        "liveness",
        "availability",
    )


def test_the_cli_exits_2_with_one_line_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_test_file(tmp_path, concurrency=0)
    store = tmp_path / "store"
    code = main(["run", str(path), "--store", str(store), "--no-progress"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "concurrency" in err[0]
    assert str(path) in err[0]
    assert not store.exists()  # refused before a run directory was made


def test_every_shipped_test_file_is_valid() -> None:
    configs = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(configs.glob("*.yaml"))
    assert files, "tests/configs/*.yaml is empty"
    for path in files:
        config = load_test_config(path)
        assert config.name == path.stem
