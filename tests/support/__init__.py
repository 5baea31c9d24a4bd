"""Test-only helpers shared by tests and benchmarks: synthetic runs, history generators, test
clusters. The product (bench, workloads, nemesis, reports, lockbench) never imports this."""
