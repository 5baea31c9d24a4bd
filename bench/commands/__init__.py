"""One module per ``lockbench`` subcommand; each defines ``register(subparsers)``.

``SUBCOMMANDS`` names each subcommand's module and one-line help, in ``--help`` order. The CLI
(bench/cli.py) imports only the module of the subcommand that runs, so ``lockbench check`` never
loads the runner, SSH or the report libraries (docs/architecture.md, "Start-up").
"""

from __future__ import annotations

from collections.abc import Mapping

SUBCOMMANDS: Mapping[str, tuple[str, str]] = {
    "run": (
        "bench.commands.run",
        "run a test (a YAML file) and store its history, results and report",
    ),
    "compare": (
        "bench.commands.compare",
        "run several backends under the same faults and write compare.html",
    ),
    "cluster": (
        "bench.commands.cluster",
        "bring a five-node cluster up or down, deploy to it, show or heal it",
    ),
    "check": (
        "bench.commands.check",
        "check a history (JSON Lines or Jepsen EDN) or a run directory",
    ),
    "report": ("bench.commands.report", "write RUN_DIR/report.html from a stored run"),
    "serve": ("bench.commands.serve", "browse the store's runs and reports in a web browser"),
    "validate": (
        "bench.commands.validate",
        "prove the bench catches lockd's known bugs (each --unsafe-* switch) and that the same "
        "tests without them are valid",
    ),
    "nightly": (
        "bench.commands.nightly",
        "run a matrix of tests within a time budget; write JUnit XML and an HTML summary with "
        "trends",
    ),
}


def summary(name: str) -> str:
    """A subcommand's one-line help (its module passes it to ``add_parser``)."""
    return SUBCOMMANDS[name][1]
