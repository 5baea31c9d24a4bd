"""Errors a user can act on. The CLI prints them as one line and exits with their code."""

from __future__ import annotations

# Exit codes (docs/history.md): 0 valid, 1 anomalies found, 2 bad usage or configuration,
# 3 unknown (a checker gave up), 4 the cluster could not be set up.
EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_UNKNOWN = 3
EXIT_CLUSTER = 4


class BenchError(Exception):
    """Base of user-facing errors; ``exit_code`` is what the CLI exits with."""

    exit_code: int = EXIT_USAGE


class ConfigError(BenchError):
    """A test file, inventory or flag that is wrong; names the file, the key and the reason."""

    exit_code = EXIT_USAGE


class ClusterError(BenchError):
    """The cluster could not be set up or reached; names the host and the cause."""

    exit_code = EXIT_CLUSTER
