"""``lockbench check``: exit codes, run directories, Jepsen EDN input, and bad input by line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from bench.checker.edn import EdnError, Keyword, Tagged, read_forms
from bench.checker.loading import load_history, load_paired_history
from bench.commands import check
from lockbench.errors import BenchError
from lockbench.history import HistoryError, Op, pair_calls
from tests.bench.checker.checker_histories import history
from tests.support.histories import register_history


def lockbench_check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the subcommand the way bench.cli.main does (parse, run, BenchError -> exit code)."""
    parser = argparse.ArgumentParser(prog="lockbench")
    check.register(parser.add_subparsers())
    args = parser.parse_args(["check", *argv])
    try:
        code = int(args.func(args))
    except BenchError as exc:
        print(f"lockbench: {exc}", file=__import__("sys").stderr)
        code = exc.exit_code
    out, err = capsys.readouterr()
    return code, out, err


def write_jsonl(path: Path, ops: list[Op]) -> Path:
    path.write_text("".join(json.dumps(op.to_json()) + "\n" for op in ops), encoding="utf-8")
    return path


STALE_READ = history(
    (0, "invoke", "write", "r", 1),
    (0, "ok", "write", "r", 1),
    (1, "invoke", "read", "r", None),
    (1, "ok", "read", "r", 2),
)
GOOD = history(
    (0, "invoke", "write", "r", 1),
    (0, "ok", "write", "r", 1),
    (1, "invoke", "read", "r", None),
    (1, "ok", "read", "r", 1),
)


def test_check_exits_zero_for_valid_and_one_for_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = lockbench_check([str(write_jsonl(tmp_path / "good.jsonl", GOOD))], capsys)
    assert code == 0
    assert json.loads(out)["verdict"] == "valid"
    code, out, _ = lockbench_check([str(write_jsonl(tmp_path / "bad.jsonl", STALE_READ))], capsys)
    document = json.loads(out)
    assert code == 1
    assert document["verdict"] == "invalid"
    # No op ever wrote 2, so the read alone is the counterexample.
    assert document["checkers"]["linearizable"]["window"] == [2, 3]


def test_check_rewrites_results_json_in_a_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "history.jsonl", STALE_READ)
    (tmp_path / "results.json").write_text('{"verdict": "valid"}', encoding="utf-8")
    code, _, _ = lockbench_check([str(tmp_path), "--checkers", "linearizable"], capsys)
    assert code == 1
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert results["verdict"] == "invalid"
    assert set(results["checkers"]) == {"linearizable", "stats"}  # stats always runs


def test_check_exits_three_when_the_budget_runs_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", hard_history())
    code, out, _ = lockbench_check([str(path), "--time-budget", "0.2"], capsys)
    assert code == 3
    reason = json.loads(out)["checkers"]["linearizable"]["reason"]
    assert "time budget" in reason


def hard_history(writers: int = 24) -> list[Op]:
    """Many concurrent writes of distinct values, then a read no order can explain: the search
    must try every subset of the writes, far more than a fraction of a second allows."""
    records: list[tuple[Any, ...]] = [(p, "invoke", "write", "r", p) for p in range(writers)]
    records += [(p, "ok", "write", "r", p) for p in range(writers)]
    records += [(writers, "invoke", "read", "r", None), (writers, "ok", "read", "r", -1)]
    return history(*records)


@pytest.mark.parametrize(
    ("lines", "bad_line", "message"),
    [
        (['{"index":0,"time":0,"process":0,"type":"invoke","f":"read"}', '{"index":1,'], 2, "JSON"),
        (['{"index":0,"time":0,"process":0,"type":"ok","f":"read"}'], 1, "without an invocation"),
        (['{"index":0,"time":0,"process":0,"type":"invoke","f":"frobnicate"}'], 1, "unknown op"),
        (
            [
                '{"index":0,"time":0,"process":0,"type":"invoke","f":"read"}',
                '{"index":1,"time":1,"process":0,"type":"ok","f":"write"}',
            ],
            2,
            "completes an invocation of read",
        ),
    ],
)
def test_bad_input_exits_two_naming_the_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lines: list[str],
    bad_line: int,
    message: str,
) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = lockbench_check([str(path)], capsys)
    assert code == 2
    assert f"broken.jsonl:{bad_line}:" in err
    assert message in err


KNOSSOS_EDN = """[{:process 0, :type :invoke, :f :write, :value 1}
 {:process 0, :type :ok, :f :write, :value 1}
 {:process 1, :type :invoke, :f :cas, :value [1 2]}
 {:process 1, :type :ok, :f :cas, :value [1 2]}
 {:process :nemesis, :type :info, :f :start, :value nil}
 {:process 2, :type :invoke, :f :read, :value nil}
 {:process 2, :type :ok, :f :read, :value 2}]
"""
JEPSEN_EDN = """{:index 0 :time 100 :type :invoke :process 0 :f :acquire :value nil}
{:index 1 :time 200 :type :ok :process 0 :f :acquire :value nil}
{:index 2 :time 300 :type :invoke :process 1 :f :acquire :value nil}
{:index 3 :time 400 :type :ok :process 1 :f :acquire :value nil}
"""


def test_knossos_edn_history_reads_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.edn"
    path.write_text(KNOSSOS_EDN, encoding="utf-8")
    ops = load_history(path)
    assert [op.f for op in ops][:2] == ["write", "write"]
    assert ops[4].process == "nemesis"
    assert ops[2].value == [1, 2]
    code, out, _ = lockbench_check([str(path), "--model", "cas-register"], capsys)
    assert code == 0, out
    stale = KNOSSOS_EDN.replace(":value 2}]", ":value 1}]")
    path.write_text(stale, encoding="utf-8")
    code, _, _ = lockbench_check([str(path), "--model", "cas-register"], capsys)
    assert code == 1


def test_jepsen_lock_history_checks_under_knossos_mutex(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.edn"
    path.write_text(JEPSEN_EDN, encoding="utf-8")
    ops = load_history(path)
    assert [op.time for op in ops] == [100, 200, 300, 400]
    code, out, _ = lockbench_check(
        [str(path), "--model", "mutex", "--checkers", "linearizable"], capsys
    )
    assert code == 1
    assert json.loads(out)["checkers"]["linearizable"]["stats"]["model"] == "mutex"


def test_truncated_edn_names_the_line_where_the_open_form_began(tmp_path: Path) -> None:
    path = tmp_path / "history.edn"
    path.write_text(JEPSEN_EDN + '{:index 4 :type :invoke :process 2 :f :read :value "x', "utf-8")
    with pytest.raises(HistoryError) as caught:
        load_history(path)
    assert caught.value.line == 5


def test_edn_reader_covers_the_jepsen_subset() -> None:
    text = """; a comment
    {:a [1 -2 3.5 1/2 12N] :b #{:x :y} :c "q\\"uote" :d nil :e true, :f (1 2)}
    #jepsen.history.Op{:index 7 :t #inst "2024-01-01"} #_ {:ignored 1} :last"""
    forms = list(read_forms(text))
    assert [line for line, _ in forms] == [2, 3, 3]
    first = forms[0][1]
    assert first[Keyword("a")] == (1, -2, 3.5, 0.5, 12)
    assert first[Keyword("b")] == frozenset({Keyword("x"), Keyword("y")})
    assert first[Keyword("c")] == 'q"uote'
    assert first[Keyword("d")] is None
    assert first[Keyword("f")] == (1, 2)
    second = forms[1][1]
    assert second[Keyword("index")] == 7
    assert second[Keyword("t")] == Tagged("inst", "2024-01-01")
    assert forms[2][1] == Keyword("last")
    with pytest.raises(EdnError, match="line 2"):
        list(read_forms("{:a 1}\n{:b [1 2}"))


def test_generated_register_history_round_trips_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ops = register_history(seed=3, ops=400, info_rate=0.05)
    code, out, _ = lockbench_check([str(write_jsonl(tmp_path / "h.jsonl", ops))], capsys)
    assert code == 0, out


def test_checkers_may_be_named_with_commas_and_unknown_ones_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write_jsonl(tmp_path / "good.jsonl", GOOD))
    code, out, _ = lockbench_check([path, "--checkers", "linearizable,availability"], capsys)
    assert code == 0
    assert list(json.loads(out)["checkers"]) == ["linearizable", "availability", "stats"]
    code, _, err = lockbench_check([path, "--checkers", "linearisable"], capsys)
    assert code == 2
    assert "unknown checker" in err


@pytest.mark.parametrize("seed", range(4))
def test_loading_pairs_the_calls_as_pair_calls_does(tmp_path: Path, seed: int) -> None:
    """Validation pairs the calls in the same pass; the result is pair_calls' own."""
    ops = register_history(seed=seed, ops=500, info_rate=0.2)
    paired = load_paired_history(write_jsonl(tmp_path / "h.jsonl", ops))
    assert list(paired.ops) == ops
    assert list(paired.calls) == pair_calls(ops)
