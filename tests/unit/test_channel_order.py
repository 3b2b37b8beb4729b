"""quirks.opencv_bgr (docs/method.md section 8): the original's OpenCV channel order, for
miniImageNet and ImageNet-100, without a second copy of a 26 GB cache."""

import torch

from mgrb.config import load_config
from mgrb.data.base import ClassIncrementalData
from mgrb.training.stream import opencv_channel_order


def _data(train: int, test: int) -> ClassIncrementalData:
    images = torch.randint(0, 256, (train + test, 3, 2, 2), dtype=torch.uint8)
    return ClassIncrementalData(
        name="imagenet100", num_classes=2, train_images=images[:train].clone(),
        train_labels=torch.zeros(train, dtype=torch.long), test_images=images[train:].clone(),
        test_labels=torch.zeros(test, dtype=torch.long), class_names=["a", "b"],
        mean=(0.5,) * 3, std=(0.25,) * 3, image_size=2, source="cache")


def test_channels_are_reversed_in_place_across_blocks():
    data = _data(train=9000, test=5)  # more than two of the swap's 4096-image blocks
    train_before, test_before = data.train_images.clone(), data.test_images.clone()
    train_memory = data.train_images.data_ptr()
    swapped = opencv_channel_order(data)
    assert torch.equal(swapped.train_images, train_before.flip(1))
    assert torch.equal(swapped.test_images, test_before.flip(1))
    assert swapped.train_images.data_ptr() == train_memory  # no copy was made
    assert swapped.source == "cache; channels in BGR order (quirks.opencv_bgr)"


def test_the_quirk_is_on_by_default_for_both_imagenet_derived_sets():
    assert load_config("experiments/i100_ont_50_10.yaml").quirks.opencv_bgr
    assert load_config("experiments/mini_ont_10_10.yaml").quirks.opencv_bgr
    assert not load_config("experiments/c100_ont_10_10.yaml").quirks.opencv_bgr
