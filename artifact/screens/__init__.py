"""Screens of the launcher: the experiment picker, a run's monitor and results, help, settings."""
