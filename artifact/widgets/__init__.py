"""Widgets of the launcher; each renders plain data from `artifact.core`."""
