"""Faults injected into a cluster over SSH: partitions, kills, pauses, clock skew, netem."""
