"""MGRB as one object the trainer calls through a few hooks (mammoth's ContinualModel).

The trainer owns epochs, stages, evaluation, checkpoints and logging. `MGRB` owns the method:
the hierarchy of each phase, and, built once per phase from a frozen `PhaseContext`, the
class-balanced weights, the soft targets and the terms of each stage's loss (`PhaseLosses`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mgrb.config.schema import Experiment, Method
from mgrb.data.registry import dataset as dataset_record
from mgrb.method.hierarchies import describe_hierarchy, hierarchy_targets, public_description
from mgrb.method.terms import (TERMS, Batch, Reduce, StageInputs, chosen_terms,
                               class_balanced_weights, compose, negative_entropy)


@dataclass(frozen=True)
class ClassCounts:
    """The images behind each label, for the class-balanced weights' n_c."""
    data: torch.Tensor     # by label: the run's training images of each class
    phase: torch.Tensor    # by label: the images this phase trains on
    per_class: int         # protocol.memory_per_class, e: exemplars kept per old class
    holdout: int           # v: of those, held out of stage 1 for the balanced set


@dataclass(frozen=True)
class PhaseContext:
    """What the trainer knows of a phase when the method begins it."""
    phase: int
    n_old: int
    n_seen: int
    num_classes: int       # C of the class-balanced weights: the data set's class count
    counts: ClassCounts
    hierarchy: dict        # this phase's, as plain data (MGRB.hierarchy)
    teacher: Callable[[torch.Tensor], torch.Tensor] | None  # previous phase's logits
    device: torch.device


class MGRB:
    """The method of an experiment; its config sections are kept whole."""

    def __init__(self, config: Experiment):
        self.config = config
        self.method, self.quirks = config.method, config.quirks

    def hierarchy(self, *, phase: int, data, order: list[int], n_seen: int,
                  class_means: Callable[[], torch.Tensor]) -> dict:
        """The hierarchy of a phase as plain data (section 5): none in phase 0 or without L_MG;
        the visual one clusters the current model's class means, computed only then."""
        config = self.config
        if phase == 0 or not self.method.uses_hierarchy:
            return {"kind": "none"}
        features = class_means() if config.hierarchy.kind == "vis" else None
        return describe_hierarchy(config.hierarchy, self.quirks, dataset=config.dataset.name,
                                  data=data, order=order, n_seen=n_seen, class_features=features)

    # the hierarchy as events and results.json show it (no per-class targets)
    public = staticmethod(public_description)

    def begin_phase(self, context: PhaseContext) -> PhaseLosses:
        """mammoth's begin_task: the soft targets of the phase's hierarchy at beta (section 3),
        the class-balanced weights of its class counts and the teacher, on the device."""
        def on_device(tensor):
            return None if tensor is None else tensor.to(context.device)

        targets1, targets2 = (on_device(t) for t in hierarchy_targets(context.hierarchy,
                                                                      self.method.beta))
        weights = None
        if self.method.cbloss and context.phase > 0:
            counts = phase_class_counts(self.quirks.cb_new_class_count, self.config.dataset.name,
                                        context)
            weights = on_device(class_balanced_weights(counts, context.num_classes))

        hierarchical = self.method.uses_hierarchy
        stage1 = stage_inputs(self.method, context.n_old, context.n_seen, teacher=context.teacher,
                              class_weights=weights, targets=targets1 if hierarchical else None)
        return PhaseLosses.of(stage1, phase=context.phase, cb_reduction=self.quirks.cb_reduction,
                              stage2_targets=targets2 if hierarchical else None)


def stage_inputs(method: Method, n_old: int, n_seen: int, *, teacher, class_weights,
                 targets) -> StageInputs:
    entropy = None if targets is None else negative_entropy(targets)
    return StageInputs(method, n_old, n_seen, teacher, class_weights, targets, entropy)


@dataclass(frozen=True)
class PhaseLosses:
    """Each stage's loss for one phase, indexed by label at each step."""
    phase: int
    stage1: StageInputs
    stage1_terms: list   # (term, its weight in L) of the loss set
    stage2: StageInputs
    stage2_terms: list
    cb_reduction: str
    runs_stage2: bool   # the balanced classifier re-training (section 4) follows stage 1

    @classmethod
    def of(cls, stage1: StageInputs, *, phase: int, cb_reduction: str,
           stage2_targets: torch.Tensor | None) -> PhaseLosses:
        """A phase's losses from its stage-1 inputs; stage 2 trains without class weights,
        against `stage2_targets` (the hierarchy's deeper ones)."""
        method = stage1.method
        stage2 = stage_inputs(method, stage1.n_old, stage1.n_seen, teacher=None,
                              class_weights=None, targets=stage2_targets)
        # Section 4: (1 - alpha) * CE + lambda * L_MG on the classifier alone, the table's
        # weights beside distillation. The original adds that distillation term with the
        # classifier itself as teacher under no-grad: teacher equals student at every step,
        # so its gradient is zero and it is dropped.
        parts = "ce+distill+hierloss" if stage2_targets is not None else "ce+distill"
        stage2_terms = [(term, weight) for term, weight in chosen_terms(parts)
                        if term is not TERMS["distill"]]
        # phase 0: plain cross-entropy over the first classes
        return cls(phase=phase, stage1=stage1, stage1_terms=chosen_terms(method.losses if phase else "ce"),
                   stage2=stage2, stage2_terms=stage2_terms, cb_reduction=cb_reduction,
                   runs_stage2=phase > 0 and method.decouple)

    def stage1_loss(self, logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                    count: int | None = None) -> dict[str, torch.Tensor]:
        """`count`: the global batch's size when this process holds part of it (Reduce)."""
        # The trainer's logits are fp32 already (numerics.py); a caller's bf16 logits would
        # leave softmax in bf16 on the CPU, whose autocast, unlike CUDA's, keeps it there.
        return compose(self.stage1_terms, self.stage1, Batch(logits.float(), labels, images),
                       Reduce(count, self.cb_reduction))

    def stage2_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return compose(self.stage2_terms, self.stage2, Batch(logits.float(), labels, None),
                       Reduce())


def phase_class_counts(new_class_count: str, dataset: str, context: PhaseContext) -> torch.Tensor:
    """n_c of the class-balanced weights for labels 0..n_seen-1.

    quirk "full_dataset" (the original): old classes count e - v exemplars, new classes the
    data set's full per-class training count; "phase": the images this phase trains on.
    """
    n_old, n_seen, counts = context.n_old, context.n_seen, context.counts
    if new_class_count == "phase":
        return counts.phase[:n_seen].clone()
    result = counts.data[:n_seen].clone()
    full = dataset_record(dataset).full_train_per_class
    if full is not None:
        result[n_old:] = full
    result[:n_old] = counts.per_class - counts.holdout
    return result
