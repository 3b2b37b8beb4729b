"""Pipelines over runs: each run in a process of its own, and `mgrb reproduce` over many."""
