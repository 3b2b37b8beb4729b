"""The digits demonstration (docs/method.md section 10): the ablation files differ only in the
method's settings, and the memory keeps the paper's imbalance."""

from pathlib import Path

import pytest

from mgrb.config import load_config
from mgrb.data.protocol import memory_sizes

EXPERIMENTS = Path(__file__).parents[2] / "experiments"
DEMO = {path.stem: load_config(path) for path in sorted((EXPERIMENTS / "demo").glob("*.yaml"))}
SHARED = ("dataset", "protocol", "model", "train", "seeds")
NEW_CLASS_TRAIN_IMAGES = 144  # the fewest training images of a digits class (mgrb/data/digits.py)


def test_twelve_settings_each_with_the_classifier_kept_and_fresh():
    assert len(DEMO) == 12
    kept = {name for name, config in DEMO.items() if not config.quirks.fresh_classifier}
    assert kept == {name for name in DEMO if name.endswith("_keep")}
    assert {name.removesuffix("_keep") for name in kept} == set(DEMO) - kept


@pytest.mark.parametrize("name", sorted(DEMO))
def test_every_file_shares_data_order_memory_network_schedule_and_seeds(name):
    reference = DEMO["digits_mgrb"].to_dict()
    config = DEMO[name]
    assert config.name == name
    for section in SHARED:
        assert config.to_dict()[section] == reference[section], section
    assert len(config.run_seeds) == 3


def test_the_memory_keeps_the_papers_imbalance_and_a_balanced_hold_out():
    config = DEMO["digits_mgrb"]
    per_class, holdout = memory_sizes(10, config.protocol.memory_total,
                                      config.protocol.memory_per_class,
                                      config.protocol.holdout_fraction)
    assert holdout >= 1
    assert 1 / 25 <= per_class / NEW_CLASS_TRAIN_IMAGES <= 1 / 20 + 0.005
    assert 20 <= NEW_CLASS_TRAIN_IMAGES / (per_class - holdout) <= 30  # the paper: 498 / 18


def test_make_demo_is_the_full_method_with_the_classifier_kept_at_the_first_seed():
    demo = load_config(EXPERIMENTS / "digits_5_1.yaml").to_dict()
    keep = DEMO["digits_mgrb_keep"].with_seed(1993).to_dict()
    for section in ("dataset", "protocol", "model", "train", "method", "hierarchy", "quirks"):
        assert demo[section] == keep[section], section
