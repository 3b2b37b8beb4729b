"""CIFAR-10 and CIFAR-100 read straight from torchvision's on-disk pickle format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from mgrb.errors import DataError
from mgrb.data.base import ClassIncrementalData

CIFAR_LAYOUT = """\
  <root>/cifar-10-batches-py/   data_batch_1 ... data_batch_5, test_batch, batches.meta
  <root>/cifar-100-python/      train, test, meta
(torchvision's layout: the folders its CIFAR10/CIFAR100 classes download and extract)"""

SPEC = {
    10: {"folder": "cifar-10-batches-py", "train": [f"data_batch_{i}" for i in range(1, 6)],
         "test": ["test_batch"], "meta": "batches.meta", "names": "label_names",
         "labels": "labels", "mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010)},
    100: {"folder": "cifar-100-python", "train": ["train"], "test": ["test"], "meta": "meta",
          "names": "fine_label_names", "labels": "fine_labels",
          "mean": (0.5071, 0.4866, 0.4409), "std": (0.2673, 0.2564, 0.2762)},
}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            raw = pickle.load(handle, encoding="latin1")
    except FileNotFoundError:
        raise DataError(f"{path}: missing; expected the CIFAR layout\n{CIFAR_LAYOUT}") from None
    except Exception as error:  # a damaged pickle raises many kinds of errors
        raise DataError(f"{path}: unreadable ({type(error).__name__}); delete the folder and "
                        "download the data set again") from None
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in raw.items()}


def _read_split(folder: Path, files: list[str], label_key: str, num_classes: int):
    images, labels, coarse = [], [], []
    for name in files:
        batch = _unpickle(folder / name)
        data = np.asarray(batch.get("data"))
        if data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{folder / name}: records of {data.shape[1:] or '?'} bytes; CIFAR "
                            "records are 3072 bytes (32x32 pixels, R then G then B planes)")
        found = np.asarray(batch.get(label_key, []), dtype=np.int64)
        if len(found) != len(data) or (len(found) and (found.min() < 0 or found.max() >= num_classes)):
            raise DataError(f"{folder / name}: labels missing or outside 0..{num_classes - 1}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(found)
        if "coarse_labels" in batch:
            coarse.append(np.asarray(batch["coarse_labels"], dtype=np.int64))
    return (torch.from_numpy(np.concatenate(images).astype(np.uint8)),
            torch.from_numpy(np.concatenate(labels)),
            np.concatenate(coarse) if coarse else None)


def _coarse_by_class(fine: torch.Tensor, coarse: np.ndarray, path: Path) -> list[int]:
    """Superclass of each fine class, checked to be the same for every image."""
    table = {}
    for fine_label, coarse_label in set(zip(fine.tolist(), coarse.tolist())):
        if table.setdefault(fine_label, coarse_label) != coarse_label:
            raise DataError(f"{path}: class {fine_label} appears under two superclasses")
    return [table.get(c, -1) for c in range(100)]


def load_cifar(root: str | Path, num_classes: int, download: bool = False) -> ClassIncrementalData:
    spec = SPEC[num_classes]
    root = Path(root)
    folder = root if root.name == spec["folder"] else root / spec["folder"]
    if not (folder / spec["test"][0]).exists():
        if download:
            _download(root if folder.parent == root else folder.parent, num_classes)
        if not (folder / spec["test"][0]).exists():
            raise DataError(
                f"CIFAR-{num_classes} not found in {folder}. Expected torchvision's layout:\n"
                f"{CIFAR_LAYOUT}\nPoint dataset.root (or MGRB_DATA) at the folder holding "
                f"{spec['folder']}/, or let mgrb download it where the network allows "
                "(dataset.download: true, or `mgrb data`).")
    train_x, train_y, train_coarse = _read_split(folder, spec["train"], spec["labels"], num_classes)
    test_x, test_y, _ = _read_split(folder, spec["test"], spec["labels"], num_classes)
    names = [n.decode() if isinstance(n, bytes) else str(n)
             for n in _unpickle(folder / spec["meta"]).get(spec["names"], [])]
    if len(names) != num_classes:
        raise DataError(f"{folder / spec['meta']}: expected {num_classes} class names")
    coarse = None
    if num_classes == 100:
        if train_coarse is None:
            raise DataError(f"{folder / 'train'}: no coarse_labels; not a CIFAR-100 file")
        coarse = _coarse_by_class(train_y, train_coarse, folder / "train")
    return ClassIncrementalData(
        name=f"cifar{num_classes}", num_classes=num_classes, train_images=train_x,
        train_labels=train_y, test_images=test_x, test_labels=test_y, class_names=names,
        mean=spec["mean"], std=spec["std"], image_size=32, coarse_labels=coarse,
        source=str(folder.resolve()))


def _download(root: Path, num_classes: int) -> None:
    from torchvision import datasets

    dataset = datasets.CIFAR10 if num_classes == 10 else datasets.CIFAR100
    try:
        root.mkdir(parents=True, exist_ok=True)
        dataset(str(root), train=True, download=True)
    except Exception as error:  # offline: URLError, timeouts, HTTP errors
        raise DataError(f"CIFAR-{num_classes} is not in {root} and could not be downloaded "
                        f"({type(error).__name__}: {error}). Copy an existing torchvision copy "
                        f"there; expected layout:\n{CIFAR_LAYOUT}") from None
