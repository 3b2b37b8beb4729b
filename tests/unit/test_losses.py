"""Each formula of docs/method.md sections 3-4 against values worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from mgrb.method.losses import (balanced_cross_entropy, class_balanced_weights,
                         classifier_retrain_loss, distillation, mg_regularizer, phase_loss)


def test_class_balanced_weights_hand_values():
    # eta = 0.99; w = 0.01 / (1 - 0.99**n): n = 18 -> 0.01 / 0.165487 ; n = 500 -> 0.01 / 0.993430
    weights = class_balanced_weights([18, 500], num_classes=100)
    assert weights.tolist() == pytest.approx([0.0604280, 0.0100661], rel=1e-5)
    # CIFAR-10: eta = 0.9; n = 180 -> ~0.1 ; n = 1 -> (1 - 0.9) / (1 - 0.9) = 1
    assert class_balanced_weights([1, 180], 10).tolist() == pytest.approx([1.0, 0.1], rel=1e-6)


def test_balanced_cross_entropy_sums_by_default():
    logits = torch.zeros(3, 2)
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([2.0, 1.0])
    # CE of uniform logits over 2 classes = ln 2 per sample; weights 2 + 1 + 1
    assert balanced_cross_entropy(logits, labels, weights).item() == pytest.approx(4 * math.log(2))
    assert balanced_cross_entropy(logits, labels, weights, "mean").item() == pytest.approx(
        4 / 3 * math.log(2))


def test_distillation_is_t_squared_times_cross_entropy():
    same = torch.zeros(1, 2)
    assert distillation(same, same, 2.0).item() == pytest.approx(4 * math.log(2))
    teacher = torch.tensor([[0.0, 0.0]])
    student = torch.tensor([[0.0, 2 * math.log(3)]])  # /T -> [0, ln 3] -> q = [1/4, 3/4]
    expected = 4 * -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert distillation(student, teacher, 2.0).item() == pytest.approx(expected)


def test_mg_regularizer_hand_values():
    targets = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3)]])
    labels = torch.tensor([0, 1])
    # sample 1: KL([1,0] || [.5,.5]) = ln 2 ; sample 2: KL([.5,.5] || [.25,.75]) = .5 ln(4/3)
    expected = (math.log(2) + 0.5 * math.log(4 / 3)) / 2
    assert mg_regularizer(logits, labels, targets).item() == pytest.approx(expected)


def test_mg_regularizer_equals_torch_kl_batchmean():
    torch.manual_seed(0)
    logits = torch.randn(16, 7)
    targets = torch.softmax(torch.randn(7, 7) * 3, dim=1)
    labels = torch.randint(0, 7, (16,))
    ours = mg_regularizer(logits, labels, targets)
    reference = F.kl_div(F.log_softmax(logits, 1), targets[labels], reduction="batchmean")
    assert ours.item() == pytest.approx(reference.item(), rel=1e-6)


def _terms(loss_set, cbloss=True):
    torch.manual_seed(1)
    logits = torch.randn(8, 5, requires_grad=True)
    labels = torch.randint(0, 5, (8,))
    return logits, labels, phase_loss(
        logits, labels, loss_set=loss_set, n_old=3, teacher_logits=torch.randn(8, 3),
        class_weights=class_balanced_weights([18, 18, 18, 500, 500], 100) if cbloss else None,
        targets=torch.softmax(torch.randn(5, 5), 1), temperature=2.0, dscale=0.1, scale=0.5,
        cb_reduction="sum")


def test_full_loss_composition():
    _, _, terms = _terms("ce+distill+hierloss")
    alpha = 3 / 5
    expected = terms["kd"] + (1 - alpha) * terms["cls"] + 0.5 * terms["mg"]
    assert terms["total"].item() == pytest.approx(expected.item())


def test_kd_term_carries_dscale_and_alpha():
    logits, labels, terms = _terms("ce+distill")
    torch.manual_seed(1)
    torch.randn(8, 5), torch.randint(0, 5, (8,))
    teacher = torch.randn(8, 3)
    raw = distillation(logits[:, :3], teacher, 2.0)
    assert terms["kd"].item() == pytest.approx(0.1 * 3 / 5 * raw.item())
    assert "mg" not in terms


@pytest.mark.parametrize("loss_set,parts", [
    ("ce", {"cls"}), ("ce+distill", {"cls", "kd"}), ("ce+hierloss", {"cls", "mg"}),
    ("distill+hierloss", {"kd", "mg"}), ("ce+distill+hierloss", {"cls", "kd", "mg"})])
def test_every_loss_set_has_its_terms(loss_set, parts):
    _, _, terms = _terms(loss_set)
    assert set(terms) - {"total"} == parts
    if loss_set == "ce+hierloss":  # no alpha weighting without distillation
        assert terms["total"].item() == pytest.approx((terms["cls"] + 0.5 * terms["mg"]).item())


def test_without_cbloss_classification_is_plain_mean_cross_entropy():
    logits, labels, terms = _terms("ce", cbloss=False)
    assert terms["cls"].item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_stage2_loss():
    logits = torch.zeros(4, 4)
    labels = torch.tensor([0, 1, 2, 3])
    targets = torch.eye(4)
    terms = classifier_retrain_loss(logits, labels, n_old=2, targets=targets, scale=1.0)
    # CE = ln 4 ; KL(one-hot || uniform) = ln 4 ; alpha = 1/2
    assert terms["total"].item() == pytest.approx(0.5 * math.log(4) + math.log(4))
