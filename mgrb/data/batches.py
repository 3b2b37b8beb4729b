"""Batches for training and evaluation.

In-memory data sets (CIFAR, digits, miniImageNet at 84x84) stay a uint8 tensor on the
training device; a batch is an index into it and augmentation runs on the whole batch at
once. File-based data sets (ImageNet-100) go through a DataLoader with PIL transforms.
All random draws come from one CPU generator whose state checkpoints carry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Random crop with zero padding, horizontal flip and rotation, as in docs/method.md section 3."""

    crop_padding: int = 0
    flip: bool = False
    rotation: float = 0.0
    random_resized_crop: bool = False  # ImageNet-100's file pipeline only

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.flip or self.rotation or self.random_resized_crop)


def draw_affine(batch: int, size: int, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """The (B, 2, 3) affine matrices of one batch, drawn on the CPU generator.

    Output O = Rotate(Flip(Shift(I))) as torchvision's RandomCrop -> RandomHorizontalFlip ->
    RandomRotation. Drawing is separate from resampling so that a resumed epoch can replay the
    draws of the batches it skips and continue with exactly the numbers it would have used.
    """
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(augment.rotation)
    sign = torch.ones(batch)
    if augment.flip:
        sign = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    pad = augment.crop_padding
    shift = torch.randint(-pad, pad + 1, (2, batch), generator=generator).float() * 2 / size
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([
        torch.stack([sign * cos, -sign * sin, shift[0]], dim=1),
        torch.stack([sin, cos, shift[1]], dim=1),
    ], dim=1)


def augment_batch(images: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Crop-with-padding, flip and rotation of a float batch (B, C, S, S), drawn now."""
    theta = draw_affine(images.shape[0], images.shape[-1], augment, generator)
    return resample(images, theta.to(images.device, images.dtype))


def resample(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Apply drawn affine matrices to a batch in one resampling: torchvision's crop -> flip ->
    rotate with zero fill, for the same drawn parameters.

    One affine grid with nearest sampling reproduces the three steps (integer shifts land
    exactly on pixel centres), except in the corners: torchvision rotates the cropped frame, so
    what the rotation brings in from outside that frame is zero fill, even where the shifted
    image has pixels. Those points are masked: where the grid minus the crop's shift falls
    outside the frame, under the same nearest rounding as grid_sample's.
    """
    theta = theta.to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    frame = grid - theta[:, None, None, :, 2]
    size = torch.tensor(images.shape[-1:-3:-1], dtype=grid.dtype, device=grid.device)  # (W, H)
    index = torch.round(((frame + 1) * size - 1) / 2)
    inside = ((index >= 0) & (index <= size - 1)).all(dim=-1)
    return out * inside.unsqueeze(1).to(out.dtype)


class TensorBatches:
    """Batches from a uint8 image tensor held on the training device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, device):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return self.labels.numel()

    def batches(self, indices: torch.Tensor, batch_size: int, *, shuffle: bool,
                augment: Augment | None, generator: torch.Generator | None, skip: int = 0):
        """Yield (normalised float images, labels); `indices` select the subset.

        `skip` batches are passed over with their random draws replayed, so that a resumed
        epoch yields exactly what the uninterrupted one would have yielded next.
        """
        if shuffle:
            indices = indices[torch.randperm(indices.numel(), generator=generator)]
        indices = indices.to(self.images.device)
        starts = range(0, indices.numel(), batch_size)
        thetas = None
        if augment is not None and augment.active:
            # Every batch's draws at once, in batch order, so the generator advances exactly
            # as drawing batch by batch would; then one copy to the device an epoch, because
            # a copy from pageable host memory waits for the GPU to finish its queue.
            size = self.images.shape[-1]
            thetas = torch.cat([draw_affine(min(batch_size, indices.numel() - start), size,
                                            augment, generator) for start in starts])
            thetas = thetas.to(self.images.device)
        for number, start in enumerate(starts):
            if number < skip:
                continue
            chosen = indices[start:start + batch_size]
            x = self.images[chosen].float().div_(255)
            if thetas is not None:
                x = resample(x, thetas[start:start + batch_size])
            yield (x - self.mean) / self.std, self.labels[chosen]


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
                augment: Augment | None, generator: torch.Generator | None, skip: int = 0):
        """As TensorBatches.batches. Skipped batches are not decoded; augmentation runs in
        DataLoader workers seeded per epoch, so a resumed epoch sees the same images in the
        same order but not the same random crops (exact only for in-memory data sets)."""
        if shuffle:
            indices = indices[torch.randperm(indices.numel(), generator=generator)]
        subset = torch.utils.data.Subset(
            _ImageFiles(self.paths, self.labels, self._transform(augment)),
            indices[skip * batch_size:].tolist())
        # Worker seeds derive from the run's generator so augmentation follows the run seed.
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator)) if generator else 0
        loader = torch.utils.data.DataLoader(
            subset, batch_size=batch_size, num_workers=self.num_workers,
            pin_memory=torch.device(self.device).type == "cuda",
            generator=torch.Generator().manual_seed(seed), persistent_workers=False)
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def make_batches(images, labels, mean, std, device, image_size: int, num_workers: int):
    if isinstance(images, torch.Tensor):
        return TensorBatches(images, labels, mean, std, device)
    return FileBatches(images, labels, mean, std, device, image_size, num_workers)
