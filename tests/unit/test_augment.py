"""The fast path's batch augmentation against what torchvision's PIL transforms do: random
crop with zero padding, horizontal flip, rotation (docs/method.md section 3), and the order of the
random draws that a resumed epoch relies on."""

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from mgrb.data.batches import Augment, TensorBatches, augment_batch, draw_affine, resample

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
