"""miniImageNet and ImageNet-100 from folders of image files (docs/method.md section 1)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from mgrb.errors import DataError
from mgrb.data.base import ClassIncrementalData

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
MINIIMAGENET_SHA256 = "1b4824645ca6499eae20325be027c6a1b408e7adf003ea4a544cf3b84b10a170"
IMAGENET100_SHA256 = "fce943fa2f5b5888cc86d3850a8466c0de2d45e7593b3637534ff1e6b73db6f9"

MINIIMAGENET_LAYOUT = """\
  <root>/miniimagenet/<wnid>/*.jpg      100 class folders of 600 images each; sorted by file
                                        name, the first 500 of a class train, the last 100 test
  or, with your own split:
  <root>/miniimagenet/train/<wnid>/*.jpg and <root>/miniimagenet/test/<wnid>/*.jpg
  (the standard 100 classes of Ravi & Larochelle's 64+16+20 split, first n01532829)"""

IMAGENET100_LAYOUT = """\
  <root>/imagenet100/train/<wnid>/*.JPEG   ILSVRC-2012 training images of the 100 classes
  <root>/imagenet100/val/<wnid>/*.JPEG     their 50 validation images each, sorted into class folders
  (the seed-1993 subset of LUCIR/PyCIL; the wnids are in mgrb/resources/imagenet100_wnids.txt;
   a full ILSVRC-2012 train/ and val/ tree also works: the other classes are ignored)"""


def imagenet100_wnids() -> list[str]:
    """ImageNet-100's wnids in class-id order (line i = class id i)."""
    text = (Path(__file__).parents[1] / "resources" / "imagenet100_wnids.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def wnid_digest(wnids) -> str:
    return hashlib.sha256("\n".join(sorted(wnids)).encode()).hexdigest()


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.startswith("n")}


def _decode(paths: list[Path], size: int, progress=None) -> torch.Tensor:
    from PIL import Image

    def load(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                image = image.convert("RGB").resize((size, size), Image.BILINEAR)
                return np.asarray(image, dtype=np.uint8)
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: not a readable image ({error}); replace or remove it") from None

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for index, array in enumerate(pool.map(load, paths)):
            out[index] = array
            if progress and (index + 1) % 1000 == 0:
                progress(index + 1, len(paths))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _check_classes(wnids: list[str], expected_digest: str, root: Path, layout: str) -> None:
    if len(wnids) != 100 or wnid_digest(wnids) != expected_digest:
        raise DataError(f"{root}: found {len(wnids)} class folders "
                        f"({', '.join(wnids[:3])}{', ...' if len(wnids) > 3 else ''}), not the "
                        f"100 expected classes. Expected layout:\n{layout}")


def load_miniimagenet(root: str | Path, image_size: int = 84, verify_classes: bool = True,
                      progress=None) -> ClassIncrementalData:
    """Class id = rank of the wnid in sorted order; images resized and held in memory."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"miniImageNet not found in {root}. Expected layout:\n{MINIIMAGENET_LAYOUT}")
    base = root / "images" if (root / "images").is_dir() else root
    test_dir = next((base / name for name in ("test", "val") if (base / name).is_dir()), None)
    if (base / "train").is_dir() and test_dir is not None:
        train_folders, test_folders = _class_folders(base / "train"), _class_folders(test_dir)
        split_rule = f"the user's own split ({base / 'train'}, {test_dir})"
    else:
        train_folders = test_folders = _class_folders(base)
        split_rule = "per class, sorted by file name: the first 5/6 train, the rest test"
    wnids = sorted(train_folders)
    if verify_classes:
        _check_classes(wnids, MINIIMAGENET_SHA256, root, MINIIMAGENET_LAYOUT)
    if set(test_folders) != set(wnids):
        raise DataError(f"{test_dir}: its class folders differ from the training folders")
    train_paths, train_labels, test_paths, test_labels = [], [], [], []
    for class_id, wnid in enumerate(wnids):
        files = _images_in(train_folders[wnid])
        if test_folders is train_folders:
            cut = len(files) * 5 // 6
            train, test = files[:cut], files[cut:]
        else:
            train, test = files, _images_in(test_folders[wnid])
        if not train or not test:
            raise DataError(f"{train_folders[wnid]}: no images for one of the splits")
        train_paths += train
        test_paths += test
        train_labels += [class_id] * len(train)
        test_labels += [class_id] * len(test)
    return ClassIncrementalData(
        name="miniimagenet", num_classes=len(wnids),
        train_images=_decode(train_paths, image_size, progress),
        train_labels=torch.tensor(train_labels), test_images=_decode(test_paths, image_size),
        test_labels=torch.tensor(test_labels), class_names=list(wnids), mean=IMAGENET_MEAN,
        std=IMAGENET_STD, image_size=image_size, wnids=list(wnids),
        source=f"{root.resolve()}; split: {split_rule}")


def load_imagenet100(root: str | Path) -> ClassIncrementalData:
    """File lists only: 224x224 images are decoded per batch by the DataLoader."""
    root = Path(root)
    wnids = imagenet100_wnids()
    missing = [f"{split}/{wnid}" for split in ("train", "val") for wnid in wnids
               if not (root / split / wnid).is_dir()]
    if missing:
        raise DataError(f"ImageNet-100 incomplete in {root}: {len(missing)} class folders "
                        f"missing ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
                        f". Expected layout:\n{IMAGENET100_LAYOUT}")
    paths = {"train": ([], []), "val": ([], [])}
    for split, (files, labels) in paths.items():
        for class_id, wnid in enumerate(wnids):
            found = _images_in(root / split / wnid)
            if not found:
                raise DataError(f"{root / split / wnid}: no images")
            files += found
            labels += [class_id] * len(found)
    return ClassIncrementalData(
        name="imagenet100", num_classes=100, train_images=paths["train"][0],
        train_labels=torch.tensor(paths["train"][1]), test_images=paths["val"][0],
        test_labels=torch.tensor(paths["val"][1]), class_names=list(wnids), mean=IMAGENET_MEAN,
        std=IMAGENET_STD, image_size=224, wnids=list(wnids), source=str(root.resolve()))
