"""Benchmarks: throughput of the training loop and wall time of searches (results written as JSON)."""
