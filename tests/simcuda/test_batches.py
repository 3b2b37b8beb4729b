"""The batch makers on a simulated CUDA device: every augmentation the experiments use, images
on the GPU and in pinned host memory, training and evaluation (ImageNet-100 included: it is
read only from its uint8 cache, there is no DataLoader path)."""

import pytest
import torch

from mgrb.data.augment import Augment
from mgrb.data.batches import TensorBatches
from mgrb.devices import resolve_device

from conftest import DEVICE_CHOICES

CIFAR = Augment(crop_padding=4, flip=True, rotation=15)        # CIFAR and miniImageNet
IMAGENET = Augment(flip=True, rotation=15, random_resized_crop=True)
BATCH, BATCHES = 4, 6


def _images(side: int, count: int = BATCH * BATCHES - 1):  # the last batch smaller
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=generator),
            torch.randint(0, 10, (count,), generator=generator))


def _epoch(simulated, batches, augment, indices):
    """Each batch of one epoch with what it cost: [(x, y, record)]."""
    made, stream = [], batches.batches(indices, BATCH, shuffle=augment is not None,
                                       augment=augment,
                                       generator=torch.Generator().manual_seed(1) if augment else None)
    while True:
        with simulated.window() as record:
            batch = next(stream, None)
        if batch is None:
            return made
        made.append((*batch, record))


@pytest.mark.parametrize("choice", DEVICE_CHOICES)
@pytest.mark.parametrize("resident", [True, False], ids=["on-gpu", "pinned-host"])
@pytest.mark.parametrize("augment, side, out_size", [
    (CIFAR, 32, None), (IMAGENET, 40, 32), (None, 32, None), (None, 40, 32)],
    ids=["cifar-train", "imagenet-train", "cifar-eval", "imagenet-eval"])
def test_tensor_batches_run_on_the_device_without_the_host_waiting(simulated, choice, resident,
                                                                   augment, side, out_size):
    device = resolve_device(choice)
    images, labels = _images(side)
    maker = TensorBatches(images, labels, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), device,
                          out_size=out_size, resident=resident)
    assert maker.images.device == (device if resident else torch.device("cpu"))
    made = _epoch(simulated, maker, augment, torch.arange(len(labels)))
    assert len(made) == BATCHES
    for number, (x, y, record) in enumerate(made):
        assert (x.device, x.dtype, x.shape[1:]) == (device, torch.float32, (3, out_size or side,
                                                                             out_size or side))
        assert (y.device, y.dtype) == (device, torch.int64)
        assert record.reads == [], f"batch {number + 1} reads the device: {record.reads}"
        if number:  # the first carries the epoch's shuffle and draws to the device
            assert record.blocking_copies == [], (f"batch {number + 1}: "
                                                  f"{[c.where for c in record.blocking_copies]}")
        if not resident:  # gathered on the host, copied asynchronously from pinned memory
            (copy,) = [c for c in record.copies if c.where.startswith("mgrb/data/batches.py")
                       and "rows.to" in c.where]
            assert copy.non_blocking and copy.host_pinned
    print(f"{choice}, {'on the GPU' if resident else 'pinned host'}, "
          f"{'train' if augment else 'eval'} {side}->{out_size or side}: "
          f"{made[2][2].op_count} ATen ops a mid-epoch batch")


def test_a_process_part_of_a_batch_stays_on_the_device(simulated):
    device = resolve_device("cuda")
    images, labels = _images(32)
    maker = TensorBatches(images, labels, (0.5,) * 3, (0.2,) * 3, device)
    for rank in (0, 1):
        x, y = next(maker.batches(torch.arange(len(labels)), 5, shuffle=True, augment=CIFAR,
                                  generator=torch.Generator().manual_seed(1), part=(rank, 2)))
        assert x.shape[0] == y.shape[0] == (3 if rank == 0 else 2) and x.device == device


@pytest.mark.parametrize("device", ["cuda", torch.device("cuda")], ids=["text", "device"])
def test_a_bare_cuda_device_means_the_current_gpu(simulated, device):
    """What resolve_device gave before devices were indexed, and what a library caller may
    pass: the images went to cuda:0, compared unequal to `cuda`, and the first batch took the
    host path and failed ("Expected all tensors to be on the same device")."""
    images, labels = _images(32)
    maker = TensorBatches(images, labels, (0.5,) * 3, (0.2,) * 3, device)
    x, y = next(maker.batches(torch.arange(len(labels)), BATCH, shuffle=True, augment=CIFAR,
                              generator=torch.Generator().manual_seed(1)))
    assert maker.resident and x.device == y.device == torch.device("cuda", 0)
