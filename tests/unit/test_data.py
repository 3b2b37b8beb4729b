"""Loaders on small files written in the real on-disk formats (no download)."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from mgrb.data import data_present, load_dataset
from mgrb.data.cifar import load_cifar
from mgrb.data.digits import load_digits_data
from mgrb.data.folder import (IMAGENET100_SHA256, imagenet100_files, imagenet100_wnids,
                              load_miniimagenet)
from mgrb.errors import DataError


def _records(labels, marker_label=None):
    """CIFAR records: 3072 bytes, R plane then G then B, each 32x32 row-major."""
    data = np.zeros((len(labels), 3072), dtype=np.uint8)
    data[:, 0] = np.arange(len(labels))  # R at (0, 0) numbers the image
    data[:, 1024 + 32 * 5 + 7] = 200  # G at row 5, column 7
    return data


def write_cifar10(root, per_class=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    labels = [c for c in range(10) for _ in range(per_class)]
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as handle:
            pickle.dump({b"data": _records(labels), b"labels": labels}, handle)
    with open(folder / "test_batch", "wb") as handle:
        pickle.dump({b"data": _records(labels[:10]), b"labels": labels[:10]}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, handle)
    return folder


def write_cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = list(range(100)) * 2
    coarse = [f // 5 for f in fine]
    for name, n in (("train", 200), ("test", 100)):
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": _records(fine[:n]), "fine_labels": fine[:n],
                         "coarse_labels": coarse[:n]}, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)],
                     "coarse_label_names": [f"s{i}" for i in range(20)]}, handle)
    return folder


def test_cifar10_pixels_and_labels(tmp_path):
    write_cifar10(tmp_path)
    data = load_cifar(tmp_path, 10)
    assert data.train_images.shape == (100, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (10, 3, 32, 32)
    assert data.train_images[3, 0, 0, 0] == 3 and data.train_images[0, 1, 5, 7] == 200
    assert data.train_labels[:4].tolist() == [0, 0, 1, 1]
    assert data.class_names[:2] == ["c0", "c1"] and data.coarse_labels is None
    # the cifar-10-batches-py folder itself works as root too
    assert load_cifar(tmp_path / "cifar-10-batches-py", 10).train_labels.numel() == 100


def test_cifar100_superclasses(tmp_path):
    write_cifar100(tmp_path)
    data = load_dataset("cifar100", tmp_path)
    assert data.num_classes == 100 and data.coarse_labels[:6] == [0, 0, 0, 0, 0, 1]
    assert data.mean == (0.5071, 0.4866, 0.4409)


def test_missing_cifar_names_the_layout(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_cifar(tmp_path, 10)


def test_corrupt_cifar_record_is_refused(tmp_path):
    folder = write_cifar10(tmp_path)
    with open(folder / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(DataError, match="data_batch_3: records of"):
        load_cifar(tmp_path, 10)
    (folder / "data_batch_2").write_bytes(b"\x80garbage")
    with pytest.raises(DataError, match="data_batch_2: unreadable"):
        load_cifar(tmp_path, 10)


def test_digits_split_and_range():
    data = load_digits_data()
    assert torch.bincount(data.test_labels).tolist() == [30] * 10
    assert data.train_images.shape[1:] == (1, 8, 8) and data.train_images.max() == 255
    assert len(data.train_labels) + len(data.test_labels) == 1797


def _image_tree(root, wnids, per_class):
    for index, wnid in enumerate(wnids):
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            colour = (index * 40 % 256, i * 30 % 256, 7)
            Image.new("RGB", (20, 16), colour).save(root / wnid / f"img{i:02d}.png")


def test_miniimagenet_single_folder_split(tmp_path):
    wnids = ["n02", "n01", "n03"]
    _image_tree(tmp_path / "mini", wnids, 6)
    data = load_miniimagenet(tmp_path / "mini", image_size=12, verify_classes=False)
    assert data.wnids == ["n01", "n02", "n03"]  # class id = rank in sorted order
    assert data.train_images.shape == (15, 3, 12, 12) and data.test_images.shape == (3, 3, 12, 12)
    assert data.train_labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    # the sixth image (img05) of each class is its test image: green = 5 * 30
    assert data.test_images[:, 1, 0, 0].tolist() == [150, 150, 150]


def test_miniimagenet_own_split_and_checks(tmp_path):
    _image_tree(tmp_path / "m" / "train", ["n01", "n02"], 3)
    _image_tree(tmp_path / "m" / "test", ["n01", "n02"], 2)
    data = load_miniimagenet(tmp_path / "m", image_size=8, verify_classes=False)
    assert len(data.train_labels) == 6 and len(data.test_labels) == 4
    with pytest.raises(DataError, match="not the 100 expected classes"):
        load_miniimagenet(tmp_path / "m", image_size=8)
    (tmp_path / "m" / "train" / "n01" / "img00.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="img00.png: not a readable image"):
        load_miniimagenet(tmp_path / "m", image_size=8, verify_classes=False)


def test_imagenet100_class_ids_follow_the_resource_file(tmp_path):
    wnids = imagenet100_wnids()
    assert hashlib.sha256("\n".join(sorted(wnids)).encode()).hexdigest() == IMAGENET100_SHA256
    for split in ("train", "val"):
        for wnid in wnids:
            (tmp_path / split / wnid).mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(tmp_path / split / wnid / "a.JPEG", "JPEG")
    sources = imagenet100_files(tmp_path.parent / tmp_path.name)
    assert sources.train_labels == list(range(100))
    assert sources.train_paths[0].parent.name == wnids[0] == "n03710193"
    with pytest.raises(DataError, match="mgrb data prepare imagenet100"):  # read only from the cache
        load_dataset("imagenet100", tmp_path)
    (tmp_path / "val" / wnids[7] / "a.JPEG").unlink()
    (tmp_path / "val" / wnids[7]).rmdir()
    with pytest.raises(DataError, match=f"val/{wnids[7]}"):
        imagenet100_files(tmp_path)


def test_data_present(tmp_path):
    assert data_present("digits") and not data_present("cifar10", tmp_path)
    write_cifar10(tmp_path)
    assert data_present("cifar10", tmp_path) and not data_present("miniimagenet", tmp_path)


def test_mgrb_data_checks_and_explains(tmp_path, capsys):
    from mgrb.cli import main

    assert main(["data", "--root", str(tmp_path), "--no-download"]) == 0
    out = capsys.readouterr().out
    assert "cifar10: missing" in out and "<root>/imagenet100/train/<wnid>/*.JPEG" in out
    write_cifar10(tmp_path)  # a present but incomplete copy is reported, with status 1
    assert main(["data", "--root", str(tmp_path), "--no-download"]) == 1
    assert "cifar10: unexpected size 100 train / 10 test images" in capsys.readouterr().out
