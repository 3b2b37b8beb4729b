"""Batch norm over the whole global batch when a run is spread over several processes, so
that its statistics are those of the single-process run (docs/method.md section 9).

On GPUs (NCCL) that is torch.nn.SyncBatchNorm: fused CUDA kernels, one all-gather a layer
in the forward pass and one all-reduce in the backward. It refuses CPU tensors, and the CPU
(gloo) is where the multi-process path is tested, so there the layers are SyncedBatchNorm2d,
written here for any backend. Both keep BatchNorm2d's parameters and buffers under the same
names, so a checkpoint moves between them and a single-process run.

SyncedBatchNorm2d gathers each process's batch statistics and combines them:

    N = sum_r n_r,   mean = sum_r n_r mean_r / N,
    var = sum_r n_r (var_r + (mean_r - mean)^2) / N              (biased, to normalise)

which is the batch's own mean and variance, without the cancellation of E[x^2] - E[x]^2. The
gather is differentiable, so gradients flow through the shared statistics as in one process.
Running statistics take the unbiased variance, var * N / (N - 1), as BatchNorm2d does.
"""

from __future__ import annotations

import torch
from torch import nn


def _gathered(stats: torch.Tensor) -> torch.Tensor:
    """(world, len(stats)): every process's `stats`, with gradients flowing back to each (the
    functional collective, which torch.compile can trace, unlike torch.distributed.nn's)."""
    import torch.distributed as dist
    import torch.distributed._functional_collectives as collectives

    if not hasattr(collectives, "all_gather_single_autograd"):
        # torch 2.10 (the CUDA 12 variant): its functional gather backpropagates through an op
        # with no autograd kernel (a warning on every step), so the classic differentiable one
        from torch.distributed.nn.functional import all_gather

        return torch.stack(all_gather(stats))
    gathered = collectives.all_gather_single_autograd(stats[None], 0, dist.group.WORLD)
    return collectives.wait_tensor(gathered)


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics cover every process's part of the batch;
    in eval mode, or in a single process, it is BatchNorm2d (same parameters and buffers, so
    checkpoints do not depend on it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        channels = x.shape[1]
        values = x.float().transpose(0, 1).reshape(channels, -1)
        count = values.new_full((1,), values.shape[1])
        denominator = count.clamp(min=1)
        mean = values.sum(dim=1) / denominator
        var = ((values - mean[:, None]) ** 2).sum(dim=1) / denominator
        every = _gathered(torch.cat([count, mean, var]))  # (world, 1 + 2C)
        counts, means, variances = every[:, :1], every[:, 1:1 + channels], every[:, 1 + channels:]
        total = counts.sum()
        global_mean = (counts * means).sum(dim=0) / total
        global_var = (counts * (variances + (means - global_mean) ** 2)).sum(dim=0) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None \
                    else 1.0 / float(self.num_batches_tracked)
                unbiased = global_var * total / (total - 1).clamp(min=1)
                self.running_mean.lerp_(global_mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        scale = torch.rsqrt(global_var + self.eps)
        if self.affine:
            shift = self.bias - global_mean * scale * self.weight
            scale = scale * self.weight
        else:
            shift = -global_mean * scale
        y = x.float() * scale[None, :, None, None] + shift[None, :, None, None]
        return y.to(x.dtype)


def synchronise_batch_norm(module: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """`module` with every BatchNorm2d synchronised over the processes: SyncBatchNorm on a
    CUDA device, SyncedBatchNorm2d elsewhere. Call before moving the module to `device`;
    returns the module (a new one only when `module` is itself a batch norm)."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_synced(module)


def _to_synced(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        synced = SyncedBatchNorm2d(module.num_features, eps=module.eps, momentum=module.momentum,
                                   affine=module.affine,
                                   track_running_stats=module.track_running_stats)
        synced.load_state_dict(module.state_dict())
        synced.train(module.training)
        return synced.to(next(module.buffers()).device)
    for name, child in module.named_children():
        setattr(module, name, _to_synced(child))
    return module
