"""Tests on a simulated CUDA device (benchmarks/simulated_cuda.py): the project's own code,
run with CUDA tensors on a machine without a GPU.

What they prove: every operation of the data path, the forward pass, the losses, evaluation,
the checkpoint writer's host copy and the per-phase set-up accepts the devices, shapes and
dtypes that CUDA would give it (FakeTensorMode raises on tensors of two devices in one
operation), and where the host would wait for the device: host reads and blocking copies,
recorded with the line that asked. What they cannot: backward (autograd's engine needs a real
CUDA context, so it is a stand-in that computes nothing, and the optimizer's update runs only
where a test sets gradients itself), kernels (cuDNN, Triton), NCCL, speed and memory use.
Those need a GPU: `python -m benchmarks.gpu_check` there.
"""

import signal

import pytest

from benchmarks.simulated_cuda import SimulatedCuda

# --device as users give it; mgrb.devices.resolve_device turns each into cuda:0
DEVICE_CHOICES = ("cuda", "cuda:0", "auto")


@pytest.fixture
def simulated():
    with SimulatedCuda() as simulation:
        yield simulation


@pytest.fixture
def signal_handlers():
    """`mgrb run` in this process installs its stop handlers: put the test runner's back."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)
