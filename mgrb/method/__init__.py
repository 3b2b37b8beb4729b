"""The method: the losses, soft targets of class hierarchies, WordNet, and the per-phase
hooks (phase.py) that the trainer calls."""
