"""One run over several processes (`mgrb run --nproc N`, or torchrun): the process group and
everything the trainer asks of it.

Each process holds the whole model and the whole data set; a global batch (the experiment's
batch_size) is drawn the same way in every process from the run's generator, as a single
process draws it, and each process trains on its contiguous share of the batch. So the draws,
the generator state and the checkpoints do not depend on the number of processes, and a run
may resume under another number of processes than it started with. Rank 0 alone writes to
the run folder. NCCL on GPUs (one per process), gloo on the CPU.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from mgrb.errors import MGRBError
from mgrb.training.control import STOP_REQUESTED

# What a stuck peer may cost before the others give up: long enough for rank 0's work alone
# (the visual hierarchy's clustering, loading a checkpoint) on a large data set.
TIMEOUT = datetime.timedelta(minutes=30)

# How gloo and NCCL say that another process of the group went away.
PEER_GONE = ("closed by peer", "reset by peer", "remote worker", "remote process",
             "ncclRemoteError", "Broken pipe")


def peer_lost(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and any(sign in str(error) for sign in PEER_GONE)


def environment_world() -> tuple[int, int, int]:
    """(rank, local rank, world size) as torchrun and `mgrb run --nproc` set them; (0, 0, 1)
    in a plain process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise MGRBError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun "
                        "or `mgrb run --nproc`)") from None
    if world < 1 or not 0 <= rank < world:
        raise MGRBError(f"RANK={rank} and WORLD_SIZE={world} do not make a process group")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if world > 1 and missing:
        raise MGRBError(f"WORLD_SIZE={world} and RANK={rank} are set but {' and '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} not: a partial torchrun "
                        "environment (left over in this shell?). Start the run with `mgrb run "
                        "--nproc N` or torchrun, or unset WORLD_SIZE and RANK for one process.")
    return rank, local, world


@dataclass
class Group:
    """This process's place in the run: rank 0 of 1 in a plain process, where every method
    below returns at once without communicating."""

    rank: int = 0
    world: int = 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    # -- agreement ---------------------------------------------------------------------
    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true in any process, so that every process takes the same branch (a stop
        asked of one process, a checkpoint due by one clock)."""
        if not self.several:
            return flags
        import torch.distributed as dist

        votes = torch.tensor([int(flag) for flag in flags], device=self._device())
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return tuple(bool(vote) for vote in votes.tolist())

    def stop_requested(self) -> bool:
        return self.agree(STOP_REQUESTED.is_set())[0]

    def broadcast(self, value):
        """Rank 0's `value` (any picklable object) in every process."""
        if not self.several:
            return value
        import torch.distributed as dist

        box = [value if self.leader else None]
        dist.broadcast_object_list(box, src=0, device=self._device())
        return box[0]

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers in every process: what each computed alone (the
        classifier of stage 2) may differ in the last bits between GPUs."""
        if not self.several:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor, src=0)

    # -- sharding ----------------------------------------------------------------------
    @property
    def part(self) -> tuple[int, int] | None:
        """What the batch makers take: (rank, world), or None in a single process."""
        return (self.rank, self.world) if self.several else None

    def share(self, count: int) -> slice:
        """This process's contiguous part of `count` items (the parts differ by at most one)."""
        from mgrb.data.batches import contiguous_part

        return contiguous_part(count, self.rank, self.world)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.several:
            return tensor
        import torch.distributed as dist

        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's rows of `tensor`, concatenated in rank order (row counts may
        differ by process)."""
        if not self.several:
            return tensor
        import torch.distributed as dist

        count = torch.tensor([tensor.shape[0]], device=tensor.device)
        counts = [torch.zeros_like(count) for _ in range(self.world)]
        dist.all_gather(counts, count)
        rows = [int(c) for c in torch.cat(counts).tolist()]
        padded = tensor.new_zeros((max(rows), *tensor.shape[1:]))
        padded[:tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, rows)])

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """DistributedDataParallel over `module`: rank 0's weights in every process, gradients
        averaged. Buffers are synchronised once, not at each step: batch norm synchronises its own
        statistics (syncbn.py), so every process's running statistics are the same."""
        if not self.several:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        keywords = buffer_keywords(DistributedDataParallel)
        wrapped = DistributedDataParallel(module, device_ids=ids, **keywords)
        if "broadcast_buffers" in keywords:  # which left them out of the broadcast at wrapping
            import torch.distributed as dist

            with torch.no_grad():
                for buffer in module.buffers():
                    dist.broadcast(buffer, src=0)
        return wrapped

    def _device(self) -> torch.device:
        import torch.distributed as dist

        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def buffer_keywords(ddp_class) -> dict:
    """DistributedDataParallel's keyword for "no buffer broadcast before every forward":
    `forward_sync_buffers` from torch 2.12 (`broadcast_buffers` is deprecated there), and
    `broadcast_buffers` before (the GPU machines this is first checked on have 2.11, where
    the new keyword raises a TypeError). The old one also leaves the buffers out of the
    broadcast at wrapping, so `Group.wrap` then broadcasts them itself."""
    import inspect

    if "forward_sync_buffers" in inspect.signature(ddp_class.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


class LogitsModule(torch.nn.Module):
    """The student as the one module DistributedDataParallel wraps: its parameters are the
    model's, its forward the trainer's logits (bf16 backbone at most, fp32 classifier)."""

    def __init__(self, model: torch.nn.Module, logits):
        super().__init__()
        self.model = model
        self._logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(x)


class SilentRun:
    """The run folder as every process but rank 0 sees it: rank 0 alone writes events,
    checkpoints, results and failures; the others' checkpoint state comes from rank 0."""

    def __init__(self, path):
        self.path = path

    def append_event(self, event: dict) -> None:
        pass

    def write_results(self, results: dict) -> None:
        pass

    def save_checkpoint(self, state: dict) -> None:
        pass

    def load_checkpoint(self, warn) -> None:
        return None


def join(device_choice: str) -> tuple[Group, str]:
    """The process group of a torchrun or `mgrb run --nproc` worker, and the device this
    process trains on ('cuda:LOCAL_RANK' on GPUs); a plain process gets Group() and its
    choice unchanged."""
    rank, local, world = environment_world()
    if world == 1:
        return Group(), device_choice
    import torch.distributed as dist

    use_cuda = device_choice.startswith("cuda") or (device_choice == "auto"
                                                   and torch.cuda.is_available())
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise MGRBError(f"process {rank} of {world} wants GPU {local}, but "
                            f"{torch.cuda.device_count()} are visible: start at most one "
                            "process per GPU (--nproc, torchrun --nproc-per-node)")
        torch.cuda.set_device(local)
        choice = f"cuda:{local}"
    else:
        choice = "cpu"
        # the processes share the machine's cores rather than each taking all of them
        threads = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // threads))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=TIMEOUT,
                                rank=rank, world_size=world)
    return Group(rank, world), choice


def leave(group: Group) -> None:
    """No collective here: this runs on the way out of an error too (a peer gone), where one
    would raise over the error that says why. mgrb/__main__.py ends the process at once."""
    if group.several:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
