"""What the stage loops share: where training stands, stop requests, the learning-rate
schedule, the divergence check, and the stage-1 step (which `make bench` times too)."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Protocol

from mgrb.errors import MGRBError


# The original's WarmUpLR (code/util.py) divides by total_iters + 1e-8; kept, so that the
# rates equal the original's to the last bit (tests/unit/test_schedule.py).
_WARMUP_EPSILON = 1e-8


def learning_rate(base: float, *, epoch: int, iteration: int, iterations: int, milestones,
                  decay: float, warmup_epochs: int, late_decay: bool = False) -> float:
    """The rate of batch `iteration` of `epoch` (both from 0) for one optimiser.

    late_decay (quirks.late_decay), as the original schedules it (code/etrain.py): a
    MultiStepLR stepped as `scheduler.step(epoch)` at the end of every epoch from epoch 1 on,
    so epoch e >= 2 trains at base * decay^#{milestones <= e - 1} (a decay starts the epoch
    after its milestone), and epochs 0 and 1 keep the rate that epoch 0 ended with; a warm-up
    (WarmUpLR, stepped before each batch of the first `warmup_epochs` epochs) sets
    base * k / (warmup_epochs * iterations + 1e-8) at the k-th batch, milestones aside.
    Otherwise torch's usual reading: base * decay^#{milestones <= epoch}, times the warm-up's
    (k / (warmup_epochs * iterations)) within the warm-up epochs."""
    if not late_decay:
        lr = base * decay ** sum(epoch >= m for m in milestones)
        if warmup_epochs and epoch < warmup_epochs:
            lr *= (epoch * iterations + iteration + 1) / (warmup_epochs * iterations)
        return lr
    warm = warmup_epochs * iterations
    if epoch < warmup_epochs:
        return base * (epoch * iterations + iteration + 1) / (warm + _WARMUP_EPSILON)
    if epoch - 1 >= 1:  # set by step(epoch - 1) at the end of the previous epoch
        return base * decay ** sum(m <= epoch - 1 for m in milestones)
    return base * warm / (warm + _WARMUP_EPSILON) if warmup_epochs else base


def set_stage1_rates(optimizer, train, quirks, *, epoch: int, iteration: int,
                     iterations: int) -> float:
    """Each group's rate for this batch of stage 1 (the backbone's group, then the
    classifier's: Trainer._stage1_groups); returns the backbone's, which the log shows as the
    original printed it."""
    rates = []
    for group in optimizer.param_groups:
        warm = train.warmup_epochs
        if quirks.warmup_backbone_only and group.get("name") == "classifier":
            warm = 0  # the original warms up the backbone's optimiser only (code/etrain.py)
        group["lr"] = learning_rate(train.lr, epoch=epoch, iteration=iteration,
                                    iterations=iterations, milestones=train.milestones,
                                    decay=train.lr_decay, warmup_epochs=warm,
                                    late_decay=quirks.late_decay)
        rates.append(group["lr"])
    return rates[0]


@dataclass
class Position:
    """Where training stands: the phase, its stage ('start', 'stage1', 'stage2') and next epoch."""

    phase: int = 0
    stage: str = "start"
    epoch: int = 0
    iteration: int = 0  # batches of `epoch` already trained (a checkpoint taken mid-epoch)

    def described(self) -> str:
        """Where training goes on, numbered as the progress bar and the stop message number
        phases, epochs and batches (from 1): a stop "in phase 2, epoch 8, batch 3" resumes
        "in phase 2, epoch 8, after batch 3"."""
        phase = self.phase + 1
        if self.stage == "start":
            return f"at the start of phase {phase}"
        if self.stage == "stage2":
            return f"in phase {phase}, stage 2"
        if self.iteration:
            return f"in phase {phase}, epoch {self.epoch + 1}, after batch {self.iteration}"
        return f"in phase {phase}, at the start of epoch {self.epoch + 1}"


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


class StageLosses(Protocol):
    """What the stage loops need of the method (mgrb.method.phase.PhaseLosses is one): each
    stage's loss terms of a batch, "total" among them. The loops depend on this, not on the
    method package."""

    def stage1_loss(self, logits, labels, images, count: int | None = None) -> dict: ...

    def stage2_loss(self, logits, labels) -> dict: ...


def stage1_step(method: StageLosses, logits, optimizer, x, y, *,
                global_count: int | None = None, world: int = 1) -> dict:
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
