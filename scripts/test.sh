#!/usr/bin/env bash
# The whole test suite: lint, format, the fast test lane, types, then the process lane. Root-only
# tests skip with a reason when not root. Arguments go to both pytest runs (e.g. a path or -k).
#
# The fast lane (tests marked neither `process` nor `slow`: no subprocess, cluster or namespace)
# comes first so a broken import or unit fails within seconds; the process lane (lockd clusters,
# netns, sshd, chromium, long simulations) follows. Every test runs under pytest-timeout (default
# in pyproject.toml). docs/development.md says more.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LOCKBENCH_VENV:-.venv}"
export PATH="$(pwd)/$VENV/bin:$PATH"

# pytest exits 5 when a lane selects no test (e.g. a path holding only fast tests): not a failure.
lane() {
  local status=0
  pytest "$@" || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then
    exit "$status"
  fi
}

echo "== ruff check"; ruff check .
echo "== ruff format --check"; ruff format --check .
echo "== pytest: fast lane"; lane -m "not process and not slow" "$@"
echo "== mypy"; mypy
echo "== import-linter (the floor plan, docs/architecture.md)"; lint-imports
echo "== pytest: process lane"; lane -m "process or slow" "$@"
