"""Data sets as `ClassIncrementalData`, loaded by name."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mgrb.data.base import ClassIncrementalData

DATASETS = ("cifar10", "cifar100", "miniimagenet", "imagenet100", "digits")


def default_root(root: str | Path | None) -> Path:
    return Path(root or os.environ.get("MGRB_DATA") or "data")


def load_dataset(name: str, root: str | Path | None = None, *, download: bool = False,
                 image_size: int | None = None) -> ClassIncrementalData:
    if name == "digits":
        from mgrb.data.digits import load_digits_data

        return load_digits_data()
    base = default_root(root)
    if name in ("cifar10", "cifar100"):
        from mgrb.data.cifar import load_cifar

        return load_cifar(base, 10 if name == "cifar10" else 100, download=download)
    if name in ("miniimagenet", "imagenet100"):
        from mgrb.data.cache import NETWORK_SIZES, cache_folder, cache_present, cache_side, load_cache

        side = cache_side(name, image_size)
        if cache_present(name, base, side):
            # Training crops ImageNet-100's 256x256 images to 224 (evaluation: the centre).
            return dataclasses.replace(load_cache(cache_folder(name, base, side)),
                                       image_size=image_size or NETWORK_SIZES[name])
    if name == "miniimagenet":
        from mgrb.data.folder import load_miniimagenet

        return load_miniimagenet(dataset_folder(base, name), image_size=image_size or 84)
    if name == "imagenet100":
        from mgrb.data.folder import load_imagenet100

        return load_imagenet100(dataset_folder(base, name))
    raise ValueError(f"unknown data set {name!r}")


def data_present(name: str, root: str | Path | None = None) -> bool:
    """A cheap check of the folder layout; nothing is decoded."""
    if name == "digits":
        return True
    base = default_root(root)
    if name == "cifar10":
        return (base / "cifar-10-batches-py" / "test_batch").exists() or (
            base / "test_batch").exists()
    if name == "cifar100":
        return (base / "cifar-100-python" / "test").exists() or (base / "meta").exists()
    from mgrb.data.cache import cache_present

    if cache_present(name, base):  # `mgrb data prepare` made it; the image folders may be gone
        return True
    folder = dataset_folder(base, name)
    if name == "imagenet100":
        return (folder / "train").is_dir() and (folder / "val").is_dir()
    if not folder.is_dir():
        return False
    if (folder / "images").is_dir():
        folder = folder / "images"
    return (folder / "train").is_dir() or any(
        p.is_dir() and p.name.startswith("n0") for p in folder.iterdir())


def dataset_folder(base: Path, name: str) -> Path:
    """The data set's own folder: <root>/<name>, or root itself when it is that folder."""
    return base / name if (base / name).is_dir() else base


__all__ = ["ClassIncrementalData", "DATASETS", "data_present", "dataset_folder", "default_root",
           "load_dataset"]
