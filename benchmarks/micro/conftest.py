"""The micro-benchmarks' own pytest setup: nothing from tests/ is loaded here."""

from __future__ import annotations
