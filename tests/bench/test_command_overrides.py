"""The flags run, validate and nightly share become test-file keys one way (bench/commands/
overrides.py): the given flags, then what a command derives, then ``--set``, which wins."""

from __future__ import annotations

import argparse

import pytest

from bench.commands.overrides import (
    CLUSTER_FLAG_KEYS,
    add_cluster_flags,
    add_set_flag,
    flag_overrides,
    set_items,
)
from lockbench.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cluster_flags(parser, ["local", "netns"], "an inventory")
    add_set_flag(parser, "any key")
    return parser.parse_args(argv)


def test_given_flags_become_keys_and_set_wins() -> None:
    args = parse("--runtime", "netns", "--set", "runtime=local", "--set", "seed=7")
    assert flag_overrides(args, CLUSTER_FLAG_KEYS) == {"runtime": "local", "seed": 7}
    assert flag_overrides(parse("--inventory", "inv.yaml"), CLUSTER_FLAG_KEYS) == {
        "inventory": "inv.yaml"
    }


def test_derived_keys_sit_between_the_flags_and_set() -> None:
    args = parse("--set", "nemesis=[]")
    derived = {"nemesis": [{"fault": "kill"}], "checkers": ["stats"]}
    assert flag_overrides(args, CLUSTER_FLAG_KEYS, derived) == {
        "nemesis": [],
        "checkers": ["stats"],
    }


def test_set_values_are_yaml() -> None:
    assert set_items(["workload_options.locks=5", "name=x y", "empty="]) == {
        "workload_options.locks": 5,
        "name": "x y",
        "empty": None,
    }


@pytest.mark.parametrize(
    ("item", "reason"), [("novalue", "expected KEY=VALUE"), ("k=[1", "not valid YAML")]
)
def test_a_bad_set_item_is_a_config_error(item: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        set_items([item])
