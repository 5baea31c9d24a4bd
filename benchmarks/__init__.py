"""The bench's benchmarks: one module per system measured, run as ``python -m benchmarks.<name>``.

Not shipped in the wheel and not part of the test run. ``benchmarks/drivers/`` holds what several
benchmarks share (load loops, process and metrics readers, in-memory groups); ``benchmarks/micro/``
holds the pytest-benchmark micro-benchmarks (``pytest benchmarks/micro --benchmark-only``).
Figures and the commands that produced them are in docs/performance.md.
"""
