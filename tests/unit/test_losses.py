"""Each formula of docs/method.md sections 3-4 against values worked out by hand, through the
term table the method composes (mgrb/method/terms.py) and the phase's losses built from it."""

import math

import pytest
import torch
import torch.nn.functional as F

from mgrb.config.schema import Method
from mgrb.method.phase import PhaseLosses, stage_inputs
from mgrb.method.terms import (Batch, Reduce, chosen_terms, class_balanced_weights,
                               classification, compose, distillation, multi_granularity)


def _inputs(*, n_old=3, n_seen=5, method=None, teacher=None, class_weights=None, targets=None):
    return stage_inputs(method or Method(), n_old, n_seen, teacher=teacher,
                        class_weights=class_weights, targets=targets)


def test_class_balanced_weights_hand_values():
    # eta = 0.99; w = 0.01 / (1 - 0.99**n): n = 18 -> 0.01 / 0.165487 ; n = 500 -> 0.01 / 0.993430
    weights = class_balanced_weights([18, 500], num_classes=100)
    assert weights.tolist() == pytest.approx([0.0604280, 0.0100661], rel=1e-5)
    # CIFAR-10: eta = 0.9; n = 180 -> ~0.1 ; n = 1 -> (1 - 0.9) / (1 - 0.9) = 1
    assert class_balanced_weights([1, 180], 10).tolist() == pytest.approx([1.0, 0.1], rel=1e-6)


def test_balanced_cross_entropy_sums_by_default():
    batch = Batch(torch.zeros(3, 2), torch.tensor([0, 1, 1]), None)
    inputs = _inputs(n_old=1, n_seen=2, class_weights=torch.tensor([2.0, 1.0]))
    # CE of uniform logits over 2 classes = ln 2 per sample; weights 2 + 1 + 1
    assert classification(inputs, batch, Reduce()).item() == pytest.approx(4 * math.log(2))
    assert classification(inputs, batch, Reduce(balanced_reduction="mean")).item() == \
        pytest.approx(4 / 3 * math.log(2))


def test_a_process_share_adds_up_to_the_global_batch():
    """Over two processes each holds half of a global batch: the shares of the mean terms add
    up to the global mean, the summed class-balanced L_cls to the global sum."""
    torch.manual_seed(3)
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    inputs = _inputs(class_weights=torch.rand(5) + 0.5,
                     targets=torch.softmax(torch.randn(5, 5), 1))
    for term in (classification, multi_granularity):
        whole = term(inputs, Batch(logits, labels, None), Reduce())
        halves = sum(term(inputs, Batch(logits[part], labels[part], None), Reduce(count=8))
                     for part in (slice(0, 4), slice(4, 8)))
        assert halves.item() == pytest.approx(whole.item(), rel=1e-6), term.__name__


def _distillation(student, teacher, temperature):
    """The term's T^2 * mean CE part alone: dscale * alpha = 1."""
    n = student.shape[1]
    inputs = _inputs(n_old=n, n_seen=n, method=Method(temperature=temperature, dscale=1.0),
                     teacher=lambda images: teacher)
    return distillation(inputs, Batch(student, None, None), Reduce())


def test_distillation_is_t_squared_times_cross_entropy():
    same = torch.zeros(1, 2)
    assert _distillation(same, same, 2.0).item() == pytest.approx(4 * math.log(2))
    teacher = torch.tensor([[0.0, 0.0]])
    student = torch.tensor([[0.0, 2 * math.log(3)]])  # /T -> [0, ln 3] -> q = [1/4, 3/4]
    expected = 4 * -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert _distillation(student, teacher, 2.0).item() == pytest.approx(expected)


def _mg(logits, labels, targets):
    inputs = _inputs(n_old=1, n_seen=targets.shape[0], targets=targets)
    return multi_granularity(inputs, Batch(logits, labels, None), Reduce())


def test_mg_regularizer_hand_values():
    targets = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3)]])
    labels = torch.tensor([0, 1])
    # sample 1: KL([1,0] || [.5,.5]) = ln 2 ; sample 2: KL([.5,.5] || [.25,.75]) = .5 ln(4/3)
    expected = (math.log(2) + 0.5 * math.log(4 / 3)) / 2
    assert _mg(logits, labels, targets).item() == pytest.approx(expected)


def test_mg_regularizer_equals_torch_kl_batchmean():
    torch.manual_seed(0)
    logits = torch.randn(16, 7)
    targets = torch.softmax(torch.randn(7, 7) * 3, dim=1)
    labels = torch.randint(0, 7, (16,))
    ours = _mg(logits, labels, targets)
    reference = F.kl_div(F.log_softmax(logits, 1), targets[labels], reduction="batchmean")
    assert ours.item() == pytest.approx(reference.item(), rel=1e-6)


def _terms(loss_set, cbloss=True):
    torch.manual_seed(1)
    logits = torch.randn(8, 5, requires_grad=True)
    labels = torch.randint(0, 5, (8,))
    teacher = torch.randn(8, 3)
    inputs = _inputs(method=Method(losses=loss_set, temperature=2.0, dscale=0.1, scale=0.5),
                     teacher=lambda images: teacher,
                     class_weights=class_balanced_weights([18, 18, 18, 500, 500], 100)
                     if cbloss else None,
                     targets=torch.softmax(torch.randn(5, 5), 1))
    losses = PhaseLosses.of(inputs, phase=1, cb_reduction="sum", stage2_targets=None)
    return logits, labels, losses.stage1_loss(logits, labels, torch.zeros(8, 1))


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
    raw = _distillation(logits[:, :3], teacher, 2.0)
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


def test_an_unknown_term_is_named():
    with pytest.raises(ValueError, match="no loss term named mine"):
        chosen_terms("ce+mine")


def test_stage2_loss():
    logits = torch.zeros(4, 4)
    labels = torch.tensor([0, 1, 2, 3])
    targets = torch.eye(4)
    inputs = _inputs(n_old=2, n_seen=4, method=Method(scale=1.0))
    losses = PhaseLosses.of(inputs, phase=1, cb_reduction="sum", stage2_targets=targets)
    terms = losses.stage2_loss(logits, labels)
    # CE = ln 4 ; KL(one-hot || uniform) = ln 4 ; alpha = 1/2
    assert terms["total"].item() == pytest.approx(0.5 * math.log(4) + math.log(4))
    assert losses.runs_stage2


def test_phase_zero_is_plain_cross_entropy_and_skips_stage2():
    torch.manual_seed(2)
    logits, labels = torch.randn(6, 3), torch.randint(0, 3, (6,))
    inputs = _inputs(n_old=0, n_seen=3, method=Method(losses="ce+distill+hierloss"))
    losses = PhaseLosses.of(inputs, phase=0, cb_reduction="sum", stage2_targets=None)
    terms = losses.stage1_loss(logits, labels, None)
    assert set(terms) == {"cls", "total"} and not losses.runs_stage2
    assert terms["total"].item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_compose_weighs_each_term():
    logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])
    inputs = _inputs(n_old=1, n_seen=2)
    terms = compose([(t, lambda i: 3.0) for t, _ in chosen_terms("ce")], inputs,
                    Batch(logits, labels, None), Reduce())
    assert terms["total"].item() == pytest.approx(3 * math.log(2))
