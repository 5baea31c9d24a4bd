"""The contract floor of lockbench: what every plug-in and the runner share.

Protocols (``protocols``), the history format (``history``), the run-directory layout and
results.json (``run_dir``), option parsing (``options``), the daemon/faketime contract on nodes
(``daemon``), deploying the project to nodes (``deploy``), per-node fan-out (``parallel``),
user-facing errors (``errors``) and entry-point discovery (``plugins``). Nothing here imports the
rest of lockbench (bench, workloads, nemesis, reports), so plug-ins can depend on it alone.
"""
