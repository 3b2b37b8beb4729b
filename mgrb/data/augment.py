"""Augmentation of a whole batch in one resampling on the training device (docs/method.md
section 3): the parameters are drawn on the CPU generator, apart from the resampling, so that
a resumed epoch can replay the draws of the batches it skips."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


RESIZED_CROP_SCALE = (0.08, 1.0)           # torchvision RandomResizedCrop's defaults
RESIZED_CROP_RATIO = (3 / 4, 4 / 3)
RESIZED_CROP_ATTEMPTS = 10


@dataclass(frozen=True)
class Augment:
    """Random crop with zero padding (or a random resized crop), horizontal flip and rotation,
    as in docs/method.md section 3."""

    crop_padding: int = 0
    flip: bool = False
    rotation: float = 0.0
    random_resized_crop: bool = False  # ImageNet-100: a box of the 256x256 image, resized to 224

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.flip or self.rotation or self.random_resized_crop)


def draw_affine(batch: int, size: int, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """The (B, 2, 3) affine matrices of one batch, drawn on the CPU generator; they map the
    output frame, in grid_sample's normalised coordinates, into the source image of side `size`.

    Output O = Rotate(Flip(Crop(I))) as torchvision's RandomCrop (or RandomResizedCrop) ->
    RandomHorizontalFlip -> RandomRotation. Drawing is separate from resampling so that a
    resumed epoch can replay the draws of the batches it skips and continue with exactly the
    numbers it would have used.
    """
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(augment.rotation)
    sign = torch.ones(batch)
    if augment.flip:
        sign = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    if augment.random_resized_crop:
        half, centre = draw_resized_crop(batch, size, generator)
    else:
        pad = augment.crop_padding
        half = torch.ones(2, batch)
        centre = torch.randint(-pad, pad + 1, (2, batch), generator=generator).float() * 2 / size
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([
        torch.stack([half[0] * sign * cos, -half[0] * sign * sin, centre[0]], dim=1),
        torch.stack([half[1] * sin, half[1] * cos, centre[1]], dim=1),
    ], dim=1)


def draw_resized_crop(batch: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's RandomResizedCrop boxes for a square image of side `size`, as (half width,
    half height) and centre in normalised coordinates, each (2, B).

    Each image takes the first of ten attempts whose box fits: area a uniform share of the
    image in [0.08, 1], aspect ratio log-uniform in [3/4, 4/3], sides rounded to pixels, the
    corner uniform over the places the box fits; with no fitting attempt, the whole image
    (torchvision's fallback for a square image). All attempts are drawn at once.
    """
    shape = (batch, RESIZED_CROP_ATTEMPTS)
    area = size * size * torch.empty(shape).uniform_(*RESIZED_CROP_SCALE, generator=generator)
    log_ratio = torch.empty(shape).uniform_(*(math.log(r) for r in RESIZED_CROP_RATIO), generator=generator)
    corner = torch.rand((2, *shape), generator=generator)
    width = torch.sqrt(area * torch.exp(log_ratio)).round()
    height = torch.sqrt(area / torch.exp(log_ratio)).round()
    fits = (width > 0) & (width <= size) & (height > 0) & (height <= size)
    first = torch.where(fits.any(dim=1), fits.float().argmax(dim=1), -1)
    pick = first.clamp(min=0).unsqueeze(1)
    w, h = width.gather(1, pick).squeeze(1), height.gather(1, pick).squeeze(1)
    left = (corner[0].gather(1, pick).squeeze(1) * (size - w + 1)).floor()
    top = (corner[1].gather(1, pick).squeeze(1) * (size - h + 1)).floor()
    whole = first < 0
    w, h = torch.where(whole, float(size), w), torch.where(whole, float(size), h)
    left, top = torch.where(whole, 0.0, left), torch.where(whole, 0.0, top)
    half = torch.stack([w / size, h / size])
    centre = torch.stack([(2 * left + w) / size - 1, (2 * top + h) / size - 1])
    return half, centre


def augment_batch(images: torch.Tensor, augment: Augment, generator: torch.Generator,
                  out_size: int | None = None) -> torch.Tensor:
    """Crop, flip and rotation of a float batch (B, C, S, S), drawn now."""
    theta = draw_affine(images.shape[0], images.shape[-1], augment, generator)
    return resample(images, theta.to(images.device, images.dtype), out_size=out_size,
                    resized=augment.random_resized_crop)


def resample(images: torch.Tensor, theta: torch.Tensor, *, out_size: int | None = None,
             resized: bool = False) -> torch.Tensor:
    """Apply drawn affine matrices to a batch in one resampling: torchvision's crop -> flip ->
    rotate with zero fill, for the same drawn parameters, into out_size x out_size (default:
    the source's size).

    One affine grid reproduces the three steps (with nearest sampling, integer shifts land
    exactly on pixel centres), except in the corners: torchvision rotates the cropped frame, so
    what the rotation brings in from outside that frame is zero fill, even where the image
    has pixels. Those points are masked: where the grid, taken back through the crop (minus
    its centre, over its half sides: the rows' norms), falls outside the output frame, under
    the same nearest rounding as grid_sample's. A random resized crop (`resized`) samples
    bilinearly, as torchvision resizes the box; its rotation then samples that once more
    (nearest): the one resampling here differs from the two by interpolation only. (Only a
    resized crop's rows are scaled: dividing unscaled ones by their norm, 1 within rounding,
    could move a point across a pixel boundary.)
    """
    theta = theta.to(images.dtype)
    batch, channels = images.shape[:2]
    shape = [batch, channels, out_size, out_size] if out_size else list(images.shape)
    grid = F.affine_grid(theta, shape, align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear" if resized else "nearest", padding_mode="zeros",
                        align_corners=False)
    frame = grid - theta[:, None, None, :, 2]
    if resized:
        frame = frame / theta[:, None, None, :, :2].norm(dim=-1)
    inside = None
    for axis, size in enumerate(shape[:-3:-1]):  # x against the width, y against the height
        # Python numbers, not a tensor of sizes: building one on the device is a copy the
        # host waits for, every batch
        index = torch.round(((frame[..., axis] + 1) * size - 1) / 2)
        fits = (index >= 0) & (index <= size - 1)
        inside = fits if inside is None else inside & fits
    return out * inside.unsqueeze(1).to(out.dtype)
