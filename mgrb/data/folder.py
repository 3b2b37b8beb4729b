"""miniImageNet and ImageNet-100 from folders of image files (docs/method.md section 1).

The file lists (`miniimagenet_files`, `imagenet100_files`) are read without decoding
anything, so that miniImageNet's in-memory loader here and the uint8 cache (`mgrb data
prepare`) share one reading of each layout and one class numbering. ImageNet-100 is read
only through that cache; `decode_image` is the one decoder of both."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mgrb.errors import DataError
from mgrb.text import printable
from mgrb.data.base import ClassIncrementalData
from mgrb.data.registry import ILSVRC, MINI

if TYPE_CHECKING:  # torch is imported where tensors are made: the cache's workers never need it
    import torch

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


@dataclass(frozen=True)
class Sources:
    """A data set's image files and class ids as its layout defines them; nothing decoded."""

    name: str
    root: Path
    train_paths: list[Path]
    train_labels: list[int]
    test_paths: list[Path]
    test_labels: list[int]
    wnids: list[str]  # by class id
    split: str  # how train and test were told apart, for results.json and the cache manifest


def imagenet100_wnids() -> list[str]:
    """ImageNet-100's wnids in class-id order (line i = class id i)."""
    text = (Path(__file__).parents[1] / "resources" / "imagenet100_wnids.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def wnid_digest(wnids) -> str:
    return hashlib.sha256("\n".join(sorted(wnids)).encode()).hexdigest()


def _images_in(folder: Path) -> list[Path]:
    """The image files of a class folder by name. Each must be a regular file (or a link to
    one: subsets of ImageNet are often made of links): a FIFO would block the decoder for
    ever and a device never end, so either is named and refused before anything is opened."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                regular = entry.is_file()  # stat, not open: never blocks
            except OSError:
                regular = False
            if not regular:
                raise DataError(f"{printable(entry.path)}: not a regular file (a FIFO, device, "
                                "folder or broken link) among the images; replace or remove it")
            found.append(Path(entry.path))
    return sorted(found)


def _class_folders(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.startswith("n")}


def _opencv():
    """cv2, imported where images are decoded (OpenCV's headless wheel, a dependency of mgrb)."""
    try:
        import cv2
    except ImportError as error:
        raise DataError(f"decoding images needs OpenCV ({error}); install the locked environment "
                        "(`make setup`) or `pip install opencv-python-headless`") from None
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our own message says why
    return cv2


def decode_image(path: Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB, decoded as the authors' code did (code/LoadImagenet100.py,
    code/LoadMiniImagenet.py): `cv2.imread(path)` (IMREAD_COLOR: 3 channels whatever the file
    holds, greyscale and CMYK included, its EXIF orientation applied, the format told by the
    content, not the name), then, when the image is not size x size already,
    `cv2.resize(img, (size, size))` (bilinear, aspect ratio not kept): 256x256 for ImageNet-100,
    84x84 for miniImageNet, whose images are 84x84 already. OpenCV's BGR is turned into RGB,
    a lossless reordering (docs/method.md sections 1 and 8)."""
    cv2 = _opencv()
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as error:
        image, reason = None, str(error).strip().splitlines()[-1]
    else:
        reason = "OpenCV cannot decode it"
    if image is None:
        raise DataError(f"{printable(path)}: not a readable image ({printable(reason)}); "
                        "replace or remove it")
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(image[..., ::-1])


def _decode(paths: list[Path], size: int, progress=None) -> torch.Tensor:
    import torch

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for index, array in enumerate(pool.map(lambda path: decode_image(path, size), paths)):
            out[index] = array
            if progress and (index + 1) % 1000 == 0:
                progress(index + 1, len(paths))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _check_classes(wnids: list[str], expected_digest: str, root: Path, layout: str) -> None:
    if len(wnids) != 100 or wnid_digest(wnids) != expected_digest:
        raise DataError(f"{root}: found {len(wnids)} class folders "
                        f"({', '.join(wnids[:3])}{', ...' if len(wnids) > 3 else ''}), not the "
                        f"100 expected classes. Expected layout:\n{layout}")


def miniimagenet_files(root: str | Path, verify_classes: bool = True) -> Sources:
    """Class id = rank of the wnid in sorted order."""
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
    sources = Sources("miniimagenet", root.resolve(), [], [], [], [], wnids, split_rule)
    for class_id, wnid in enumerate(wnids):
        files = _images_in(train_folders[wnid])
        if test_folders is train_folders:
            cut = len(files) * 5 // 6
            train, test = files[:cut], files[cut:]
        else:
            train, test = files, _images_in(test_folders[wnid])
        if not train or not test:
            raise DataError(f"{train_folders[wnid]}: no images for one of the splits")
        sources.train_paths.extend(train)
        sources.test_paths.extend(test)
        sources.train_labels.extend([class_id] * len(train))
        sources.test_labels.extend([class_id] * len(test))
    return sources


def imagenet100_files(root: str | Path) -> Sources:
    """Class id = line of the wnid in mgrb/resources/imagenet100_wnids.txt; ILSVRC's val/ is
    the test split."""
    root = Path(root)
    wnids = imagenet100_wnids()
    missing = [f"{split}/{wnid}" for split in ("train", "val") for wnid in wnids
               if not (root / split / wnid).is_dir()]
    if missing:
        raise DataError(f"ImageNet-100 incomplete in {root}: {len(missing)} class folders "
                        f"missing ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})"
                        f". Expected layout:\n{IMAGENET100_LAYOUT}")
    sources = Sources("imagenet100", root.resolve(), [], [], [], [], wnids,
                      "ILSVRC-2012 train/ for training, val/ for testing")
    for split, paths, labels in (("train", sources.train_paths, sources.train_labels),
                                 ("val", sources.test_paths, sources.test_labels)):
        for class_id, wnid in enumerate(wnids):
            found = _images_in(root / split / wnid)
            if not found:
                raise DataError(f"{root / split / wnid}: no images")
            paths += found
            labels += [class_id] * len(found)
    return sources


def load_miniimagenet(root: str | Path, image_size: int = 84, verify_classes: bool = True,
                      progress=None) -> ClassIncrementalData:
    """Images resized and held in memory."""
    import torch

    sources = miniimagenet_files(root, verify_classes)
    return ClassIncrementalData(
        name="miniimagenet", num_classes=len(sources.wnids),
        train_images=_decode(sources.train_paths, image_size, progress),
        train_labels=torch.tensor(sources.train_labels),
        test_images=_decode(sources.test_paths, image_size),
        test_labels=torch.tensor(sources.test_labels), class_names=list(sources.wnids),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=image_size, wnids=list(sources.wnids),
        source=f"{sources.root}; split: {sources.split}")


# the registry's layouts (mgrb/data/registry.py): their file lists and the layout a message shows
FILE_LISTS = {ILSVRC: imagenet100_files, MINI: miniimagenet_files}
LAYOUTS = {ILSVRC: IMAGENET100_LAYOUT, MINI: MINIIMAGENET_LAYOUT}
