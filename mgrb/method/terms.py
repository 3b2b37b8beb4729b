"""The loss terms of docs/method.md sections 3 and 4, as a table the method composes.

A term is a function of what the stage gives it (`StageInputs`, fixed for a stage of a phase)
and the batch; it computes per-sample values and hands them to the one `Reduce` of the step,
which applies the class-balanced sum or the batch mean and, over several processes, this
process's share of the global batch (section 11). `compose` adds the terms' weighted values.

Nothing here loops over samples or reads a tensor back to the host: per-class weights and
soft targets are (K,) and (K, K) tensors built once per phase and indexed by label.

A new loss term is one function here, one entry in TERMS (and its name in
`mgrb.config.schema.LOSS_SETS` to choose it from an experiment file): docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mgrb.config.schema import Method


@dataclass(frozen=True)
class StageInputs:
    """What the terms of one stage of one phase read."""
    method: Method
    n_old: int
    n_seen: int
    teacher: Callable[[torch.Tensor], torch.Tensor] | None  # previous phase's logits
    class_weights: torch.Tensor | None   # w_c of L_cls, None: the plain mean cross-entropy
    targets: torch.Tensor | None         # (K, K) soft targets of L_MG at this stage's depth
    target_neg_entropy: torch.Tensor | None  # sum_j s_yj log s_yj per class, once per phase

    @property
    def alpha(self) -> float:
        """alpha = n_old / n_seen, the share of old classes among those seen."""
        return self.n_old / self.n_seen


@dataclass(frozen=True)
class Batch:
    logits: torch.Tensor   # fp32, (N, n_seen)
    labels: torch.Tensor
    images: torch.Tensor   # what the teacher sees


class Reduce:
    """Per-sample values to the batch's value. `count`: the global batch's size when this
    process holds part of it; its value is then its share, sum / count, and the shares of all
    processes add up to the global batch's mean (docs/method.md section 11).
    `balanced_reduction`: the class-weighted L_cls is summed over the batch as in the original
    ("sum"; a process's sum is its share of the global sum as it is), or averaged ("mean")."""

    def __init__(self, count: int | None = None, balanced_reduction: str = "sum"):
        self.count, self.balanced_reduction = count, balanced_reduction

    def __call__(self, values: torch.Tensor, *, balanced: bool = False) -> torch.Tensor:
        if balanced and self.balanced_reduction == "sum":
            return values.sum()
        return values.mean() if self.count is None else values.sum() / self.count


def classification(inputs: StageInputs, batch: Batch, reduce: Reduce) -> torch.Tensor:
    """L_cls = sum_i w_{y_i} * CE(z_i, y_i) with the class-balanced weights (section 3), or
    the mean cross-entropy where there are none."""
    values = F.cross_entropy(batch.logits, batch.labels, reduction="none")
    if inputs.class_weights is None:
        return reduce(values)
    return reduce(values * inputs.class_weights[batch.labels], balanced=True)


def distillation(inputs: StageInputs, batch: Batch, reduce: Reduce) -> torch.Tensor:
    """L_KD = dscale * alpha * T^2 * mean_i( -sum_j p_ij log q_ij ),
    p = softmax(z_prev / T) of the teacher, q = log_softmax(z_old / T) of the student's first
    n_old logits; the teacher sees the same augmented batch."""
    temperature = inputs.method.temperature
    with torch.no_grad():
        teacher = inputs.teacher(batch.images).float()
    p = F.softmax(teacher / temperature, dim=1)
    log_q = F.log_softmax(batch.logits[:, :inputs.n_old] / temperature, dim=1)
    kd = temperature**2 * reduce(-(p * log_q).sum(dim=1))
    return inputs.method.dscale * inputs.alpha * kd


def multi_granularity(inputs: StageInputs, batch: Batch, reduce: Reduce) -> torch.Tensor:
    """L_MG = KL(s_y || softmax(z)), averaged over the batch ("batchmean"), row y of the
    soft-target matrix being s_y (mgrb.method.soft_targets). KL = sum_j s_j log s_j -
    sum_j s_j log p_j: the first sum depends on the class alone (computed once per phase,
    `negative_entropy`); the second is a cross-entropy with probability targets."""
    labels = batch.labels
    values = inputs.target_neg_entropy[labels] + F.cross_entropy(
        batch.logits, inputs.targets[labels], reduction="none")
    return reduce(values)


def negative_entropy(targets: torch.Tensor) -> torch.Tensor:
    """sum_j s_yj log s_yj per class y; xlogy makes 0 log 0 = 0 for underflowed targets."""
    return torch.xlogy(targets, targets).sum(dim=1)


Weight = Callable[[StageInputs, frozenset], float]


@dataclass(frozen=True)
class Term:
    name: str            # in the logged losses: cls, kd, mg
    value: Callable[[StageInputs, Batch, Reduce], torch.Tensor]
    weight: Weight       # its factor in L, given the loss set's parts


def _classification_weight(inputs: StageInputs, parts: frozenset) -> float:
    # the original weighs L_cls by (1 - alpha) only beside L_KD
    return 1.0 - inputs.alpha if "distill" in parts else 1.0


# method.losses (the original's -setloss) names terms joined by "+": section 3,
#   L = L_KD + (1 - alpha) * L_cls + lambda * L_MG
TERMS: dict[str, Term] = {
    "ce": Term("cls", classification, _classification_weight),
    "distill": Term("kd", distillation, lambda inputs, parts: 1.0),
    "hierloss": Term("mg", multi_granularity, lambda inputs, parts: inputs.method.scale),
}


def chosen_terms(loss_set: str) -> list[tuple[Term, Weight]]:
    parts = frozenset(loss_set.split("+"))
    unknown = sorted(parts - set(TERMS))
    if unknown:
        raise ValueError(f"method.losses {loss_set!r}: no loss term named {', '.join(unknown)}")
    return [(TERMS[name], lambda inputs, term=TERMS[name]: term.weight(inputs, parts))
            for name in TERMS if name in parts]


def compose(terms: list[tuple[Term, Callable[[StageInputs], float]]], inputs: StageInputs,
            batch: Batch, reduce: Reduce) -> dict[str, torch.Tensor]:
    """Every term's value by its name, and their weighted sum under "total"."""
    values = {}
    total = batch.logits.new_zeros(())
    for term, weight in terms:
        values[term.name] = term.value(inputs, batch, reduce)
        total = total + weight(inputs) * values[term.name]
    values["total"] = total
    return values


def class_balanced_weights(counts, num_classes: int) -> torch.Tensor:
    """Effective-number weights of Cui et al. (docs/method.md section 3):

        w_c = (1 - eta) / (1 - eta ** n_c),   eta = (C - 1) / C

    `counts` holds n_c per class; C = `num_classes`, the data set's total class count.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    eta = (num_classes - 1) / num_classes
    return ((1.0 - eta) / (1.0 - torch.pow(eta, counts))).to(torch.float32)
