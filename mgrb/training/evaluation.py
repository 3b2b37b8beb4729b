"""Accuracy after each phase (docs/method.md section 6)."""

from __future__ import annotations

import torch


@torch.no_grad()
def predict(network, batches, indices: torch.Tensor, batch_size: int):
    """(logits, labels) of the images at `indices`, with the test-time transform.

    `network` maps a batch to logits; the caller puts a module in eval mode first.
    """
    if isinstance(network, torch.nn.Module):
        network.eval()
    outputs, labels = [], []
    for x, y in batches.batches(indices, batch_size, shuffle=False, augment=None, generator=None):
        outputs.append(network(x).float())
        labels.append(y)
    return torch.cat(outputs), torch.cat(labels)


def accuracy_report(logits: torch.Tensor, labels: torch.Tensor, n_old: int) -> dict:
    """Top-1, top-5, old/new-class top-1 and per-class top-1, all in percent.

    Top-5 over fewer than five seen classes is top-k with k = classes seen.
    """
    n_seen = logits.shape[1]
    k = min(5, n_seen)
    top = logits.topk(k, dim=1).indices
    correct1 = top[:, 0] == labels
    correct5 = (top == labels[:, None]).any(dim=1)
    per_class_total = torch.bincount(labels, minlength=n_seen).double()
    per_class_correct = torch.bincount(labels[correct1], minlength=n_seen).double()
    per_class = (100 * per_class_correct / per_class_total.clamp(min=1)).tolist()
    old = labels < n_old

    def percent(mask):
        return round(100 * mask.double().mean().item(), 4) if mask.numel() else None

    return {
        "top1": percent(correct1),
        "top5": percent(correct5),
        "old_top1": percent(correct1[old]) if n_old else None,
        "new_top1": percent(correct1[~old]),
        "per_class_top1": [round(value, 4) for value in per_class],
    }


def summarise(phases: list[dict]) -> dict:
    """Average incremental accuracy (phase 0 included) and last accuracy."""
    top1 = [phase["top1"] for phase in phases]
    return {"avg_top1": round(sum(top1) / len(top1), 4), "last_top1": top1[-1]}
