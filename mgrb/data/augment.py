"""Augmentation of a whole batch on the training device (docs/method.md section 3): the
parameters are drawn on the CPU generator, apart from the resampling, so that a resumed epoch
can replay the draws of the batches it skips."""

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
    # ImageNet-100's stage 2 (the original's code/LoadImagenet100.py, its transform of the
    # balanced set: Resize([224, 224]) before RandomResizedCrop): every image squashed to the
    # output side first, the box then drawn on that. Set by the trainer, not the config.
    resize_first: bool = False

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.flip or self.rotation or self.random_resized_crop)


def _draw(batch: int, size: int, augment: Augment, generator: torch.Generator):
    """Angle, flip sign, half sides and centre (each (2, B)) and, for a random resized crop,
    its box (4, B): the draws in the one order that resumed epochs replay."""
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(augment.rotation)
    sign = torch.ones(batch)
    if augment.flip:
        sign = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
    box = None
    if augment.random_resized_crop:
        box = draw_box(batch, size, generator)
        half, centre = _frame(box, size)
    else:
        pad = augment.crop_padding
        half = torch.ones(2, batch)
        centre = torch.randint(-pad, pad + 1, (2, batch), generator=generator).float() * 2 / size
    return angle, sign, half, centre, box


def _matrix(angle, sign, half, centre) -> torch.Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([
        torch.stack([half[0] * sign * cos, -half[0] * sign * sin, centre[0]], dim=1),
        torch.stack([half[1] * sin, half[1] * cos, centre[1]], dim=1),
    ], dim=1)


def draw_affine(batch: int, size: int, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """The (B, 2, 3) affine matrices of one batch, drawn on the CPU generator; they map the
    output frame, in grid_sample's normalised coordinates, into the source image of side `size`.

    Output O = Rotate(Flip(Crop(I))) as torchvision's RandomCrop (or RandomResizedCrop) ->
    RandomHorizontalFlip -> RandomRotation. Drawing is separate from resampling so that a
    resumed epoch can replay the draws of the batches it skips and continue with exactly the
    numbers it would have used. (The batches take `draw`'s form of the same draws.)
    """
    angle, sign, half, centre, _ = _draw(batch, size, augment, generator)
    return _matrix(angle, sign, half, centre)


def draw(batch: int, size: int, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """One batch's draws as `augment_drawn` applies them, (B, 6), drawn exactly as
    `draw_affine` draws (the same numbers, in the same order): the affine matrix flattened;
    for a random resized crop, the angle (radians, counter-clockwise), the flip's sign (-1:
    flipped) and the box: left, top, width, height in pixels of the side-`size` image."""
    angle, sign, half, centre, box = _draw(batch, size, augment, generator)
    if box is None:
        return _matrix(angle, sign, half, centre).flatten(1)
    return torch.cat([angle[:, None], sign[:, None], box.T], dim=1)


def draw_box(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop boxes for a square image of side `size`: left, top,
    width, height in pixels, (4, B).

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
    return torch.stack([left, top, w, h])


def _frame(box: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    left, top, w, h = box
    half = torch.stack([w / size, h / size])
    centre = torch.stack([(2 * left + w) / size - 1, (2 * top + h) / size - 1])
    return half, centre


def draw_resized_crop(batch: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`draw_box`'s boxes as (half width, half height) and centre in normalised coordinates,
    each (2, B)."""
    return _frame(draw_box(batch, size, generator), size)


def augment_batch(images: torch.Tensor, augment: Augment, generator: torch.Generator,
                  out_size: int | None = None) -> torch.Tensor:
    """Crop, flip and rotation of a float batch (B, C, S, S), drawn now (for a random resized
    crop, values 0..255: its resizing rounds as PIL's uint8 passes do)."""
    draws = draw(images.shape[0], draw_side(images.shape[-1], augment, out_size), augment, generator)
    return augment_drawn(images, draws.to(images.device), augment, out_size=out_size)


def draw_side(side: int, augment: Augment, out_size: int | None) -> int:
    """The side of the image the boxes are drawn on: the output's after `resize_first`."""
    return out_size or side if augment.random_resized_crop and augment.resize_first else side


def augment_drawn(images: torch.Tensor, draws: torch.Tensor, augment: Augment, *,
                  out_size: int | None = None) -> torch.Tensor:
    """Apply `draw`'s draws (on the images' device) to a float batch (B, C, S, S) into out_size
    x out_size (default S).

    Crop with padding, flip and rotation: one nearest resampling (`resample`). A random
    resized crop, as the original's torchvision transforms on PIL images do it
    (code/LoadImagenet100.py): the box resized to the output side by PIL's antialiased
    bilinear resize (`resize_like_pil`; values 0..255, rounded as its uint8 passes), then
    flip and PIL's nearest rotation with zero fill on that frame (`rotate_like_pil`); with
    `resize_first`, every image squashed to the output side first, the same way."""
    if not augment.random_resized_crop:
        return resample(images, draws.reshape(-1, 2, 3).to(images.dtype), out_size=out_size)
    side = out_size or images.shape[-1]
    if augment.resize_first:
        images = resize_like_pil(images, None, side)
    return rotate_like_pil(resize_like_pil(images, draws[:, 2:], side), draws[:, 0], draws[:, 1])


def rotate_like_pil(images: torch.Tensor, angle: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """torchvision's hflip (where `sign` < 0) then rotate(degrees(angle), NEAREST, fill=0) on PIL
    images, exactly: Image.rotate's matrix about the centre (w / 2, h / 2), its cosine and
    sine rounded to 15 decimals, applied as Pillow's src/libImaging/Geometry.c affine_fixed
    does, in 16.16 fixed point from the pixel centres, the source pixel the floor of the
    coordinate, zero outside. (grid_sample's float nearest sampling differs from it on about
    0.1% of a 224x224 frame's pixels: those whose source lies within 1e-3 of a pixel edge.)
    `images` (B, C, H, W), `angle` and `sign` (B,) on their device; tensor ops only."""
    batch, channels, height, width = images.shape
    turn = -angle.double()
    cos, sin = torch.round(torch.cos(turn), decimals=15), torch.round(torch.sin(turn), decimals=15)
    cx, cy = width / 2, height / 2
    a = [cos, sin, cos * -cx + sin * -cy + 0.0 + cx, -sin, cos, -sin * -cx + cos * -cy + 0.0 + cy]

    def fixed(value):  # Geometry.c's FIX
        return torch.floor(value * 65536.0 + 0.5).long()[:, None, None]

    a0, a1, a3, a4 = fixed(a[0]), fixed(a[1]), fixed(a[3]), fixed(a[4])
    a2, a5 = fixed(a[2] + a[0] * 0.5 + a[1] * 0.5), fixed(a[5] + a[3] * 0.5 + a[4] * 0.5)
    x = torch.arange(width, device=images.device)[None, None, :]
    y = torch.arange(height, device=images.device)[None, :, None]
    source_x = torch.div(a2 + y * a1 + x * a0, 65536, rounding_mode="floor")
    source_y = torch.div(a5 + y * a4 + x * a3, 65536, rounding_mode="floor")
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    source_x = torch.where(sign[:, None, None] < 0, width - 1 - source_x, source_x)  # the flip
    index = (source_y.clamp(0, height - 1) * width + source_x.clamp(0, width - 1)).view(batch, 1, -1)
    out = images.reshape(batch, channels, -1).gather(2, index.expand(-1, channels, -1))
    return out.view(images.shape) * inside.unsqueeze(1).to(images.dtype)


PRECISION_BITS = 22          # Pillow's Resample.c: 32 - 8 - 2 fractional bits of its coefficients
_SPLIT = 2 ** 11             # coefficients split in two parts of at most 11 bits


def _pil_coefficients(start: torch.Tensor, length: torch.Tensor, in_size: int,
                      out_size: int) -> torch.Tensor:
    """The fixed-point coefficients of PIL's bilinear resize of [start, start + length) of an
    axis of `in_size` pixels (a crop, then resized) to `out_size`, per image: (B, 2 * out,
    in_size) float32, high parts (multiples of 2^11) then low parts, exact in float32 and TF32.

    As Pillow's src/libImaging/Resample.c precompute_coeffs and normalize_coeffs_8bpc compute
    them, in float64: scale = length / out, the triangle filter widened by max(scale, 1) (the
    antialiasing), centre = (i + 0.5) * scale, the window [trunc(centre - support + 0.5),
    trunc(centre + support + 0.5)) clamped to the crop, weights normalised, then rounded to
    integers of 2^22. Built from the box tensors where they are: no host reads."""
    device = length.device
    start, length = start.double()[:, None], length.double()[:, None]
    scale = length / out_size
    filterscale = scale.clamp(min=1.0)
    support = filterscale  # the bilinear filter's support is 1
    taps = 2 * math.ceil(max(in_size / out_size, 1.0)) + 1  # Resample.c's ksize at most
    centre = (torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * scale
    low = torch.trunc(centre - support + 0.5).clamp(min=0)
    high = torch.minimum(torch.trunc(centre + support + 0.5), length)
    x = low[..., None] + torch.arange(taps, device=device, dtype=torch.float64)
    weight = (1 - ((x - centre[..., None] + 0.5) * (1.0 / filterscale[..., None])).abs()).clamp(min=0)
    weight = torch.where(x < high[..., None], weight, 0.0)
    total = weight.sum(dim=-1, keepdim=True)
    weight = torch.where(total != 0, weight / total, weight)
    fixed = torch.floor(weight * 2 ** PRECISION_BITS + 0.5)
    upper = torch.floor(fixed / _SPLIT)
    parts = torch.cat([upper, fixed - upper * _SPLIT], dim=1).float()
    index = (x + start[..., None]).clamp(max=in_size - 1).long().repeat(1, 2, 1)
    dense = torch.zeros(parts.shape[0], 2 * out_size, in_size, device=device)
    return dense.scatter_add_(2, index, parts)


def _resize_last_axis(images: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """One of PIL's 8-bit passes along the last axis: (B, C, R, In) -> (B, C, R, Out), each
    value (sum of pixel x coefficient + 2^21) >> 22, clamped to 0..255, exactly."""
    batch, channels, rows, _ = images.shape
    out = coefficients.shape[1] // 2
    sums = torch.matmul(images.reshape(batch, channels * rows, -1), coefficients.transpose(1, 2))
    # both parts' sums are integers below 2^24: exact in float32, so is their total in int32
    upper, lower = sums.to(torch.int32).split(out, dim=-1)
    value = (upper * _SPLIT + lower + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS
    return value.clamp(0, 255).to(images.dtype).reshape(batch, channels, rows, out)


def resize_like_pil(images: torch.Tensor, box: torch.Tensor | None, out_size: int) -> torch.Tensor:
    """PIL's Image.resize((out, out), BILINEAR) of each image's box (B, 4: left, top, width,
    height in pixels; None: the whole image) cropped first, as torchvision's resized_crop does
    on PIL images: antialiased, horizontal pass then vertical, each rounded to uint8 as Pillow's
    fixed-point passes (Resample.c). `images`: float values 0..255, (B, C, S, S); batched
    matrix products with per-image coefficient matrices, on the images' device."""
    batch, side = images.shape[0], images.shape[-1]
    if box is None:
        box = images.new_zeros(batch, 4)  # built where the images are: no copy to wait for
        box[:, 2:] = side
    left, top, width, height = box.unbind(1)
    with torch.autocast(images.device.type, enabled=False):  # the exact float32 products
        across = _resize_last_axis(images.float(), _pil_coefficients(left, width, side, out_size))
        down = _resize_last_axis(across.transpose(-1, -2), _pil_coefficients(top, height, side, out_size))
    return down.transpose(-1, -2).to(images.dtype)


def resample(images: torch.Tensor, theta: torch.Tensor, *, out_size: int | None = None) -> torch.Tensor:
    """Apply drawn affine matrices to a batch in one nearest resampling: torchvision's crop ->
    flip -> rotate with zero fill, for the same drawn parameters, into out_size x out_size
    (default: the source's size).

    One affine grid reproduces the three steps (with nearest sampling, integer shifts land
    exactly on pixel centres), except in the corners: torchvision rotates the cropped frame, so
    what the rotation brings in from outside that frame is zero fill, even where the image
    has pixels. Those points are masked: where the grid, taken back through the crop (minus
    its centre), falls outside the output frame, under the same nearest rounding as
    grid_sample's. (A random resized crop is resized first, `resize_like_pil`; its flip and
    rotation come here with no crop.)
    """
    theta = theta.to(images.dtype)
    batch, channels = images.shape[:2]
    shape = [batch, channels, out_size, out_size] if out_size else list(images.shape)
    grid = F.affine_grid(theta, shape, align_corners=False)
    out = F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    frame = grid - theta[:, None, None, :, 2]
    inside = None
    for axis, size in enumerate(shape[:-3:-1]):  # x against the width, y against the height
        # Python numbers, not a tensor of sizes: building one on the device is a copy the
        # host waits for, every batch
        index = torch.round(((frame[..., axis] + 1) * size - 1) / 2)
        fits = (index >= 0) & (index <= size - 1)
        inside = fits if inside is None else inside & fits
    return out * inside.unsqueeze(1).to(out.dtype)
