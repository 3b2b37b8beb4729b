"""Stage 1 of a phase (docs/method.md section 3): epochs of the method's loss over the phase's
training images, with a checkpoint where a stop is asked for, every
train.checkpoint_minutes within an epoch, and every train.checkpoint_every epochs."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from mgrb.data.augment import Augment
from mgrb.config.schema import Quirks, Train
from mgrb.store.runfolder import RunFolder
from mgrb.training.control import (STOP_REQUESTED, Interrupted, Position, StageLosses,
                                   require_finite, set_stage1_rates, stage1_step)
from mgrb.training.distributed import Group
from mgrb.training.progress import Progress, stage_label


def after_batch(phase: int, epoch: int, iteration: int, iterations: int) -> Position:
    """Where training resumes after this batch: the next batch of this epoch, or, after an
    epoch's last batch, the next epoch (its draws follow from the generator's state)."""
    if iteration + 1 < iterations:
        return Position(phase, "stage1", epoch, iteration + 1)
    return Position(phase, "stage1", epoch + 1, 0)


class Stage1Loop:
    """The trainer owns the model and the checkpoints; this loop owns the epochs of stage 1.

    `save(position, optimizer)` writes a checkpoint, `checkpoint_due()` says whether
    train.checkpoint_minutes have passed. `epoch_generator` is the batch generator's state at
    the current epoch's start: a checkpoint records it so that a resume mid-epoch replays
    the epoch's draws and lands on the same batch.

    Over several processes (`group`), each trains on its part of every global batch; the
    loss terms are summed over the processes where they are read, and a stop or a timed
    checkpoint is agreed at those points only (every train.log_every batches), so that the
    step itself never waits for the others."""

    def __init__(self, *, train: Train, quirks: Quirks, model: torch.nn.Module, logits: Callable,
                 prepare: Callable, images, augment: Augment, generator: torch.Generator,
                 run: RunFolder, progress: Progress, phases: int,
                 save: Callable[[Position, object], None], checkpoint_due: Callable[[], bool],
                 epoch_generator: torch.Tensor | None = None, group: Group | None = None):
        self.train, self.model, self.logits, self.prepare = train, model, logits, prepare
        self.quirks = quirks
        self.group = group or Group()
        self.images, self.augment, self.generator = images, augment, generator
        self.run, self.progress, self.phases = run, progress, phases
        self.save, self.checkpoint_due = save, checkpoint_due
        self.epoch_generator = epoch_generator

    def iterations(self, split) -> int:
        return -(-split.train.numel() // self.train.batch_size)

    def run_phase(self, position: Position, method: StageLosses, split, optimizer) -> None:
        """From `position` (a resumed phase starts mid-way) to the end of stage 1."""
        epochs, started = self.train.epochs, time.monotonic()
        for epoch in range(position.epoch, epochs):
            resume_at = position.iteration if epoch == position.epoch else 0
            losses, lr, rate = self._epoch(position.phase, epoch, resume_at, method, split,
                                           optimizer)
            require_finite(losses, phase=position.phase, stage="stage 1", epoch=epoch, lr=lr)
            self.run.append_event({"event": "epoch", "phase": position.phase, "stage": "stage1",
                                   "epoch": epoch + 1, "epochs": epochs,
                                   "iteration": self.iterations(split), "losses": losses,
                                   "lr": lr, "images_per_s": round(rate, 1)})
            self.progress.epoch(stage_label(position.phase, self.phases, "stage 1"),
                                epoch=epoch + 1, epochs=epochs, first=position.epoch + 1,
                                loss=losses["total"], images_per_s=rate, started=started)
            done = epoch + 1 == epochs
            if done or (epoch + 1) % self.train.checkpoint_every == 0:
                self.save(Position(position.phase, "stage2" if done else "stage1", epoch + 1),
                          None if done else optimizer)
            # one process reads a stop at every batch; several agree on it every
            # train.log_every batches, which a short epoch may never reach, and here
            if not done and self.group.several and self.group.stop_requested():
                resume_at = Position(position.phase, "stage1", epoch + 1)
                self.save(resume_at, optimizer)
                raise Interrupted(f"stopped {resume_at.described()}; a checkpoint was saved "
                                  "there")

    def _epoch(self, phase: int, epoch: int, resume_at: int, method: StageLosses, split,
               optimizer):
        """One epoch from batch `resume_at`; on a stop request, a checkpoint at the current
        batch. Returns (mean losses, last learning rate, images/s)."""
        train = self.train
        iterations = self.iterations(split)
        if resume_at:  # replay this epoch's draws from its start to land on the same batch
            self.generator.set_state(self.epoch_generator)
        self.epoch_generator = self.generator.get_state()
        self.model.train()
        sums, seen_images, epoch_start, lr = {}, 0, time.monotonic(), train.lr
        batches = self.images.batches(split.train, train.batch_size, shuffle=True,
                                      augment=self.augment, generator=self.generator,
                                      skip=resume_at, part=self.group.part)
        several, total = self.group.several, split.train.numel()
        for iteration, (x, y) in enumerate(batches, start=resume_at):
            lr = set_stage1_rates(optimizer, train, self.quirks, epoch=epoch, iteration=iteration,
                                    iterations=iterations)
            count = min(train.batch_size, total - iteration * train.batch_size)
            terms = stage1_step(method, self.logits, optimizer, self.prepare(x), y,
                                global_count=count if several else None, world=self.group.world)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0) + value.detach()
            seen_images += count
            read_point = (iteration + 1) % train.log_every == 0
            if read_point:
                self._log_iteration(Position(phase, "stage1", epoch, iteration), iterations,
                                    self._summed(sums), iteration + 1 - resume_at, lr,
                                    seen_images / max(time.monotonic() - epoch_start, 1e-9))
            stop, due = STOP_REQUESTED.is_set(), self.checkpoint_due()
            if several:
                stop, due = self.group.agree(stop, due) if read_point else (False, False)
            if stop:
                require_finite(sums, phase=phase, stage="stage 1", epoch=epoch, lr=lr)
                resume_at = after_batch(phase, epoch, iteration, iterations)
                self.save(resume_at, optimizer)
                raise Interrupted(f"stopped {resume_at.described()}; a checkpoint was saved "
                                  "there")
            if due:  # train.checkpoint_minutes: long epochs lose little
                require_finite(sums, phase=phase, stage="stage 1", epoch=epoch, lr=lr)
                self.save(after_batch(phase, epoch, iteration, iterations), optimizer)
        done = max(iterations - resume_at, 1)
        losses = {name: round(float(value) / done, 6) for name, value in self._summed(sums).items()}
        return losses, lr, seen_images / max(time.monotonic() - epoch_start, 1e-9)

    def _summed(self, sums: dict) -> dict:
        """The terms of the global batches: each process holds its shares (one all-reduce)."""
        if not self.group.several or not sums:
            return sums
        names = sorted(sums)
        values = self.group.sum(torch.stack([sums[name] for name in names]))
        return dict(zip(names, values))

    def _log_iteration(self, at: Position, iterations, sums, count, lr, rate):
        phase, epoch, iteration = at.phase, at.epoch, at.iteration
        losses = {name: round(float(value) / count, 6) for name, value in sums.items()}
        require_finite(losses, phase=phase, stage="stage 1", epoch=epoch, lr=lr)
        # epochs and iterations let a reader (the launcher) draw progress from one line
        self.run.append_event({"event": "iteration", "phase": phase, "stage": "stage1",
                               "epoch": epoch + 1, "epochs": self.train.epochs,
                               "iteration": iteration + 1, "iterations": iterations,
                               "losses": losses, "lr": lr, "images_per_s": round(rate, 1)})
