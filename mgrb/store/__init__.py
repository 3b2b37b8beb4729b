"""The run store: the run folder and its files (contracts.py says what each may hold), the
lock, and the identity of the processes that records name."""
