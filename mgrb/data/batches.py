"""Batches for training and evaluation.

In-memory data sets (CIFAR, digits, the miniImageNet and ImageNet-100 caches of `mgrb data
prepare`) stay a uint8 tensor on the training device, or in pinned host memory where the GPU
has no room; a batch is an index into it and augmentation runs on the whole batch at once.
ImageNet-100 without a cache goes through a DataLoader with PIL transforms.
All random draws come from one CPU generator whose state checkpoints carry.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mgrb.data.augment import Augment, draw_affine, resample
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
            size = self.images.shape[-1]
            thetas = torch.cat([draw_affine(min(batch_size, indices.numel() - start), size,
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
            x = self._gather(indices[start:end], on_device[start:end], number).float().div_(255)
            if thetas is not None and end > start:  # a process's part may be empty
                x = resample(x, thetas[start:end], out_size=self.out_size,
                             resized=augment.random_resized_crop)
            elif self.out_size:
                margin = (x.shape[-1] - self.out_size) // 2
                x = x[..., margin:margin + self.out_size, margin:margin + self.out_size]
            yield (x - self.mean) / self.std, self.labels[on_device[start:end]]

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


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], labels: torch.Tensor, transform):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


class FileBatches:
    """Batches decoded from image files through a DataLoader (ImageNet-100 at 224x224)."""

    def __init__(self, paths: list[Path], labels: torch.Tensor, mean, std, device,
                 image_size: int = 224, num_workers: int = 8):
        self.paths, self.labels = paths, labels
        self.mean, self.std, self.device = mean, std, device
        self.image_size, self.num_workers = image_size, num_workers

    def __len__(self) -> int:
        return len(self.paths)

    def _transform(self, augment: Augment | None):
        from torchvision import transforms as T

        normalise = [T.ToTensor(), T.Normalize(self.mean, self.std)]
        if augment is None or not augment.active:
            resize = round(self.image_size * 256 / 224)
            return T.Compose([T.Resize(resize), T.CenterCrop(self.image_size), *normalise])
        steps = [T.RandomResizedCrop(self.image_size)] if augment.random_resized_crop else [
            T.Resize(self.image_size), T.CenterCrop(self.image_size)]
        if augment.flip:
            steps.append(T.RandomHorizontalFlip())
        if augment.rotation:
            steps.append(T.RandomRotation(augment.rotation))
        return T.Compose([*steps, *normalise])

    def batches(self, indices: torch.Tensor, batch_size: int, *, shuffle: bool,
                augment: Augment | None, generator: torch.Generator | None, skip: int = 0,
                part: tuple[int, int] | None = None):
        """As TensorBatches.batches. Skipped batches are not decoded; augmentation runs in
        DataLoader workers seeded per epoch, so a resumed epoch sees the same images in the
        same order but not the same random crops (exact only for in-memory data sets)."""
        if shuffle:
            indices = indices[torch.randperm(indices.numel(), generator=generator)]
        chosen = [indices[start:start + batch_size]
                  for start in range(skip * batch_size, indices.numel(), batch_size)]
        if part is not None:
            chosen = [batch[contiguous_part(batch.numel(), *part)] for batch in chosen]
        # Worker seeds derive from the run's generator so augmentation follows the run seed;
        # each process of a run over several adds its rank, so their crops differ.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator else 0
        loader = iter(torch.utils.data.DataLoader(
            _ImageFiles(self.paths, self.labels, self._transform(augment)),
            batch_sampler=[batch.tolist() for batch in chosen if batch.numel()],
            num_workers=self.num_workers, pin_memory=torch.device(self.device).type == "cuda",
            generator=torch.Generator().manual_seed(seed + (part[0] if part else 0)),
            persistent_workers=False))
        for batch in chosen:
            if not batch.numel():  # this process's part of a batch smaller than the processes
                side = self.image_size
                yield (torch.empty((0, 3, side, side), device=self.device),
                       torch.empty(0, dtype=torch.long, device=self.device))
                continue
            x, y = next(loader)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def make_batches(images, labels, mean, std, device, image_size: int, num_workers: int):
    if isinstance(images, torch.Tensor):
        return TensorBatches(images, labels, mean, std, device, out_size=image_size)
    return FileBatches(images, labels, mean, std, device, image_size, num_workers)
