"""Workloads: generators and client logic that drive a lock service and record a history."""
