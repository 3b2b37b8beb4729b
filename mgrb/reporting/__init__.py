"""Reporting: verdicts against the paper (`mgrb check`), the reproduction report and its
figures."""
