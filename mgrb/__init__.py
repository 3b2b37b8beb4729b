"""MGRB: Multi-Granularity Regularized Re-Balancing for class-incremental learning."""

__version__ = "0.1.0"
