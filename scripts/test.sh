#!/usr/bin/env bash
# The whole test suite: lint, format, types, tests. Root-only tests skip with a reason when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LOCKBENCH_VENV:-.venv}"
export PATH="$(pwd)/$VENV/bin:$PATH"
echo "== ruff check"; ruff check .
echo "== ruff format --check"; ruff format --check .
echo "== mypy"; mypy
echo "== import-linter (the floor plan, docs/architecture.md)"; lint-imports
echo "== pytest"; pytest "$@"
