"""The loss terms of docs/method.md sections 3 and 4, each a pure function of tensors.

Nothing here loops over samples or reads a tensor back to the host: per-class weights and
soft targets are (K,) and (K, K) tensors built once per phase and indexed by label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_mean(values: torch.Tensor, count: int | None = None) -> torch.Tensor:
    """The mean over the batch; with `count`, the size of a global batch spread over several
    processes, this process's share of that mean, sum / count (docs/method.md section 11):
    the shares of all processes add up to the global batch's mean."""
    return values.mean() if count is None else values.sum() / count


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, count: int | None = None
                  ) -> torch.Tensor:
    """F.cross_entropy averaged over the batch, or this process's share (`batch_mean`)."""
    if count is None:
        return F.cross_entropy(logits, targets)
    return F.cross_entropy(logits, targets, reduction="sum") / count


def class_balanced_weights(counts, num_classes: int) -> torch.Tensor:
    """Effective-number weights of Cui et al. (docs/method.md section 3):

        w_c = (1 - eta) / (1 - eta ** n_c),   eta = (C - 1) / C

    `counts` holds n_c per class; C = `num_classes`, the data set's total class count.
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    eta = (num_classes - 1) / num_classes
    return ((1.0 - eta) / (1.0 - torch.pow(eta, counts))).to(torch.float32)


def balanced_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                           reduction: str = "sum", count: int | None = None) -> torch.Tensor:
    """L_cls with re-balancing: sum_i w_{y_i} * CE(z_i, y_i).

    The original code sums over the batch (reduction "sum"; a process's sum is its share of
    the global batch's sum as it is); "mean" divides by the batch size (`batch_mean`).
    """
    per_sample = F.cross_entropy(logits, labels, reduction="none") * weights[labels]
    return per_sample.sum() if reduction == "sum" else batch_mean(per_sample, count)


def distillation(student_old_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 temperature: float, count: int | None = None) -> torch.Tensor:
    """T^2 * mean_i( -sum_j p_ij log q_ij ), p = softmax(z_prev / T), q = log_softmax(z_old / T).

    The dscale * alpha factor of L_KD is applied by the caller (`phase_loss`).
    """
    p = F.softmax(teacher_logits / temperature, dim=1)
    log_q = F.log_softmax(student_old_logits / temperature, dim=1)
    return temperature**2 * batch_mean(-(p * log_q).sum(dim=1), count)


def mg_regularizer(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
                   target_neg_entropy: torch.Tensor | None = None, count: int | None = None
                   ) -> torch.Tensor:
    """L_MG = KL(s_y || softmax(z)), averaged over the batch ("batchmean").

    `targets` is the (K, K) soft-target matrix of `mgrb.method.soft_targets.soft_targets`; row y is s_y.
    KL = sum_j s_j log s_j - sum_j s_j log p_j: the first sum depends on the class alone, so
    a phase computes it once (`target_neg_entropy`, see `negative_entropy`); the second is a
    cross-entropy with probability targets, one fused operation.
    """
    if target_neg_entropy is None:
        target_neg_entropy = negative_entropy(targets)
    return batch_mean(target_neg_entropy[labels], count) + cross_entropy(logits, targets[labels],
                                                                         count)


def negative_entropy(targets: torch.Tensor) -> torch.Tensor:
    """sum_j s_yj log s_yj per class y; xlogy makes 0 log 0 = 0 for underflowed targets."""
    return torch.xlogy(targets, targets).sum(dim=1)


def phase_loss(logits: torch.Tensor, labels: torch.Tensor, *, loss_set: str, n_old: int,
               teacher_logits: torch.Tensor | None, class_weights: torch.Tensor | None,
               targets: torch.Tensor | None, temperature: float, dscale: float, scale: float,
               cb_reduction: str, target_neg_entropy: torch.Tensor | None = None,
               count: int | None = None) -> dict[str, torch.Tensor]:
    """Stage-1 loss of an incremental phase t > 0 (docs/method.md section 3):

        L = L_KD + (1 - alpha) * L_cls + lambda * L_MG,   alpha = n_old / n_seen

    composed per loss set: ce -> L_cls; ce+distill -> L_KD + (1-alpha) L_cls;
    ce+hierloss -> L_cls + lambda L_MG; distill+hierloss -> L_KD + lambda L_MG.
    L_cls is class-balanced when `class_weights` is given, else the plain mean CE.
    Returns every computed term and their sum under "total". `count`: see `batch_mean`.
    """
    parts = set(loss_set.split("+"))
    alpha = n_old / logits.shape[1]
    terms: dict[str, torch.Tensor] = {}
    total = logits.new_zeros(())
    if "ce" in parts:
        if class_weights is None:
            cls = cross_entropy(logits, labels, count)
        else:
            cls = balanced_cross_entropy(logits, labels, class_weights, cb_reduction, count)
        terms["cls"] = cls
        total = total + (1.0 - alpha) * cls if "distill" in parts else total + cls
    if "distill" in parts:
        kd = dscale * alpha * distillation(logits[:, :n_old], teacher_logits, temperature, count)
        terms["kd"] = kd
        total = total + kd
    if "hierloss" in parts:
        mg = mg_regularizer(logits, labels, targets, target_neg_entropy, count)
        terms["mg"] = mg
        total = total + scale * mg
    terms["total"] = total
    return terms


def classifier_retrain_loss(logits: torch.Tensor, labels: torch.Tensor, *, n_old: int,
                            targets: torch.Tensor | None, scale: float,
                            target_neg_entropy: torch.Tensor | None = None
                            ) -> dict[str, torch.Tensor]:
    """Stage-2 loss (docs/method.md section 4): (1 - alpha) * CE + lambda * L_MG.

    The original adds a distillation term whose teacher is the classifier itself under
    no-grad; teacher equals student at every step, so its gradient is zero and it is dropped.
    """
    alpha = n_old / logits.shape[1]
    ce = F.cross_entropy(logits, labels)
    terms = {"cls": ce}
    total = (1.0 - alpha) * ce
    if targets is not None:
        mg = mg_regularizer(logits, labels, targets, target_neg_entropy)
        terms["mg"] = mg
        total = total + scale * mg
    terms["total"] = total
    return terms
