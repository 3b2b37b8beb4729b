"""The fast path (uint8 tensors on the device, per-phase target and weight tensors indexed by
label) against a plain straightforward one (PIL images through torchvision transforms,
per-sample soft labels and weights built in Python loops, as the original code did):
same losses and gradients in float32 with augmentation off."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from mgrb.config.experiment import parse_config
from mgrb.data.batches import TensorBatches
from mgrb.method.soft_targets import soft_targets
from mgrb.method.phase import PhaseLosses, stage_inputs
from mgrb.method.terms import class_balanced_weights
from mgrb.training.models import IncrementalNet, build_backbone

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
GROUPS = [0, 0, 1, 1, 1]  # two-level hierarchy over 5 seen classes
COUNTS = [18, 18, 18, 500, 500]  # 3 old classes (exemplars), 2 new
BETA, T, DSCALE, SCALE, N_OLD, C = 20.0, 2.0, 0.1, 1.0, 3, 100


def _setup():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 4, 3, 4, 0, 1, 2, 3, 4, 4, 3, 2, 1])
    model = IncrementalNet(build_backbone("resnet_small"), 5)
    teacher = IncrementalNet(build_backbone("resnet_small"), 3).eval()
    return images, labels, model, teacher


def _fast(images, labels, model, teacher, bf16=False):
    config = parse_config("name: t\ndataset: {name: digits}\nprotocol: {initial: 5, increment: 1}"
                          f"\nmethod: {{dscale: {DSCALE}, scale: {SCALE}, beta: {BETA}}}\n"
                          "hierarchy: {kind: vis}\n")
    inputs = stage_inputs(config.method, N_OLD, 5, teacher=teacher,
                          class_weights=class_balanced_weights(COUNTS, C),
                          targets=soft_targets(beta=BETA, coarse=GROUPS))
    method = PhaseLosses.of(inputs, phase=1, cb_reduction=config.quirks.cb_reduction,
                            stage2_targets=None)
    batches = TensorBatches(images, labels, MEAN, STD, "cpu")
    (x, y), = batches.batches(torch.arange(16), 16, shuffle=False, augment=None, generator=None)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        terms = method.stage1_loss(model(x), y, x)
    terms["total"].backward()
    return terms


def _straightforward(images, labels, model, teacher):
    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    pil = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]
    x = torch.stack([to_tensor(image) for image in pil])
    logits = model(x)
    with torch.no_grad():
        teacher_logits = teacher(x)
    alpha = N_OLD / 5
    eta = (C - 1) / C
    kd, cls, mg = 0.0, 0.0, 0.0
    for i in range(len(labels)):
        y = int(labels[i])
        # soft label of this sample, one class at a time
        raw = [0.0 if j == y else (-BETA / 2 if GROUPS[j] == GROUPS[y] else -BETA)
               for j in range(5)]
        total = sum(math.exp(v) for v in raw)
        soft = torch.tensor([math.exp(v) / total for v in raw])
        weight = (1 - eta) / (1 - eta ** COUNTS[y])
        log_p = F.log_softmax(logits[i], dim=0)
        cls = cls + weight * -log_p[y]
        mg = mg + (soft * (torch.log(soft) - log_p)).sum()
        p_teacher = F.softmax(teacher_logits[i] / T, dim=0)
        kd = kd - (p_teacher * F.log_softmax(logits[i, :N_OLD] / T, dim=0)).sum()
    kd = DSCALE * alpha * T * T * kd / len(labels)
    mg = mg / len(labels)
    loss = kd + (1 - alpha) * cls + SCALE * mg
    loss.backward()
    return {"kd": kd, "cls": cls, "mg": mg, "total": loss}


def test_fast_and_straightforward_paths_agree():
    images, labels, model, teacher = _setup()
    twin = copy.deepcopy(model)
    fast = _fast(images, labels, model, teacher)
    slow = _straightforward(images, labels, twin, teacher)
    for name in ("kd", "cls", "mg", "total"):
        assert fast[name].item() == pytest.approx(slow[name].item(), rel=1e-5, abs=1e-6), name
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name


def test_under_bf16_autocast_the_losses_are_fp32_and_near_the_fp32_step():
    """The GPU default (bf16 autocast) on the CPU: the network runs in bf16, every loss term
    in fp32; the step lands near the fp32 one (bf16 keeps 8 bits of mantissa)."""
    images, labels, model, teacher = _setup()
    twin = copy.deepcopy(model)
    mixed = _fast(images, labels, model, teacher, bf16=True)
    full = _fast(images, labels, twin, teacher)
    for name in ("kd", "cls", "mg", "total"):
        assert mixed[name].dtype == torch.float32, name
        assert mixed[name].item() == pytest.approx(full[name].item(), rel=0.05), name
    grads = [(a.grad.flatten(), b.grad.flatten()) for a, b in zip(model.parameters(),
                                                                 twin.parameters())]
    similarity = F.cosine_similarity(torch.cat([a for a, _ in grads]),
                                     torch.cat([b for _, b in grads]), dim=0)
    assert similarity > 0.99


def test_uint8_normalisation_equals_torchvision():
    image = np.random.RandomState(1).randint(0, 256, (8, 8, 3), dtype=np.uint8)
    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])(
        Image.fromarray(image))
    batches = TensorBatches(torch.from_numpy(image).permute(2, 0, 1)[None], torch.tensor([0]),
                            MEAN, STD, "cpu")
    (x, _), = batches.batches(torch.arange(1), 1, shuffle=False, augment=None, generator=None)
    assert torch.allclose(x[0], reference, atol=1e-6)
