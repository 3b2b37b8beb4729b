"""A CIFAR-100-shaped data set written in torchvision's real on-disk layout, learnable on
purpose, for `make gpu-check`: the trainer reads it through the same loader as the real one.

Each class has a colour and a stripe pattern of its own (orientation and frequency), under
noise, so that a network does learn it within a few epochs and a broken GPU path (wrong
precision, a silent failure to train) shows as accuracy at chance. Superclasses are five
consecutive classes, as CIFAR-100's twenty groups of five.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

CLASSES, SIZE = 100, 32


def class_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 rows of 3 x 32 x 32 (CIFAR's row layout: 1024 red, 1024 green, 1024 blue)."""
    palette = np.random.default_rng(0).uniform(40, 215, size=(CLASSES, 3))
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    angle = labels * (np.pi / 10)                # 10 orientations ...
    frequency = 1 + (labels // 10) % 10          # ... times 10 frequencies: 100 patterns
    phase = (np.cos(angle)[:, None, None] * xs + np.sin(angle)[:, None, None] * ys)
    stripes = 45 * np.sin(2 * np.pi * frequency[:, None, None] * phase)
    images = palette[labels][:, :, None, None] + stripes[:, None]
    images += rng.normal(0, 20, size=images.shape)
    return np.clip(images, 0, 255).astype(np.uint8).reshape(len(labels), -1)


def write_cifar100(root: Path, *, train_per_class: int, test_per_class: int,
                   seed: int = 0) -> Path:
    """<root>/cifar-100-python/{train,test,meta}, as torchvision writes them."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(CLASSES), per_class))
        record = {"filenames": [f"{name}_{i}.png" for i in range(len(labels))],
                  "batch_label": f"synthetic {name}", "fine_labels": labels.tolist(),
                  "coarse_labels": (labels // 5).tolist(), "data": class_images(labels, rng)}
        with open(folder / name, "wb") as handle:
            pickle.dump(record, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"class_{i:02d}" for i in range(CLASSES)],
                     "coarse_label_names": [f"group_{i:02d}" for i in range(CLASSES // 5)]},
                    handle)
    return folder
