"""The fast path's batch augmentation against what torchvision's PIL transforms do: random
crop with zero padding, horizontal flip, rotation (docs/method.md section 3), and the order of the
random draws that a resumed epoch relies on."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from mgrb.data.augment import (Augment, augment_batch, augment_drawn, draw, draw_affine, draw_side,
                               resample)
from mgrb.data.batches import TensorBatches

S = 12


def _images(n=16):
    generator = torch.Generator().manual_seed(3)
    return torch.rand(n, 3, S, S, generator=generator) + 0.1  # no zeros: padding stands out


def _augment(images, augment, seed=0):
    return augment_batch(images, augment, torch.Generator().manual_seed(seed))


def test_crop_with_padding_is_a_window_of_the_zero_padded_image():
    pad = 3
    images = _images()
    out = _augment(images, Augment(crop_padding=pad))
    padded = F.pad(images, (pad, pad, pad, pad))
    offsets = set()
    for image, result in zip(padded, out):
        windows = [(i, j) for i in range(2 * pad + 1) for j in range(2 * pad + 1)
                   if torch.equal(image[:, i:i + S, j:j + S], result)]
        assert windows, "not a window of the padded image"
        offsets.add(windows[0])
    assert len(offsets) > 4  # the offsets vary over the batch


def test_flip_gives_the_image_or_its_mirror_and_both_occur():
    images = _images(32)
    out = _augment(images, Augment(flip=True))
    flipped = [torch.equal(result, image.flip(-1)) for image, result in zip(images, out)]
    kept = [torch.equal(result, image) for image, result in zip(images, out)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < len(images)


def test_rotation_matches_torchvision_rotate_at_the_drawn_angle():
    images = _images(8)
    theta = draw_affine(8, S, Augment(rotation=15), torch.Generator().manual_seed(5))
    out = resample(images, theta)
    for image, result, matrix in zip(images, out, theta):
        degrees = torch.rad2deg(torch.atan2(matrix[1, 0], matrix[1, 1])).item()
        assert abs(degrees) <= 15
        best = max((TF.rotate(image, sign * degrees, InterpolationMode.NEAREST) == result)
                   .float().mean().item() for sign in (1, -1))
        assert best > 0.97  # nearest sampling: a few boundary pixels may round the other way


def _torchvision(image: torch.Tensor, matrix: torch.Tensor, pad: int) -> torch.Tensor:
    """torchvision's RandomCrop(padding=pad) -> RandomHorizontalFlip -> RandomRotation on a PIL
    image, as the original pipeline runs them, at the parameters one affine matrix holds."""
    import numpy as np
    from PIL import Image

    size = image.shape[-1]
    cos, sin = matrix[1, 1].item(), matrix[1, 0].item()
    mirrored = matrix[0, 0].item() * cos < 0
    dx, dy = (round(v * size / 2) for v in matrix[:, 2].tolist())
    picture = Image.fromarray(image.permute(1, 2, 0).numpy())
    picture = TF.crop(TF.pad(picture, pad, fill=0), pad + dy, pad + dx, size, size)
    if mirrored:
        picture = TF.hflip(picture)
    picture = TF.rotate(picture, math.degrees(math.atan2(sin, cos)), InterpolationMode.NEAREST, fill=0)
    return torch.from_numpy(np.array(picture)).permute(2, 0, 1)


@pytest.mark.parametrize("size, pad, degrees", [(32, 4, 15), (8, 1, 10)])  # CIFAR's and the demo's
def test_crop_flip_rotate_equals_torchvision_image_by_image(size, pad, degrees):
    """At least 99.5% of pixels equal on every image (nearest sampling: a point within float
    error of a pixel boundary may round the other way); the corners included, where the
    rotation brings in zero fill from outside the cropped frame."""
    images = (torch.rand(64, 3, size, size, generator=torch.Generator().manual_seed(0)) * 254 + 1)
    images = images.round().to(torch.uint8)  # no zeros: fill stands out
    theta = draw_affine(64, size, Augment(crop_padding=pad, flip=True, rotation=degrees),
                        torch.Generator().manual_seed(1))
    out = resample(images.float(), theta).round().to(torch.uint8)
    equal = torch.stack([(_torchvision(image, matrix, pad) == result).all(dim=0).float().mean()
                         for image, matrix, result in zip(images, theta, out)])
    assert equal.min() >= 0.995, equal.min()
    assert (out == 0).any()  # the draws did reach past the frame: the comparison covers fill


def test_an_epoch_draws_in_batch_order_exactly_as_batch_by_batch_drawing():
    images = (torch.rand(10, 3, S, S, generator=torch.Generator().manual_seed(1)) * 255)
    data = TensorBatches(images.to(torch.uint8), torch.arange(10), (0.5,) * 3, (0.25,) * 3, "cpu")
    augment = Augment(crop_padding=2, flip=True, rotation=10)
    epoch_generator = torch.Generator().manual_seed(7)
    batches = list(data.batches(torch.arange(10), 4, shuffle=True, augment=augment,
                                generator=epoch_generator))

    by_hand = torch.Generator().manual_seed(7)
    order = torch.randperm(10, generator=by_hand)
    for start, (x, y) in zip(range(0, 10, 4), batches):
        chosen = order[start:start + 4]
        expected = augment_batch(data.images[chosen].float() / 255, augment, by_hand)
        assert torch.equal(y, chosen)
        assert torch.allclose(x, (expected - data.mean) / data.std, atol=1e-6)
    assert torch.equal(epoch_generator.get_state(), by_hand.get_state())


@pytest.mark.parametrize("skip", [1, 2])
def test_skipped_batches_leave_the_rest_of_the_epoch_unchanged(skip):
    images = (torch.rand(10, 3, S, S, generator=torch.Generator().manual_seed(1)) * 255)
    data = TensorBatches(images.to(torch.uint8), torch.arange(10), (0.5,) * 3, (0.25,) * 3, "cpu")
    augment = Augment(crop_padding=2, flip=True, rotation=10)

    def epoch(skip_count):
        return list(data.batches(torch.arange(10), 4, shuffle=True, augment=augment,
                                 generator=torch.Generator().manual_seed(7), skip=skip_count))

    full, resumed = epoch(0), epoch(skip)
    assert len(resumed) == len(full) - skip
    for (x, y), (x2, y2) in zip(full[skip:], resumed):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_random_resized_crop_boxes_follow_torchvisions_rules():
    theta = draw_affine(4000, 256, Augment(random_resized_crop=True), torch.Generator().manual_seed(2))
    width, height = theta[:, 0, :2].norm(dim=1) * 256, theta[:, 1, :2].norm(dim=1) * 256
    assert torch.allclose(width, width.round(), atol=1e-3) and torch.allclose(height, height.round(), atol=1e-3)
    left = ((theta[:, 0, 2] + 1) * 256 - width) / 2
    top = ((theta[:, 1, 2] + 1) * 256 - height) / 2
    assert (left > -1e-3).all() and (top > -1e-3).all()
    assert (left + width < 256 + 1e-3).all() and (top + height < 256 + 1e-3).all()
    share = width * height / 256 ** 2
    whole = share > 0.999
    ratio = width[~whole] / height[~whole]
    assert share.min() > 0.07 and ratio.min() > 0.74 and ratio.max() < 1.34
    assert whole.float().mean() < 0.05  # the whole image: a drawn full box or the fallback


def _photo_like(n: int, size: int, seed: int) -> torch.Tensor:
    """uint8 images (n, 3, size, size) of realistic content: smooth colour fields, half of
    them with texture (fine noise and stripes) on top."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=generator) * 200 + 30
    images = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    grid = torch.arange(size, dtype=torch.float32)
    stripes = 25 * torch.sin(grid[:, None] * 0.7 + grid[None, :] * 0.3)
    noise = torch.randn(n // 2, 3, size, size, generator=generator) * 20
    images[: n // 2] += noise + stripes
    return images.round().clamp(0, 255).to(torch.uint8)


def _pil_reference(image: torch.Tensor, draws: torch.Tensor, out: int, squash: bool):
    """The original's transforms (code/LoadImagenet100.py) on a PIL image at the drawn box,
    flip and angle: [Resize([out, out])] -> resized crop (bilinear, antialiased) -> hflip ->
    rotate (nearest, zero fill). Returns the result, and whether the one-call
    TF.resized_crop of the installed Pillow agreed with the resize run as the original's
    Pillow runs it (horizontal pass, then vertical), where that Pillow keeps that order."""
    import numpy as np
    from PIL import Image

    picture = Image.fromarray(image.permute(1, 2, 0).numpy())
    if squash:
        picture = TF.resize(picture, [out, out], InterpolationMode.BILINEAR, antialias=True)
    left, top, width, height = (int(v) for v in draws[2:].tolist())
    crop = TF.crop(picture, top, left, height, width)
    # Pillow 13 runs the vertical pass first where the height shrinks by more than twice what
    # the width does (Resample.c); Pillow before it, as the original ran, always horizontal
    # first: two one-axis resizes give that order on any Pillow.
    resized = TF.resize(TF.resize(crop, [height, out], InterpolationMode.BILINEAR, antialias=True),
                        [out, out], InterpolationMode.BILINEAR, antialias=True)
    vertical_first = height - out > 0 and height - out > 2 * (width - out)
    agreed = None
    if not vertical_first:
        one_call = TF.resized_crop(picture, top, left, height, width, [out, out],
                                   InterpolationMode.BILINEAR, antialias=True)
        agreed = np.array_equal(np.array(one_call), np.array(resized))
    if draws[1].item() < 0:
        resized = TF.hflip(resized)
    rotated = TF.rotate(resized, math.degrees(draws[0].item()), InterpolationMode.NEAREST, fill=0)
    return torch.from_numpy(np.array(rotated)).permute(2, 0, 1), agreed


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_random_resized_crop_flip_rotate_equals_torchvision_image_by_image(stage):
    """ImageNet-100's transforms (code/LoadImagenet100.py) on 256 images of 256x256, 3 seeds:
    at least 99.5% of pixels equal (all channels, before normalisation) on every image,
    against torchvision on PIL images at the same drawn box, flip and angle. Stage 1: the box
    of the 256 image resized to 224; stage 2: every image squashed to 224 first, the box
    drawn on that."""
    count, side, out = 256, 256, 224
    images = _photo_like(count, side, seed=11)
    squash = stage == "stage2"
    augment = Augment(random_resized_crop=True, flip=True, rotation=15, resize_first=squash)
    worst_seed, means, agreements = [], [], []
    for seed in (0, 1, 2):
        draws = draw(count, draw_side(side, augment, out), augment, torch.Generator().manual_seed(seed))
        equal = []
        for chunk in range(0, count, 64):
            ours = augment_drawn(images[chunk:chunk + 64].float(), draws[chunk:chunk + 64],
                                 augment, out_size=out)
            assert torch.equal(ours, ours.round()) and ours.min() >= 0 and ours.max() <= 255
            for image, row, result in zip(images[chunk:chunk + 64], draws[chunk:chunk + 64], ours):
                expected, agreed = _pil_reference(image, row, out, squash)
                equal.append((expected == result.to(torch.uint8)).all(dim=0).float().mean().item())
                if agreed is not None:
                    agreements.append(agreed)
        equal = torch.tensor(equal)
        worst_seed.append(equal.min().item())
        means.append(equal.mean().item())
        print(f"{stage} seed {seed}: pixels equal, worst image {equal.min().item():.5f}, "
              f"mean {equal.mean().item():.6f}, images all equal {(equal == 1).float().mean().item():.3f}")
    print(f"{stage}: worst image of the worst seed {min(worst_seed):.5f}, mean {sum(means) / 3:.6f}")
    assert min(worst_seed) >= 0.995, worst_seed
    assert all(agreements) and len(agreements) > count  # the installed Pillow's one call agrees


def test_host_held_images_give_the_batches_device_held_ones_give():
    """Where the GPU has no room the images stay in (pinned) host memory and each batch is
    gathered there: the same batches, draws and all (here both on the CPU)."""
    images = (torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    augment = Augment(random_resized_crop=True, flip=True, rotation=15)

    def epoch(resident):
        data = TensorBatches(images, torch.arange(10), (0.5,) * 3, (0.25,) * 3, "cpu", out_size=12,
                             resident=resident)
        return list(data.batches(torch.arange(10), 4, shuffle=True, augment=augment,
                                 generator=torch.Generator().manual_seed(7)))

    held, gathered = epoch(True), epoch(False)
    assert [x.shape for x, _ in held] == [(4, 3, 12, 12), (4, 3, 12, 12), (2, 3, 12, 12)]
    for (x, y), (x2, y2) in zip(held, gathered):
        assert torch.equal(x, x2) and torch.equal(y, y2)


def test_evaluation_of_a_larger_cache_takes_the_centre_crop():
    """ImageNet-100's evaluation: the centre 224 of the 256x256 image (here 12 of 16)."""
    images = (torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    data = TensorBatches(images, torch.arange(3), (0.0,) * 3, (1.0,) * 3, "cpu", out_size=12)
    ((x, _),) = data.batches(torch.arange(3), 8, shuffle=False, augment=None, generator=None)
    assert torch.equal(x, images[..., 2:14, 2:14].float() / 255)


@pytest.mark.parametrize("augment", [Augment(random_resized_crop=True, flip=True, rotation=15),
                                     Augment(crop_padding=4, flip=True, rotation=15)])
def test_the_batches_draws_are_draw_affines_numbers_in_the_same_order(augment):
    """`draw` (what the batches apply) and `draw_affine` take the same numbers from the
    generator, so resumed epochs replay them alike."""
    first, second = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    draws, theta = draw(50, 256, augment, first), draw_affine(50, 256, augment, second)
    assert torch.equal(first.get_state(), second.get_state())
    if augment.random_resized_crop:
        left, top, width, height = draws[:, 2:].T
        assert torch.allclose(theta[:, 0, 2], (2 * left + width) / 256 - 1)
        assert torch.allclose(theta[:, 1, :2].norm(dim=1), height / 256)
        assert torch.allclose(torch.atan2(theta[:, 1, 0], theta[:, 1, 1]), draws[:, 0], atol=1e-6)
    else:
        assert torch.equal(draws.view(-1, 2, 3), theta)
