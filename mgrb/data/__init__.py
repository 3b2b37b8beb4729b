"""Data sets as `ClassIncrementalData`, loaded by name."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mgrb.data.base import ClassIncrementalData
from mgrb.data.registry import BUNDLED, ILSVRC, IMAGES, PICKLES, dataset
from mgrb.errors import DataError


def default_root(root: str | Path | None) -> Path:
    return Path(root or os.environ.get("MGRB_DATA") or "data")


def require_root(root: str | Path | None) -> Path:
    """The data folder, which must exist: a mistyped path is said to be one, never created and
    filled by a download. Only `mgrb data` may make the default ./data (`make_default`)."""
    base = default_root(root)
    if base.is_dir():
        return base
    given = ("--root or dataset.root" if root else
             "MGRB_DATA" if os.environ.get("MGRB_DATA") else "the default")
    what = "is not a folder" if base.exists() else "does not exist"
    raise DataError(f"data folder {base} ({given}) {what}; create it, or point "
                    "MGRB_DATA, --root or dataset.root at the folder that holds the data sets")


def load_dataset(name: str, root: str | Path | None = None, *, download: bool = False,
                 image_size: int | None = None) -> ClassIncrementalData:
    record = dataset(name)
    if record.storage == BUNDLED:
        from mgrb.data.digits import load_digits_data

        return load_digits_data()
    base = require_root(root)
    if record.storage == PICKLES:
        from mgrb.data.cifar import load_cifar

        return load_cifar(base, record.classes, download=download)
    from mgrb.data.cache import cache_folder, cache_present, cache_side, load_cache

    side = cache_side(name, image_size)
    require_prepared(name, base, image_size)
    if cache_present(name, base, side):
        # Training crops ImageNet-100's 256x256 images to 224 (evaluation: the centre).
        return dataclasses.replace(load_cache(cache_folder(name, base, side)),
                                   image_size=image_size or record.side)
    from mgrb.data.folder import load_miniimagenet

    return load_miniimagenet(dataset_folder(base, name), image_size=image_size or record.side)



def check_before_run(name: str, root: str | Path | None = None,
                     image_size: int | None = None) -> None:
    """What `mgrb run` asks before it makes a run folder (DataError, exit 2): the data folder
    exists, and a data set read only from its cache has one."""
    if dataset(name).storage != BUNDLED:
        require_root(root)
    require_prepared(name, root, image_size)


def require_prepared(name: str, root: str | Path | None = None,
                     image_size: int | None = None) -> None:
    """For a data set read only from its prepared cache (ImageNet-100): DataError, with the one
    command that makes the cache, when it is missing, unfinished, old or damaged. Cheap
    (nothing is hashed): `mgrb run` asks before it makes its run folder."""
    if not dataset(name).cache_only:
        return
    from mgrb.data.cache import cache_problem, cache_side, prepare_command

    side = cache_side(name, image_size)
    problem = cache_problem(name, root, side)
    if problem is None:
        return
    command = prepare_command(name, root, side)
    if images_present(name, root):
        source = f"it decodes the images in {dataset_folder(default_root(root), name)} once"
    else:
        from mgrb.data.folder import LAYOUTS

        source = (f"first put the images under {default_root(root)} (they cannot be downloaded "
                  f"automatically):\n{LAYOUTS[dataset(name).layout]}")
    raise DataError(f"{dataset(name).title} is read only from the cache that `mgrb data prepare` makes, "
                    f"and there is none to use ({problem}). Make it with:\n  {command}\n"
                    f"({source})")


def data_present(name: str, root: str | Path | None = None, image_size: int | None = None) -> bool:
    """A cheap check that a run could start; nothing is decoded. ImageNet-100: its prepared
    cache (for the network side `image_size`, default 224) is there; the image folders alone
    are not enough (`images_present`)."""
    record = dataset(name)
    if record.storage == BUNDLED:
        return True
    base = default_root(root)
    if record.storage == PICKLES:
        return any((base / marker).exists() for marker in record.present_markers)
    from mgrb.data.cache import cache_present, cache_side

    if cache_present(name, base, cache_side(name, image_size)):
        return True  # `mgrb data prepare` made it; the image folders may be gone
    return not record.cache_only and images_present(name, base)


def images_present(name: str, root: str | Path | None = None) -> bool:
    """Whether the image folders of miniImageNet or ImageNet-100 are there, by their layout
    (what `mgrb data prepare` reads); nothing is decoded."""
    folder = dataset_folder(default_root(root), name)
    if dataset(name).storage != IMAGES:
        return False
    if dataset(name).layout == ILSVRC:
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


__all__ = ["ClassIncrementalData", "check_before_run", "data_present", "dataset_folder",
           "default_root", "images_present", "load_dataset", "require_prepared", "require_root"]
