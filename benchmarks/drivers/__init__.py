"""What several benchmarks share: load loops, /proc and /metrics readers, in-memory groups."""
