"""A simulated CUDA device: real project code runs with CUDA tensors on a machine without a GPU.

PyTorch's FakeTensorMode gives tensors a device, a shape, a dtype and strides but no data, and
runs each operation's shape rules (meta kernels) in place of its kernel. It raises where real
CUDA would (tensors on two devices in one operation), and where the host would have to wait
for the device: reading a value back (`.item()`, `bool(t)`, `float(t)`, `.tolist()`) and
operations whose output shape depends on the data (`nonzero`, boolean-mask indexing).

`SimulatedCuda` adds, beside FakeTensorMode:
- a dispatch mode that runs every operation touching no CUDA tensor for real on the CPU (the
  generator's draws, the host-side gathers, DataLoader decoding), so only device work is fake;
- a record of every operation on the device (ATen operations: a proxy for kernel launches),
  every host read and every copy between host and device with its `non_blocking` flag and
  whether the host side is pinned. Host reads return a placeholder (0) and are recorded with
  the line that asked, so that code reading a loss at an epoch's end carries on;
- stand-ins for the few CUDA calls that need a driver and sit outside the tensor operations:
  `torch.cuda.is_available`, device count/name/properties, `mem_get_info` (a GPU of
  `total_gb`), `synchronize`, `Event`, sync debug mode, pinning (`pin_memory` keeps a CPU copy
  and remembers it is pinned); and `torch.load`, which reads into host memory, runs outside
  the fake device (a checkpoint comes back with its data).

What it cannot follow: autograd's engine needs a real CUDA context for CUDA tensors, so
`backward` is a stand-in that records the call and computes nothing (no gradients); the
optimizer step is exercised with gradients the caller sets. Speed, kernels (cuDNN, Triton),
NCCL and memory use are out of reach: only a real GPU shows them.
"""

from __future__ import annotations

import contextlib
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch
from torch._subclasses import fake_tensor
from torch._subclasses.fake_tensor import (DataDependentOutputException,
                                          DynamicOutputShapeException, FakeTensor,
                                          FakeTensorMode, unset_fake_temporarily)
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_map

ROOT = Path(__file__).resolve().parents[1]
DEVICE_NAME = "Simulated CUDA device (FakeTensorMode)"
aten = torch.ops.aten

# A host read: the scalar behind .item(), bool(), float() and .tolist() (_SHAPE_READS, below,
# are the operations whose output size the host must learn from the device).
_SCALAR_READ = aten._local_scalar_dense.default
_COPIES = {aten._to_copy.default, aten.copy_.default}
_PINNING = {aten._pin_memory.default}


@dataclass(frozen=True)
class Copy:
    source: str
    target: str
    non_blocking: bool
    host_pinned: bool
    where: str

    @property
    def blocking(self) -> bool:
        """A host<->device copy the host waits for: asked to block, or from or into pageable
        memory (CUDA stages those through a pinned buffer and waits)."""
        return not (self.non_blocking and self.host_pinned)


@dataclass
class Record:
    """What ran on the simulated device within one window."""

    ops: Counter = field(default_factory=Counter)
    reads: list[str] = field(default_factory=list)       # where each host read was asked
    copies: list[Copy] = field(default_factory=list)
    host_calls: Counter = field(default_factory=Counter)  # synchronize, Event.synchronize ...
    backward_calls: int = 0                               # backward stand-in calls

    @property
    def op_count(self) -> int:
        return sum(self.ops.values())

    @property
    def blocking_copies(self) -> list[Copy]:
        return [copy for copy in self.copies if copy.blocking]

    def summary(self) -> dict:
        return {"aten_ops": self.op_count, "host_reads": len(self.reads),
                "copies": len(self.copies), "blocking_copies": len(self.blocking_copies),
                "host_waits": dict(self.host_calls), "backward_not_simulated": self.backward_calls}


def _where() -> str:
    """The innermost line of this project's code (not torch's, not this file's) that led here."""
    for frame in reversed(traceback.extract_stack()):
        path = Path(frame.filename)
        if path.is_relative_to(ROOT) and path.name != Path(__file__).name and ".venv" not in path.parts:
            return f"{path.relative_to(ROOT)}:{frame.lineno} ({frame.line})"
    return "outside the project"


def _on_device(value) -> bool:
    if isinstance(value, FakeTensor):
        return True
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return False


class _FakeDevice(FakeTensorMode):
    # FakeTensorMode asks torch.cuda.is_available(), which the stand-ins make true, to decide
    # whether it may start CUDA; with no driver it must never try.
    avoid_device_init = True


class _Recorder(TorchDispatchMode):
    def __init__(self, simulation: SimulatedCuda):
        super().__init__()
        self.simulation = simulation

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        sim = self.simulation
        if func in _PINNING:
            return sim.pin(args[0])
        if func is aten.is_pinned.default and not isinstance(args[0], FakeTensor):
            return sim.pinned(args[0])
        if not any(_on_device(value) for value in tree_flatten((args, kwargs))[0]):
            with unset_fake_temporarily():  # host work: real
                if kwargs.get("pin_memory"):  # a pinned host buffer: CPU memory, remembered
                    return sim.pin(func(*args, **{**kwargs, "pin_memory": False}), copy=False)
                return func(*args, **kwargs)
        record = sim.record
        if func.namespace != "prim":  # prim.device and kin: metadata, no kernel
            record.ops[str(func.overloadpacket)] += 1
        if func is _SCALAR_READ:
            record.reads.append(_where())
            return False if args[0].dtype == torch.bool else 0
        if func in _SHAPE_READS:
            record.reads.append(_where())
            return _SHAPE_READS[func](*args, **kwargs)
        if func in _COPIES:
            sim.note_copy(func, args, kwargs)
            if func is aten.copy_.default and not isinstance(args[0], FakeTensor):
                return args[0]  # into host memory: it keeps what it held (no data to copy)
        try:
            out = func(*args, **kwargs)
        except (DynamicOutputShapeException, DataDependentOutputException):
            record.reads.append(_where())  # inside an operation: a boolean mask, say
            out = _answer_data_dependent(func, args, kwargs)
        out = tree_map(_host_side, out)
        if kwargs.get("pin_memory"):  # a pinned host buffer shaped like a device tensor
            out = tree_map(lambda value: sim.pin(value, copy=False)
                           if isinstance(value, torch.Tensor) else value, out)
        return out


def _host_side(value):
    """What device work hands to the host (a copy back, an empty_like on the CPU) is real host
    memory, zero-filled: the host may read it without waiting again, as after a real copy."""
    if isinstance(value, FakeTensor) and value.device.type == "cpu":
        with unset_fake_temporarily():
            return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype).zero_()
    return value


def _all_nonzero(tensor: torch.Tensor) -> torch.Tensor:
    return torch.zeros((tensor.numel(), tensor.dim()), dtype=torch.long, device=tensor.device)


def _bincount(tensor: torch.Tensor, weights=None, minlength: int = 0) -> torch.Tensor:
    dtype = torch.long if weights is None else torch.double
    return torch.zeros(max(minlength, 1), dtype=dtype, device=tensor.device)


def _answer_data_dependent(func, args, kwargs):
    """An operation that had to ask the device for its output size: boolean-mask indexing is
    answered as if every element were selected; anything else is refused by name."""
    if func is aten.index.Tensor:
        source, indices = args[0], args[1]
        expanded = []
        for index in indices:
            if index is not None and index.dtype == torch.bool:
                expanded += list(_all_nonzero(index).unbind(1))
            else:
                expanded.append(index)
        return func(source, expanded, **kwargs)
    raise NotImplementedError(f"the simulated CUDA device cannot answer {func} ({_where()}), "
                              "whose output depends on the data")


# Operations whose output size the host learns from the device; what the simulation answers.
_SHAPE_READS = {aten.nonzero.default: _all_nonzero, aten.bincount.default: _bincount}


class _Event:
    """torch.cuda.Event's stand-in: what the host would wait for is recorded."""

    def __init__(self, simulation: SimulatedCuda, *args, **kwargs):
        self.simulation = simulation

    def record(self, stream=None) -> None:
        pass  # queued on the device: the host does not wait

    def synchronize(self) -> None:
        self.simulation.record.host_calls["Event.synchronize"] += 1

    def wait(self, stream=None) -> None:
        pass

    def query(self) -> bool:
        return True


_real_load = torch.load


def _load_on_the_host(*args, **kwargs):
    """torch.load reads a file into host memory, which the fake device would leave without
    data (a checkpoint's generator states among it): it runs outside the simulation."""
    with _disable_current_modes():
        return _real_load(*args, **kwargs)


class SimulatedCuda:
    """`with SimulatedCuda() as sim:` code under it sees one CUDA device of `total_gb` GB
    (`free_gb` of it free), `sim.record` holds what ran; `sim.window()` starts a new record."""

    def __init__(self, total_gb: float = 80.0, free_gb: float | None = None):
        self.total = int(total_gb * 1e9)
        self.free = self.total if free_gb is None else int(free_gb * 1e9)
        self.record = Record()
        self._pinned: set[int] = set()
        self._stack: contextlib.ExitStack | None = None

    # -- pinning --------------------------------------------------------------------------
    def pin(self, tensor: torch.Tensor, copy: bool = True) -> torch.Tensor:
        with unset_fake_temporarily():
            pinned = tensor.clone() if copy else tensor
        self._pinned.add(pinned.untyped_storage().data_ptr())
        return pinned

    def pinned(self, tensor: torch.Tensor) -> bool:
        if isinstance(tensor, FakeTensor) or tensor.device.type != "cpu":
            return False
        return tensor.untyped_storage().data_ptr() in self._pinned

    def note_copy(self, func, args, kwargs) -> None:
        if func is aten._to_copy.default:
            source, device = args[0], kwargs.get("device")
            if device is None or torch.device(device).type == source.device.type:
                return
            target_type, non_blocking = torch.device(device).type, kwargs.get("non_blocking", False)
            host = source if source.device.type == "cpu" else None
        else:
            target, source = args[0], args[1]
            if target.device.type == source.device.type:
                return
            target_type = target.device.type
            non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
            host = source if source.device.type == "cpu" else target
        # a copy into a new host tensor (`.cpu()`, `.to("cpu")`) lands in pageable memory
        host_pinned = host is not None and self.pinned(host)
        self.record.copies.append(Copy(source.device.type, target_type, bool(non_blocking),
                                       host_pinned, _where()))

    # -- windows --------------------------------------------------------------------------
    @contextlib.contextmanager
    def window(self):
        """A fresh record for the code under it (one training step, say); yields it."""
        outer, self.record = self.record, Record()
        try:
            yield self.record
        finally:
            inner = self.record
            self.record = outer
            outer.ops.update(inner.ops)
            outer.reads += inner.reads
            outer.copies += inner.copies
            outer.host_calls.update(inner.host_calls)
            outer.backward_calls += inner.backward_calls

    # -- the stand-ins --------------------------------------------------------------------
    def _properties(self, device=None):
        return SimpleNamespace(name=DEVICE_NAME, total_memory=self.total, major=9, minor=0,
                               multi_processor_count=132, uuid="GPU-00000000-simulated")

    def _synchronize(self, device=None) -> None:
        self.record.host_calls["synchronize"] += 1

    def _backward(self, *args, **kwargs):
        """Autograd's engine needs a CUDA context for CUDA tensors: nothing is computed."""
        self.record.backward_calls += 1
        return ()

    def __enter__(self) -> SimulatedCuda:
        stack = contextlib.ExitStack()
        cuda = torch.cuda
        stand_ins = {
            "is_available": lambda: True, "device_count": lambda: 1,
            "current_device": lambda: 0, "is_initialized": lambda: True,
            "is_bf16_supported": lambda *a, **k: True, "set_device": lambda device: None,
            "get_device_name": lambda device=None: DEVICE_NAME,
            "get_device_properties": self._properties,
            "mem_get_info": lambda device=None: (self.free, self.total),
            "synchronize": self._synchronize, "empty_cache": lambda: None,
            "Event": lambda *a, **k: _Event(self, *a, **k),
            "set_sync_debug_mode": lambda mode: None, "get_sync_debug_mode": lambda: 0,
            # torch 2.10's optimisers ask before each step (no graph is ever captured here)
            "is_current_stream_capturing": lambda: False,
        }
        for name, stand_in in stand_ins.items():
            stack.enter_context(mock.patch.object(cuda, name, stand_in))
        stack.enter_context(mock.patch.object(torch.accelerator, "is_available", lambda: True))
        stack.enter_context(mock.patch.object(torch.accelerator, "current_accelerator",
                                              lambda *a, **k: torch.device("cuda")))
        stack.enter_context(mock.patch.object(torch.autograd, "_engine_run_backward", self._backward))
        stack.enter_context(mock.patch.object(torch, "load", _load_on_the_host))
        # torch 2.10 (the CUDA 12 variant) starts a real CUDA context for every fake CUDA
        # tensor when torch.cuda.is_available(), which the stand-ins make true; 2.14 asks the
        # accelerator and honours avoid_device_init. No context is ever needed here.
        stack.enter_context(mock.patch.object(fake_tensor, "init_gpu_context", lambda device: None))
        stack.enter_context(_FakeDevice(allow_non_fake_inputs=True))
        stack.enter_context(_Recorder(self))
        self._stack = stack
        return self

    def __exit__(self, *exc) -> None:
        stack, self._stack = self._stack, None
        stack.__exit__(*exc)
