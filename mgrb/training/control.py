"""What the stage loops share: where training stands, stop requests, the learning-rate
schedule, the divergence check, and the stage-1 step (which `make bench` times too)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from mgrb.errors import MGRBError


def learning_rate(base: float, *, epoch: int, iteration: int, iterations: int, milestones,
                  decay: float, warmup_epochs: int) -> float:
    """MultiStepLR by epoch, times a linear warm-up per iteration over the first epochs."""
    lr = base * decay ** sum(epoch >= m for m in milestones)
    if warmup_epochs and epoch < warmup_epochs:
        lr *= (epoch * iterations + iteration + 1) / (warmup_epochs * iterations)
    return lr


@dataclass
class Position:
    """Where training stands: the phase, its stage ('start', 'stage1', 'stage2') and next epoch."""

    phase: int = 0
    stage: str = "start"
    epoch: int = 0
    iteration: int = 0  # batches of `epoch` already trained (a checkpoint taken mid-epoch)


class Interrupted(Exception):
    """Training stopped on request (SIGTERM, Ctrl-C); the message says where."""


# Set by the command line's signal handlers; a trainer honours it between batches.
STOP_REQUESTED = threading.Event()


def require_finite(losses: dict, *, phase: int, stage: str, epoch: int, lr: float) -> None:
    """A diverged run stops where it diverged, before a NaN reaches a checkpoint or the log.

    Checked where the losses are read anyway (log lines, epoch ends, checkpoints), so the
    training step itself never waits for the GPU."""
    bad = {name: float(value) for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        terms = ", ".join(f"{name} = {value}" for name, value in bad.items())
        raise MGRBError(
            f"training diverged in phase {phase + 1}, {stage}, epoch {epoch + 1} ({terms}; "
            f"learning rate {lr:g}). The run stops here; its checkpoints are from before. A "
            "lower train.lr is the usual cure (it changes the experiment: use a new --out).")


def stage1_step(method, logits, optimizer, x, y, *, global_count: int | None = None,
                world: int = 1) -> dict:
    """One stage-1 optimisation step: the method's loss on the batch, backward, update. The
    loss terms stay on the device (the caller sums them; reading one would wait for it).

    Over several processes (docs/method.md section 11) each one's terms are its share of the
    global batch's (`global_count` images); DistributedDataParallel averages the gradients
    over the `world` processes, so the loss is scaled by `world` to make that average the
    sum of the shares: the gradient of the global batch's loss."""
    terms = method.stage1_loss(logits(x), y, x, count=global_count)
    optimizer.zero_grad(set_to_none=True)
    (terms["total"] * world if world > 1 else terms["total"]).backward()
    optimizer.step()
    return terms
