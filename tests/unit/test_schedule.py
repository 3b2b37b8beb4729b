"""The learning-rate schedule against a simulation of the original's (CIL-MGRB code/etrain.py
and code/util.py, docs/method.md section 3): two AdamW optimisers, each with a MultiStepLR
stepped as `scheduler.step(epoch)` at the end of every epoch from epoch 1 on, a per-batch
warm-up over the first epoch on the backbone's optimiser only, and in stage 2 a fresh
classifier optimiser with MultiStepLR([15]). Every batch's rate of both, to the last bit."""

import warnings

import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler, MultiStepLR

from mgrb.config.schema import Quirks, Train
from mgrb.training.control import learning_rate, set_stage1_rates

# the original's order of calls, which torch now warns about
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of")


class _OriginalWarmUp(LRScheduler):
    """The original's WarmUpLR: base_lr * last_epoch / (total_iters + 1e-8)."""

    def __init__(self, optimizer, total_iters):
        self.total_iters = total_iters
        super().__init__(optimizer)

    def get_lr(self):
        return [base * self.last_epoch / (self.total_iters + 1e-8) for base in self.base_lrs]


def _original_stage1(epochs, iterations, milestones, lr=1e-3, gamma=0.1):
    """[(backbone rate, classifier rate)] of every batch, as the original's loop sets them."""
    backbone = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr, weight_decay=0.05)
    classifier = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr, weight_decay=0.05)
    schedulers = [MultiStepLR(backbone, milestones=milestones, gamma=gamma),
                  MultiStepLR(classifier, milestones=milestones, gamma=gamma)]
    warmup = _OriginalWarmUp(backbone, iterations * 1)
    rates = []
    for epoch in range(epochs):
        for _ in range(iterations):
            if epoch < 1:
                warmup.step()
            rates.append((backbone.param_groups[0]["lr"], classifier.param_groups[0]["lr"]))
        if epoch >= 1:
            with warnings.catch_warnings():  # step(epoch) is deprecated; it is what ran
                warnings.simplefilter("ignore")
                for scheduler in schedulers:
                    scheduler.step(epoch)
    return rates


def _original_stage2(epochs, milestones=(15,), lr=1e-3, gamma=0.1):
    classifier = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr, weight_decay=0.05)
    scheduler = MultiStepLR(classifier, milestones=list(milestones), gamma=gamma)
    rates = []
    for epoch in range(epochs):
        rates.append(classifier.param_groups[0]["lr"])
        if epoch >= 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scheduler.step(epoch)
    return rates


def _ours_stage1(train: Train, quirks: Quirks, iterations: int):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "name": "backbone"},
              {"params": [torch.nn.Parameter(torch.zeros(1))], "name": "classifier"}]
    optimizer = torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)
    rates = []
    for epoch in range(train.epochs):
        for iteration in range(iterations):
            shown = set_stage1_rates(optimizer, train, quirks, epoch=epoch, iteration=iteration,
                                     iterations=iterations)
            backbone, classifier = (group["lr"] for group in optimizer.param_groups)
            assert shown == backbone
            rates.append((backbone, classifier))
    return rates


@pytest.mark.parametrize("epochs, milestones, iterations", [
    (12, [8], 3),               # the digits demo
    (20, [3, 7, 11], 5),        # several decays, one soon after the warm-up
    (6, [1, 2], 4),             # a milestone in the very epoch after the warm-up
    (160, [100, 120], 2),       # miniImageNet's epochs and milestones
])
def test_stage1_rates_equal_the_originals_for_backbone_and_classifier(epochs, milestones, iterations):
    train = Train(epochs=epochs, milestones=tuple(milestones), warmup_epochs=1, lr=1e-3,
                  lr_decay=0.1)
    assert _ours_stage1(train, Quirks(), iterations) == \
        _original_stage1(epochs, iterations, milestones)


@pytest.mark.parametrize("epochs", [30, 40, 16, 17])
def test_stage2_rates_equal_the_originals(epochs):
    ours = [learning_rate(1e-3, epoch=epoch, iteration=0, iterations=1, milestones=(15,),
                          decay=0.1, warmup_epochs=0, late_decay=Quirks().late_decay)
            for epoch in range(epochs)]
    assert ours == _original_stage2(epochs)
    if epochs > 16:
        assert ours[15] == 1e-3 and ours[16] == pytest.approx(1e-4)  # decayed from epoch 16


def test_without_the_quirks_the_schedule_is_torchs_usual_reading():
    """quirks.late_decay and quirks.warmup_backbone_only off: a decay from its milestone's
    epoch, and the warm-up on both groups (what runs made before the quirks had)."""
    train = Train(epochs=6, milestones=(2,), warmup_epochs=1, lr=1e-3, lr_decay=0.1)
    rates = _ours_stage1(train, Quirks(late_decay=False, warmup_backbone_only=False), 2)
    assert rates[0] == (0.5e-3, 0.5e-3) and rates[1] == (1e-3, 1e-3)
    assert rates[3] == (1e-3, 1e-3) and rates[4] == pytest.approx((1e-4, 1e-4))
    late = _ours_stage1(train, Quirks(), 2)
    assert late[0][1] == 1e-3 and late[4][0] == 1e-3 and late[6][0] == pytest.approx(1e-4)


def test_a_one_group_optimiser_state_of_an_older_checkpoint_loads_into_the_two_groups():
    """Checkpoints made before the backbone and the classifier had a group each still resume
    (mgrb.training.trainer._two_groups): every parameter keeps its AdamW moments."""
    from mgrb.training.models import IncrementalNet, build_backbone
    from mgrb.training.trainer import _two_groups

    torch.manual_seed(0)
    model = IncrementalNet(build_backbone("resnet_small", 1), 4)
    old = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 1, 8, 8)).sum().backward()
    old.step()
    groups = [{"params": list(model.backbone.parameters()), "name": "backbone"},
              {"params": list(model.classifier.parameters()), "name": "classifier"}]
    new = torch.optim.AdamW(groups, lr=1e-3)
    new.load_state_dict(_two_groups(old.state_dict(), new))
    assert [group["name"] for group in new.param_groups] == ["backbone", "classifier"]
    for parameter in model.parameters():
        assert torch.equal(new.state[parameter]["exp_avg"], old.state[parameter]["exp_avg"])


def test_a_resume_names_the_epoch_and_batch_as_the_stop_did():
    """The bar shows `epoch 7/12` once epoch 7 is done; a stop in the next one and the resume
    from its checkpoint both say "epoch 8, after batch 3" (the stop message and the resume
    message are made from the checkpoint's position), never a 0-based "epoch 7"."""
    from mgrb.training.control import Position
    from mgrb.training.stage1 import after_batch

    phase, epoch, iteration, iterations = 1, 7, 2, 10  # 0-based, as the loop counts
    assert after_batch(phase, epoch, iteration, iterations).described() == \
        "in phase 2, epoch 8, after batch 3"
    assert after_batch(phase, epoch, iterations - 1, iterations).described() == \
        "in phase 2, at the start of epoch 9"
    assert Position(2).described() == "at the start of phase 3"
    assert Position(2, "stage2").described() == "in phase 3, stage 2"
