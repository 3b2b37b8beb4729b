"""The fast path's batch augmentation against what torchvision's PIL transforms do: random
crop with zero padding, horizontal flip, rotation (docs/method.md section 3), and the order of the
random draws that a resumed epoch relies on."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from mgrb.data.augment import Augment, augment_batch, draw_affine, resample
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


def _smooth(n: int, size: int) -> torch.Tensor:
    """Images without fine detail, so that bilinear and nearest sampling nearly agree."""
    coarse = torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(4)) * 200 + 40
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(1, 255)


def test_random_resized_crop_flip_rotate_follows_torchvision_image_by_image():
    """One bilinear resampling against torchvision's resized_crop (bilinear) -> hflip -> rotate
    (nearest, zero fill) at the same drawn box, flip and angle: the zero-filled corners agree,
    and the pixels differ by interpolation only."""
    import numpy as np
    from PIL import Image

    size, out = 64, 56
    images = _smooth(16, size)
    theta = draw_affine(16, size, Augment(random_resized_crop=True, flip=True, rotation=15),
                        torch.Generator().manual_seed(6))
    ours = resample(images, theta, out_size=out, resized=True)
    for image, matrix, result in zip(images, theta, ours):
        width, height = (matrix[:, :2].norm(dim=1) * size).round().int().tolist()
        left = round(((matrix[0, 2].item() + 1) * size - width) / 2)
        top = round(((matrix[1, 2].item() + 1) * size - height) / 2)
        picture = Image.fromarray(image.round().to(torch.uint8).permute(1, 2, 0).numpy())
        picture = TF.resized_crop(picture, top, left, height, width, [out, out],
                                  InterpolationMode.BILINEAR, antialias=True)
        if matrix[0, 0].item() * matrix[1, 1].item() < 0:
            picture = TF.hflip(picture)
        angle = math.degrees(math.atan2(matrix[1, 0].item(), matrix[1, 1].item()))
        expected = torch.from_numpy(np.array(TF.rotate(picture, angle, InterpolationMode.NEAREST, fill=0)))
        expected = expected.permute(2, 0, 1).float()
        filled, filled_here = (expected == 0).all(dim=0), (result.round() == 0).all(dim=0)
        assert (filled == filled_here).float().mean() > 0.99
        both = ~filled & ~filled_here
        assert (expected - result).abs()[:, both].mean() < 6  # of 255: interpolation, not geometry


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
