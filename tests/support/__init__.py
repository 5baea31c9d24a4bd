"""Test-only helpers shared by tests and benchmarks: synthetic runs, history generators, test
clusters, waiting for conditions, free ports. The product (bench, workloads, nemesis, reports,
lockbench) never imports this."""
