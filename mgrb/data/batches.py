"""Batches for training and evaluation.

Every data set is in memory (CIFAR, digits, miniImageNet, and ImageNet-100 read only from the
cache of `mgrb data prepare`): a uint8 tensor on the training device, or in pinned host memory
where the GPU has no room; a batch is an index into it and augmentation runs on the whole batch
at once.
All random draws come from one CPU generator whose state checkpoints carry.
"""

from __future__ import annotations

import torch

from mgrb.data.augment import Augment, augment_drawn, draw, draw_side
from mgrb.devices import indexed, resident_budget


def contiguous_part(count: int, rank: int, world: int) -> slice:
    """Process `rank`'s contiguous part of `count` items split over `world` processes; the
    parts differ in size by at most one."""
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether images of `nbytes` may live on `device`: always on the CPU; on a GPU when they
    fit this run's budget there (mgrb.devices.resident_budget)."""
    budget = resident_budget(device)
    return budget is None or nbytes <= budget


class TensorBatches:
    """Batches from a uint8 image tensor (N, C, S, S): held on the training device when it fits
    (`fits_on`), otherwise in pinned host memory, each batch gathered there and copied while
    the GPU works on the one before. Augmentation and crops run on the batch, on the device.
    `out_size` below S: training crops come out at that size, evaluation takes the centre."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, device, *,
                 out_size: int | None = None, resident: bool | None = None):
        self.device = indexed(device)
        if resident is None:
            resident = fits_on(self.device, images.numel() * images.element_size())
        self.resident = resident
        if resident:
            self.images = images.to(self.device)
        else:
            self.images = images.pin_memory() if self.device.type == "cuda" else images.contiguous()
        self.labels = labels.to(self.device)
        self.out_size = out_size if out_size and out_size != images.shape[-1] else None
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self._staging: list[tuple[torch.Tensor, object]] = []  # pinned buffers, copy-done events

    def __len__(self) -> int:
        return self.labels.numel()

    def batches(self, indices: torch.Tensor, batch_size: int, *, shuffle: bool,
                augment: Augment | None, generator: torch.Generator | None, skip: int = 0,
                part: tuple[int, int] | None = None):
        """Yield (normalised float images, labels); `indices` select the subset.

        `skip` batches are passed over with their random draws replayed, so that a resumed
        epoch yields exactly what the uninterrupted one would have yielded next. `part`
        (rank, world): every batch is drawn whole, and only this process's contiguous part of
        it is gathered and augmented (a run over several processes).
        """
        if shuffle:
            indices = indices[torch.randperm(indices.numel(), generator=generator)]
        starts = range(0, indices.numel(), batch_size)
        thetas = None
        if augment is not None and augment.active:
            # Every batch's draws at once, in batch order, so the generator advances exactly
            # as drawing batch by batch would; then one copy to the device an epoch, because
            # a copy from pageable host memory waits for the GPU to finish its queue.
            size = draw_side(self.images.shape[-1], augment, self.out_size)
            thetas = torch.cat([draw(min(batch_size, indices.numel() - start), size,
                                     augment, generator) for start in starts])
            thetas = thetas.to(self.device)
        on_device = indices.to(self.device)
        for number, start in enumerate(starts):
            if number < skip:
                continue
            end = min(start + batch_size, indices.numel())
            if part is not None:
                mine = contiguous_part(end - start, *part)
                start, end = start + mine.start, start + mine.stop
            # values 0..255 through the augmentation (a resized crop rounds as PIL's uint8
            # passes do), then to 0..1: nearest sampling and zero fill commute with that
            x = self._gather(indices[start:end], on_device[start:end], number).float()
            if thetas is not None and end > start:  # a process's part may be empty
                x = augment_drawn(x, thetas[start:end], augment, out_size=self.out_size)
            elif self.out_size:
                margin = (x.shape[-1] - self.out_size) // 2
                x = x[..., margin:margin + self.out_size, margin:margin + self.out_size]
            yield (x / 255 - self.mean) / self.std, self.labels[on_device[start:end]]

    def _gather(self, chosen: torch.Tensor, chosen_on_device: torch.Tensor,
                number: int) -> torch.Tensor:
        """The batch's uint8 images on the training device. `chosen`: their indices on the
        CPU, `chosen_on_device`: the same on the training device (copied there once an epoch:
        a copy per batch would make the host wait for the device every batch)."""
        if self.resident or self.device.type != "cuda":
            return self.images[chosen_on_device]
        # Two pinned buffers in turn: a batch is gathered into one while the copy from the
        # other may still run; an event says when a buffer's copy is done and it may be reused.
        if len(self._staging) < 2 or self._staging[0][0].shape[0] < chosen.numel():
            shape = (chosen.numel(), *self.images.shape[1:])
            self._staging = [(torch.empty(shape, dtype=torch.uint8).pin_memory(), None) for _ in range(2)]
        buffer, copied = self._staging[number % 2]
        if copied is not None:
            copied.synchronize()
        rows = buffer[:chosen.numel()]
        torch.index_select(self.images, 0, chosen, out=rows)
        batch = rows.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._staging[number % 2] = (buffer, event)
        return batch


def make_batches(images, labels, mean, std, device, image_size: int,
                 num_workers: int | None = None) -> TensorBatches:
    """Batches of an in-memory data set; every data set is one (ImageNet-100 through its
    prepared cache). `num_workers` is not used: no image is decoded while training."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a uint8 tensor, not {type(images).__name__}")
    return TensorBatches(images, labels, mean, std, device, out_size=image_size)
