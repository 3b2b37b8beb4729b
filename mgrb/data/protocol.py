"""The class-incremental protocol of docs/method.md section 1: class order, phases, memory split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the phase arithmetic is used without torch (validation, mgrb list)
    import torch

ORDER_NAME = "seed-1993 numpy shuffle (the LUCIR / AANets / PyCIL / FACIL order)"


def class_order(num_classes: int, seed: int = 1993) -> list[int]:
    """Data set class ids in incremental order: the class at position i gets label i.

    RandomState(seed).shuffle draws exactly what `np.random.seed(seed); np.random.shuffle`
    draws, without touching NumPy's global generator.
    """
    order = np.arange(num_classes)
    np.random.RandomState(seed).shuffle(order)
    return order.tolist()


@dataclass(frozen=True)
class PhasePlan:
    """n/m protocol: phase 0 learns `initial` classes, each later phase `increment` more."""

    num_classes: int
    initial: int
    increment: int

    def __post_init__(self):
        if not 0 < self.initial <= self.num_classes:
            raise ValueError(f"initial must be in 1..{self.num_classes}, got {self.initial}")
        if self.initial < self.num_classes and self.increment <= 0:
            raise ValueError("increment must be positive")
        rest = self.num_classes - self.initial
        if self.increment > 0 and rest % self.increment:
            raise ValueError(
                f"the {rest} classes after the first {self.initial} do not divide into "
                f"phases of {self.increment}"
            )

    @property
    def num_phases(self) -> int:
        if self.initial == self.num_classes:
            return 1
        return (self.num_classes - self.initial) // self.increment + 1

    def seen(self, phase: int) -> int:
        """Number of classes seen after `phase` (labels 0 .. seen-1)."""
        return self.initial + phase * self.increment

    def old(self, phase: int) -> int:
        """Number of classes learnt before `phase`."""
        return 0 if phase == 0 else self.seen(phase - 1)


def memory_sizes(num_classes: int, memory_total: int | None, memory_per_class: int | None,
                 holdout_fraction: float) -> tuple[int, int]:
    """(e, v): images kept per class, and how many of them form the balanced hold-out."""
    per_class = memory_per_class if memory_per_class is not None else memory_total // num_classes
    holdout = int(np.floor(holdout_fraction * per_class + 1e-9))
    return per_class, holdout


def memory_shortfall(train_per_class: int, per_class: int, holdout: int) -> str | None:
    """Why a memory that keeps `per_class` images of each old class, `holdout` of them held
    out for stage 2, does not fit classes of `train_per_class` training images; None when it
    does. A new class trains on its images less the hold-out: with none left, phase 0 has no
    training image at all. And no memory keeps more images of a class than it has."""
    if holdout >= train_per_class:
        return ("a new class would have no image left to train on, and the first phase no "
                "training image at all")
    if per_class > train_per_class:
        return "a memory cannot keep more images of a class than the class has"
    return None


# Roles of a training image in the memory split.
HOLDOUT, EXEMPLAR, REST = 0, 1, 2


def memory_roles(labels: torch.Tensor, per_class: int, holdout: int, selection: str = "first",
                 seed: int = 1993) -> torch.Tensor:
    """Role of every training image: HOLDOUT, EXEMPLAR or REST.

    "first" (the original code): within each class, in data set order, the first `holdout`
    images form the balanced hold-out and the next `per_class - holdout` the exemplars.
    "random": the same counts drawn by a seeded permutation.
    """
    import torch

    n = labels.numel()
    if selection == "first":
        position = torch.arange(n)
    elif selection == "random":
        position = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        raise ValueError(f"unknown selection rule {selection!r}")
    # Rank of each image within its class, in `position` order: sort by (label, position).
    key = labels.long() * n + position
    sorted_idx = torch.argsort(key)
    sorted_labels = labels[sorted_idx]
    first_of_class = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    rank = torch.empty(n, dtype=torch.long)
    rank[sorted_idx] = torch.arange(n) - first_of_class
    roles = torch.full((n,), REST, dtype=torch.long)
    roles[rank < per_class] = EXEMPLAR
    roles[rank < holdout] = HOLDOUT
    return roles


@dataclass(frozen=True)
class PhaseSplit:
    train: torch.Tensor  # indices into the training images
    balanced: torch.Tensor  # indices into the training images
    test: torch.Tensor  # indices into the test images


def phase_split(protocol: PhasePlan, phase: int, train_labels: torch.Tensor, roles: torch.Tensor,
                test_labels: torch.Tensor) -> PhaseSplit:
    """Training, balanced and test indices of `phase`; labels are incremental labels."""

    old, seen = protocol.old(phase), protocol.seen(phase)
    new = (train_labels >= old) & (train_labels < seen)
    old_mask = train_labels < old
    train = (new & (roles != HOLDOUT)) | (old_mask & (roles == EXEMPLAR))
    balanced = (train_labels < seen) & (roles == HOLDOUT)
    return PhaseSplit(
        train=train.nonzero().flatten(),
        balanced=balanced.nonzero().flatten(),
        test=(test_labels < seen).nonzero().flatten(),
    )
