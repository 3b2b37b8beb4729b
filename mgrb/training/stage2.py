"""Stage 2: the classifier re-trained on the balanced set with the backbone frozen
(docs/method.md section 4)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from mgrb.config.schema import Train
from mgrb.store.runfolder import RunFolder
from mgrb.training.control import (STOP_REQUESTED, Interrupted, StageLosses, learning_rate,
                                   require_finite)
from mgrb.training.progress import Progress, stage_label


class Stage2Loop:
    """The trainer owns the model and the checkpoints; this loop owns the epochs of stage 2.
    `stop_requested`: where the run has several processes, a stop that all of them agree on
    (distributed.py)."""

    def __init__(self, *, train: Train, late_decay: bool, generator: torch.Generator,
                 run: RunFolder, progress: Progress, phases: int,
                 stop_requested: Callable[[], bool] = STOP_REQUESTED.is_set):
        self.train, self.late_decay, self.generator = train, late_decay, generator
        self.run, self.progress, self.phases = run, progress, phases
        self.stop_requested = stop_requested

    def run_phase(self, phase: int, classifier: torch.nn.Module, method: StageLosses,
                  epoch_features: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                  optimizer) -> None:
        """The backbone is frozen, so the classifier trains on the balanced set's features,
        which `epoch_features` gives for each epoch: the same ones computed once where the
        balanced set is not augmented (CIFAR, exactly what re-running the frozen backbone
        would give, at a fraction of the cost), new ones of newly augmented images where the
        original augments it (miniImageNet, ImageNet-100; train.stage2_augment)."""
        train, generator = self.train, self.generator
        classifier.train()
        epochs = train.stage2_epochs
        started = time.monotonic()
        for epoch in range(epochs):
            features, labels = epoch_features()
            size = features.shape[0]
            classifier.train()  # the features were made in eval mode
            # no warm-up: the original's stage 2 steps the warm-up of the backbone's optimiser,
            # which stage 2 does not use (code/etrain.py), so the classifier gets none
            lr = learning_rate(train.lr, epoch=epoch, iteration=0, iterations=1,
                               milestones=train.stage2_milestones, decay=train.lr_decay,
                               warmup_epochs=0, late_decay=self.late_decay)
            for group in optimizer.param_groups:
                group["lr"] = lr
            order = torch.randperm(size, generator=generator).to(features.device)
            sums, batches = {}, 0
            for start in range(0, size, train.batch_size):
                chosen = order[start:start + train.batch_size]
                terms = method.stage2_loss(classifier(features[chosen]), labels[chosen])
                optimizer.zero_grad(set_to_none=True)
                terms["total"].backward()
                optimizer.step()
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0) + value.detach()
                batches += 1
            if self.stop_requested():  # stage 2 is short: it restarts from its beginning
                raise Interrupted(f"stopped in stage 2 of phase {phase + 1}; it restarts from "
                                  "the end of stage 1, where a checkpoint is saved")
            losses = {name: round(float(value) / batches, 6) for name, value in sums.items()}
            require_finite(losses, phase=phase, stage="stage 2", epoch=epoch, lr=lr)
            self.run.append_event({"event": "epoch", "phase": phase, "stage": "stage2",
                                   "epoch": epoch + 1, "epochs": epochs, "iteration": batches,
                                   "losses": losses, "lr": lr})
            self.progress.epoch(
                stage_label(phase, self.phases, "stage 2"), epoch=epoch + 1, epochs=epochs,
                loss=losses["total"], started=started,
                images_per_s=size / max(time.monotonic() - started, 1e-9) * (epoch + 1))
