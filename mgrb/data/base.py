"""The in-memory form every data set loader returns.

Loaders return class ids in the data set's own numbering (CIFAR's label, the rank of a
wnid, ...). The protocol, not the loader, maps them to incremental labels through the
seed-1993 class order, so a loader never needs to know the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the data set names and the layout checks are read without torch
    import torch


@dataclass
class ClassIncrementalData:
    name: str
    num_classes: int
    # Either a uint8 tensor (N, C, H, W) held in memory, or a list of image file paths that
    # the trainer decodes through a DataLoader (ImageNet-100 at 224x224 does not fit).
    train_images: torch.Tensor | list[Path]
    train_labels: torch.Tensor  # int64 (N,), data set class ids, in the data set's own order
    test_images: torch.Tensor | list[Path]
    test_labels: torch.Tensor
    class_names: list[str]  # indexed by data set class id
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    wnids: list[str] | None = None  # WordNet ids by class id (ImageNet-derived sets)
    coarse_labels: list[int] | None = None  # superclass by class id (CIFAR-100)
    source: str = ""  # where the data came from, for results.json
    extra: dict = field(default_factory=dict)

    @property
    def in_memory(self) -> bool:
        return not isinstance(self.train_images, list)

    @property
    def channels(self) -> int:
        return self.train_images.shape[1] if self.in_memory else 3

    def train_counts(self) -> torch.Tensor:
        """Training images per data set class id (the n_c of new classes in the CB loss)."""
        import torch

        return torch.bincount(self.train_labels, minlength=self.num_classes)
