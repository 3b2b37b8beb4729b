"""`mgrb data` / `make data`: fetch what can be fetched, check what is there, explain the rest."""

from __future__ import annotations

import os
from pathlib import Path

from mgrb.data.registry import BUNDLED, DATASETS, IMAGES, PICKLES
from mgrb.errors import DataError


def check_data(root: Path | None, download: bool = True) -> int:
    """Print the state of every data set; exit status 1 if a present data set is damaged."""
    from mgrb.data import data_present, images_present, load_dataset
    from mgrb.data.cache import cache_folder, cache_present, prepare_command
    from mgrb.data.cifar import CIFAR_LAYOUT
    from mgrb.data.folder import LAYOUTS

    from mgrb.data import require_root

    if root is None and not os.environ.get("MGRB_DATA"):
        Path("data").mkdir(exist_ok=True)  # the default folder; a given one must exist
    root = require_root(root)
    status, cifar_missing = 0, False
    print(f"data folder: {root.resolve()} (set MGRB_DATA or --root to change it)")
    for name, (train, test) in ((name, record.expected_counts)
                                for name, record in DATASETS.items() if record.storage == PICKLES):
        present = data_present(name, root)
        if not present and not download:
            print(f"{name}: missing (run `mgrb data` where the network allows to download it)")
            cifar_missing = True
            continue
        try:
            data = load_dataset(name, root, download=download)
        except DataError as error:
            print(f"{name}: {'damaged' if present else 'not available'}: "
                  f"{_without(str(error), CIFAR_LAYOUT)}")
            status = 1 if present else status
            cifar_missing = True
            continue
        counts = (len(data.train_labels), len(data.test_labels))
        if counts != (train, test):
            print(f"{name}: unexpected size {counts[0]} train / {counts[1]} test images "
                  f"(expected {train} / {test}); re-download it")
            status = 1
        else:
            print(f"{name}: ok, {train} train / {test} test images in {data.source}")
    if cifar_missing:  # one layout covers both data sets: shown once, not in each message
        print(f"CIFAR layout (both data sets):\n{CIFAR_LAYOUT}")
    for name in (name for name, record in DATASETS.items() if record.storage == BUNDLED):
        print(f"{name}: ok, bundled with scikit-learn")
    for name, record in DATASETS.items():
        if record.storage != IMAGES:
            continue
        layout = LAYOUTS[record.layout]
        if cache_present(name, root):
            print(f"{name}: cache in {cache_folder(name, root)} (mgrb data prepare {name}); runs "
                  "use it")
        elif record.cache_only and images_present(name, root):
            print(f"{name}: present in {root / name}, not yet prepared: runs read only its "
                  f"cache; `{prepare_command(name, root)}` decodes it once")
        elif data_present(name, root):
            print(f"{name}: present in {root / name}; `{prepare_command(name, root)}` decodes it "
                  "once into a cache that runs use instead (much faster)")
        else:
            print(f"{name}: not present. It cannot be downloaded automatically; put it here:\n"
                  f"{layout}\n")
    return status


def _without(message: str, layout: str) -> str:
    """A loader's message on one line, the layout it quotes replaced by a pointer to the one
    printed below it."""
    if layout not in message:
        return message
    before, _, after = message.partition(layout)
    return " ".join(f"{before.rstrip().rstrip(':')} (below) {after}".split())
