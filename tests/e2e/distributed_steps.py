"""Three stage-1 steps of an incremental phase (every loss term: class-balanced CE summed over
the batch, distillation, the MG regulariser), run as one process or as one of several
(RANK/WORLD_SIZE in the environment, gloo), through the trainer's own pieces: the batch
maker with its `part`, synchronised batch norm, DistributedDataParallel, stage1_step.

    python distributed_steps.py OUT.pt

Rank 0 saves the summed loss terms of each step, the gradients of the first step, and the
weights and batch-norm running statistics after all. Batches of 24, 15 and 1 images: the
second splits unevenly, the third leaves one process nothing."""

import copy
import os
import sys

import torch

from mgrb.config.schema import Method
from mgrb.data.augment import Augment
from mgrb.data.batches import TensorBatches
from mgrb.method.phase import PhaseLosses, stage_inputs
from mgrb.training.control import stage1_step
from mgrb.training.distributed import LogitsModule, join, leave
from mgrb.training.models import IncrementalNet, build_backbone
from mgrb.training.syncbn import synchronise_batch_norm

N_OLD, N_SEEN, SIZES = 4, 6, (24, 15, 1)


def main(out: str) -> None:
    group, device = join("cpu")
    torch.manual_seed(0)
    images = torch.randint(0, 256, (sum(SIZES), 3, 12, 12), dtype=torch.uint8)
    labels = torch.randint(0, N_SEEN, (sum(SIZES),))
    model = IncrementalNet(build_backbone("resnet_small", 3), N_SEEN)
    teacher = copy.deepcopy(model).eval()
    targets = torch.softmax(torch.randn(N_SEEN, N_SEEN) * 3, dim=1)
    inputs = stage_inputs(Method(losses="ce+distill+hierloss", scale=0.5), N_OLD, N_SEEN,
                          teacher=lambda x: teacher(x)[:, :N_OLD],
                          class_weights=torch.rand(N_SEEN) + 0.5, targets=targets)
    method = PhaseLosses.of(inputs, phase=1, cb_reduction="sum", stage2_targets=targets)
    if group.several:
        synchronise_batch_norm(model)
    model.train()
    network = group.wrap(LogitsModule(model, lambda x: model(x)), torch.device(device))
    # plain SGD: AdamW's normalisation would magnify float-order differences of gradients near
    # zero into weight differences that say nothing about the distribution of the batch
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = TensorBatches(images, labels, (0.5,) * 3, (0.25,) * 3, device)
    augment = Augment(crop_padding=2, flip=True, rotation=10)
    generator = torch.Generator().manual_seed(1)
    steps, start, gradients = [], 0, None
    for size in SIZES:  # one batch of each size, drawn as the stage-1 loop draws them
        indices = torch.arange(start, start + size)
        start += size
        x, y = next(data.batches(indices, size, shuffle=True, augment=augment,
                                 generator=generator, part=group.part))
        terms = stage1_step(method, network, optimizer, x, y,
                            global_count=size if group.several else None, world=group.world)
        names = sorted(terms)
        summed = group.sum(torch.stack([terms[name].detach() for name in names]))
        steps.append(dict(zip(names, summed.tolist())))
        gradients = gradients or {name: parameter.grad.clone()
                                  for name, parameter in model.named_parameters()}
    if group.leader:
        torch.save({"steps": steps, "gradients": gradients, "state": model.state_dict()}, out)
    leave(group)


if __name__ == "__main__":
    main(sys.argv[1])
    sys.stderr.flush()
    os._exit(0)  # as mgrb/__main__.py ends the processes of a run, and for the same reason
