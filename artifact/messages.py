"""The messages the launcher's UI passes around.

The app polls `artifact.core.Service` in a worker thread; each poll's snapshot reaches the
screens as a `SnapshotReady` message, which a screen handles in `on_snapshot_ready`.
"""

from __future__ import annotations

from textual.message import Message

from artifact.core.service import Snapshot


class SnapshotReady(Message, bubble=False):
    """A poll's picture of the experiments, their runs and the GPUs, posted by the app to every
    screen on its stack (screens below the top one too, so that they are current when shown
    again). It does not bubble: the app that posts it has no use for it."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot
