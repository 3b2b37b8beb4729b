"""MGRB as hooks the trainer calls: what a phase needs and the loss of each stage.

The trainer owns loops, optimisers, checkpoints and logging; this module owns the method:
the teacher, the class-balanced weights, the soft targets and the loss composition.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mgrb.config.defaults import FULL_TRAIN_PER_CLASS
from mgrb.config.schema import Experiment, Method, Quirks
from mgrb.method.hierarchies import describe_hierarchy, hierarchy_targets
from mgrb.method.losses import (class_balanced_weights, classifier_retrain_loss, cross_entropy,
                               negative_entropy, phase_loss)


class MGRBPhase:
    """Everything the losses of one phase need, built once and indexed by label in each step."""

    def __init__(self, method: Method, *, cb_reduction: str, phase: int, n_old: int,
                 n_seen: int, teacher, class_weights: torch.Tensor | None,
                 targets_stage1: torch.Tensor | None, targets_stage2: torch.Tensor | None):
        self.loss_set = method.losses
        self.phase, self.n_old, self.n_seen = phase, n_old, n_seen
        self.teacher = teacher
        self.class_weights = class_weights
        self.targets_stage1, self.targets_stage2 = targets_stage1, targets_stage2
        self.entropy_stage1 = None if targets_stage1 is None else negative_entropy(targets_stage1)
        self.entropy_stage2 = None if targets_stage2 is None else negative_entropy(targets_stage2)
        self.temperature, self.dscale = method.temperature, method.dscale
        self.scale, self.cb_reduction = method.scale, cb_reduction
        self.uses_hierarchy = method.uses_hierarchy

    def stage1_loss(self, logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                    count: int | None = None) -> dict[str, torch.Tensor]:
        """`count`: the global batch's size when this process holds part of it (losses.batch_mean)."""
        # The trainer's logits are fp32 already (numerics.py); a caller's bf16 logits would
        # leave softmax in bf16 on the CPU, whose autocast, unlike CUDA's, keeps it there.
        logits = logits.float()
        if self.phase == 0:  # phase 0: plain cross-entropy over the first classes
            loss = cross_entropy(logits, labels, count)
            return {"cls": loss, "total": loss}
        teacher_logits = None
        if "distill" in self.loss_set:
            with torch.no_grad():
                teacher_logits = self.teacher(images).float()
        return phase_loss(
            logits, labels, loss_set=self.loss_set, n_old=self.n_old,
            teacher_logits=teacher_logits, class_weights=self.class_weights,
            targets=self.targets_stage1 if self.uses_hierarchy else None,
            temperature=self.temperature, dscale=self.dscale, scale=self.scale,
            cb_reduction=self.cb_reduction, target_neg_entropy=self.entropy_stage1, count=count)

    def stage2_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return classifier_retrain_loss(
            logits.float(), labels, n_old=self.n_old,
            targets=self.targets_stage2 if self.uses_hierarchy else None, scale=self.scale,
            target_neg_entropy=self.entropy_stage2)


def phase_class_counts(*, new_class_count: str, dataset: str, n_old: int, n_seen: int,
                       per_class: int, holdout: int, data_counts_by_label: torch.Tensor,
                       phase_counts_by_label: torch.Tensor) -> torch.Tensor:
    """n_c of the class-balanced weights for labels 0..n_seen-1.

    quirk "full_dataset" (the original): old classes count e - v exemplars, new classes the
    data set's full per-class training count; "phase": the images this phase trains on.
    """
    if new_class_count == "phase":
        return phase_counts_by_label[:n_seen].clone()
    counts = data_counts_by_label[:n_seen].clone()
    full = FULL_TRAIN_PER_CLASS.get(dataset)
    if full is not None:
        counts[n_old:] = full
    counts[:n_old] = per_class - holdout
    return counts


def begin_phase(method: Method, quirks: Quirks, *, dataset: str, phase: int, n_old: int,
                n_seen: int, hierarchy: dict, teacher, num_classes: int, per_class: int,
                holdout: int, data_counts: torch.Tensor, phase_counts: torch.Tensor,
                device: torch.device) -> MGRBPhase:
    """The method's state for one phase (mammoth's begin_task): the soft targets of the
    phase's hierarchy at beta (section 3), the class-balanced weights of its class counts,
    and the frozen teacher of the previous phase (a logits function, or None in phase 0)."""
    targets1, targets2 = hierarchy_targets(hierarchy, method.beta)
    weights = None
    if method.cbloss:
        counts = phase_class_counts(
            new_class_count=quirks.cb_new_class_count, dataset=dataset, n_old=n_old,
            n_seen=n_seen, per_class=per_class, holdout=holdout,
            data_counts_by_label=data_counts, phase_counts_by_label=phase_counts)
        weights = class_balanced_weights(counts, num_classes)

    def on_device(tensor):
        return None if tensor is None else tensor.to(device)

    return MGRBPhase(method, cb_reduction=quirks.cb_reduction, phase=phase, n_old=n_old,
                     n_seen=n_seen, teacher=teacher, class_weights=on_device(weights),
                     targets_stage1=on_device(targets1), targets_stage2=on_device(targets2))


def phase_hierarchy(config: Experiment, *, phase: int, data, order: list[int], n_seen: int,
                    class_means: Callable[[], torch.Tensor]) -> dict:
    """The hierarchy of a phase as plain data (section 5): none in phase 0 or without L_MG;
    the visual one clusters the current model's class means, computed only then."""
    if phase == 0 or not config.method.uses_hierarchy:
        return {"kind": "none"}
    features = class_means() if config.hierarchy.kind == "vis" else None
    return describe_hierarchy(config.hierarchy, config.quirks, dataset=config.dataset.name,
                              data=data, order=order, n_seen=n_seen, class_features=features)
