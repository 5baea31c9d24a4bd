"""pytest-benchmark micro-benchmarks: ``pytest benchmarks/micro --benchmark-only``.

Small, CPU-bound, deterministic inputs, so a figure is comparable from run to run (compare runs
with ``--benchmark-autosave`` and ``pytest-benchmark compare``). Not part of the test run.
"""
