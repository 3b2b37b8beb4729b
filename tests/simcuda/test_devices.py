"""Which device a run uses, and where its images live, on a simulated CUDA device."""

import pytest
import torch

from mgrb.data.batches import TensorBatches, fits_on
from mgrb.devices import gpu_share, indexed, resident_budget, resolve_device
from mgrb.errors import MGRBError

from conftest import DEVICE_CHOICES

# mgrb data prepare's ImageNet-100 cache: 128,856 training images of 3x256x256 bytes, 25.3 GB
IMAGENET100_CACHE = (128_856, 3, 256, 256)


@pytest.mark.parametrize("choice", DEVICE_CHOICES)
def test_every_device_choice_becomes_an_indexed_device(simulated, choice):
    """A bare `cuda` compares unequal to a CUDA tensor's own device (cuda:0): the batch maker
    then took the host path with images already on the GPU and crashed on its first batch."""
    device = resolve_device(choice)
    assert device == torch.device("cuda", 0)
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    assert TensorBatches(images, torch.zeros(4, dtype=torch.long), (0.5,) * 3, (0.5,) * 3,
                         choice if choice != "auto" else device).images.device == device


def test_a_gpu_this_machine_does_not_have_is_refused_by_number(simulated):
    with pytest.raises(MGRBError, match="cuda:3: PyTorch sees 1 CUDA device"):
        resolve_device("cuda:3")
    with pytest.raises(MGRBError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")


def test_without_a_gpu_cuda_is_refused_and_auto_is_the_cpu():
    """Outside the simulation: this machine has no GPU."""
    assert resolve_device("auto") == torch.device("cpu") == indexed("cpu")
    for choice in ("cuda", "cuda:0"):
        with pytest.raises(MGRBError, match=f"--device {choice}: no CUDA device is visible"):
            resolve_device(choice)


@pytest.mark.parametrize("share, resident", [(None, True), ("1", True), ("2", False), ("4", False)])
def test_packed_imagenet_runs_keep_their_images_in_host_memory(monkeypatch, share, resident):
    """An 80 GB GPU: one ImageNet-100 run keeps its 25 GB cache on it (half of the GPU may hold
    images); two runs packed on it (runs_per_gpu: 2, which the launcher passes as
    MGRB_GPU_SHARE) each see nearly all of it free when they start together, and must not
    both take 25 GB: each gets half of its share, 20 GB, and gathers from pinned host memory."""
    if share is None:
        monkeypatch.delenv("MGRB_GPU_SHARE", raising=False)
    else:
        monkeypatch.setenv("MGRB_GPU_SHARE", share)
    images = torch.empty(IMAGENET100_CACHE, dtype=torch.uint8, device="meta")  # no memory
    nbytes = images.numel()
    from benchmarks.simulated_cuda import SimulatedCuda

    with SimulatedCuda(total_gb=80):
        device = resolve_device("cuda")
        assert resident_budget(device) == int(0.5 * 80e9 / int(share or 1))
        assert fits_on(device, nbytes) == resident
        batches = TensorBatches(images, torch.zeros(images.shape[0], dtype=torch.long),
                                (0.5,) * 3, (0.5,) * 3, device, out_size=224)
    assert batches.resident == resident
    assert batches.images.device.type == ("cuda" if resident else "meta")  # meta: host here


def test_the_free_memory_bounds_the_budget_too():
    from benchmarks.simulated_cuda import SimulatedCuda

    with SimulatedCuda(total_gb=80, free_gb=30):
        assert resident_budget(resolve_device("cuda")) == int(0.5 * 30e9)
    assert resident_budget(torch.device("cpu")) is None


@pytest.mark.parametrize("value", ["0", "x", "65", "-1"])
def test_a_bad_gpu_share_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("MGRB_GPU_SHARE", value)
    with pytest.raises(MGRBError, match=f"MGRB_GPU_SHARE='{value}': expected how many runs"):
        gpu_share()
