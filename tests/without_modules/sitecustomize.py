"""Modules hidden from a process started by a test, as on a machine that lacks them: Python
loads this module at start-up when a test puts this folder on PYTHONPATH, and every import of
a name in MGRB_TEST_HIDE (comma-separated top-level names, e.g. "torchvision,PIL,nltk") fails
as an absent package's does. Nothing else loads it."""

import os
import sys

HIDDEN = {name.strip() for name in os.environ.get("MGRB_TEST_HIDE", "").split(",") if name.strip()}


class _Hidden:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


if HIDDEN:
    sys.meta_path.insert(0, _Hidden())
