"""The experiment files encode the paper (docs/method.md) and carry an honest GPU-time projection."""

from pathlib import Path

import pytest

from mgrb.config import load_config
from mgrb.data.registry import dataset as dataset_record
from mgrb.perf.estimate import (forward_flops, gpu_hours, training_flops, training_image_steps,
                           write_estimate)
from mgrb.data.protocol import PhasePlan

PATHS = sorted(Path(__file__).parents[2].glob("experiments/*.yaml"))
CONFIGS = {path.stem: load_config(path) for path in PATHS}
# The digits demo is not a paper experiment; everything else is.
PAPER = {name: config for name, config in CONFIGS.items()
         if config.dataset.name != "digits"}

# The spec: docs/method.md section 7, CIFAR-100 top-1 %, as (avg, last).
REPORTED = {
    "c100_ont_10_10": (61.02, 45.81), "c100_vis_10_10": (62.38, 47.72),
    "c100_ont_20_20": (66.45, 56.03), "c100_vis_20_20": (68.27, 57.00),
    "c100_ont_50_5": (61.50, 52.59), "c100_vis_50_5": (61.51, 52.69),
    "c100_ont_50_10": (65.45, 58.20), "c100_vis_50_10": (65.69, 58.63),
}

# (dataset, initial, increment, hierarchy kind, clusters or None where kind takes none)
EXPECTED = {
    ("cifar10", 5, 1, "sem", 2), ("cifar10", 5, 1, "vis", 5),
    *{("cifar100", n, m, kind, 5 if kind == "vis" else None)
      for n, m in [(10, 10), (20, 20), (50, 5), (50, 10)] for kind in ("ont", "vis")},
    *{("miniimagenet", n, m, kind, 10 if kind == "vis" else None)
      for n, m in [(50, 10), (50, 5), (20, 20), (10, 10)] for kind in ("ont", "vis")},
    ("imagenet100", 50, 10, "ont", None), ("imagenet100", 50, 5, "ont", None),
}

# Method settings of the original commands per data set: (beta, dscale, scale).
SETTINGS = {"cifar10": (20, 1.0, 0.5), "cifar100": (20, 0.1, 1.0),
            "miniimagenet": (50, 1.0, 1.0), "imagenet100": (50, 1.0, 1.0)}

# Ablations on CIFAR-100 50/10 (ontology where a hierarchy is used):
# name -> (losses, cbloss, decouple, hierarchy kind)
ABLATIONS = {
    "ablation_c100_50_10_baseline": ("ce+distill", False, False, "none"),
    "ablation_c100_50_10_rebalance": ("ce+distill", True, True, "none"),
    "ablation_c100_50_10_regularizer": ("ce+distill+hierloss", False, False, "ont"),
    "ablation_c100_50_10_no_dcp": ("ce+distill+hierloss", True, False, "ont"),
}

# The six experiments whose command line the original README gives.
WITH_COMMAND = {"c10_sem_5_1", "c10_vis_5_1", "c100_ont_10_10", "c100_vis_10_10",
                "mini_ont_50_10", "mini_vis_50_10"}


def _raw_text(name: str) -> str:
    return next(path for path in PATHS if path.stem == name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_file_loads_and_name_is_the_file_stem(name):
    assert CONFIGS[name].name == name
    assert CONFIGS[name].description and "\n" not in CONFIGS[name].description


def test_every_paper_combination_exists_once():
    main = {name: config for name, config in PAPER.items() if name not in ABLATIONS}
    found = {(c.dataset.name, c.protocol.initial, c.protocol.increment,
              c.hierarchy.kind,
              c.hierarchy.clusters if c.hierarchy.kind in ("vis", "sem") else None)
             for c in main.values()}
    assert found == EXPECTED
    assert len(main) == len(EXPECTED)
    assert set(ABLATIONS) <= set(PAPER)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_method_settings_follow_the_original_commands(name):
    config = PAPER[name]
    method, dataset = config.method, config.dataset.name
    assert (method.beta, method.dscale, method.scale) == SETTINGS[dataset]
    expected = ABLATIONS.get(name, ("ce+distill+hierloss", True, True, None))
    assert (method.losses, method.cbloss, method.decouple) == expected[:3]
    if name in ABLATIONS:
        assert config.protocol.initial == 50 and config.protocol.increment == 10
        assert dataset == "cifar100" and config.hierarchy.kind == expected[3]
    # The method settings are written out in the file, not left to defaults.
    text = _raw_text(name)
    for key in ("losses", "cbloss", "dscale", "scale", "beta", "decouple"):
        assert f"\n  {key}: " in text, key
    for key in ("epochs", "milestones", "stage2_epochs"):
        assert f"\n  {key}: " in text, key


@pytest.mark.parametrize("name", sorted(WITH_COMMAND))
def test_provenance_quotes_the_original_command(name):
    provenance = CONFIGS[name].provenance
    assert "python -u etrain.py" in provenance and "-savename" in provenance


@pytest.mark.parametrize("name", sorted(set(PAPER) - WITH_COMMAND))
def test_provenance_says_what_was_inferred(name):
    assert "Inferred" in CONFIGS[name].provenance


def test_cifar100_files_carry_exactly_the_reported_numbers():
    for name, (avg, last) in REPORTED.items():
        reported = CONFIGS[name].reported
        assert (reported.avg_top1, reported.last_top1) == (avg, last), name
        assert reported.tolerance == 2.0
        assert "docs/method.md section 7" in reported.source


@pytest.mark.parametrize("name", sorted(set(CONFIGS) - set(REPORTED)))
def test_no_public_number_means_null(name):
    reported = CONFIGS[name].reported
    assert reported.avg_top1 is None and reported.last_top1 is None
    assert reported.source.startswith("no ")


@pytest.mark.parametrize("dataset,initial,increment,phases", [
    ("cifar100", 10, 10, 10), ("cifar100", 20, 20, 5), ("cifar100", 50, 5, 11),
    ("cifar100", 50, 10, 6), ("cifar10", 5, 1, 6), ("miniimagenet", 10, 10, 10),
    ("imagenet100", 50, 5, 11),
])
def test_protocols_give_the_phase_counts_of_method_md(dataset, initial, increment, phases):
    matching = [c for c in PAPER.values() if (c.dataset.name, c.protocol.initial,
                                              c.protocol.increment) ==
                (dataset, initial, increment)]
    assert matching
    for config in matching:
        protocol = config.protocol
        assert PhasePlan(dataset_record(config.dataset.name).classes, protocol.initial,
                        protocol.increment).num_phases == phases


def test_image_steps_of_cifar100_10_10_by_hand():
    # Memory e = 2000 // 100 = 20 per class, hold-out v = 2, exemplars e - v = 18.
    # Phase 0: 10 classes x (500 - 2) = 4,980 images an epoch.
    # Phase t = 1..9: 10 x 498 + 10t old classes x 18 = 4,980 + 180 t.
    # One epoch of every phase: 10 x 4,980 + 180 x (1 + ... + 9 = 45) = 49,800 + 8,100 = 57,900;
    # x 250 epochs = 14,475,000. Teacher (phases 1..9): (9 x 4,980 + 8,100) x 250 = 13,230,000.
    steps = training_image_steps(CONFIGS["c100_ont_10_10"])
    assert steps["stage1"] == 14_475_000
    assert steps["teacher"] == 13_230_000
    assert steps["per_phase"][0] == 4_980 * 250 and steps["per_phase"][9] == 6_600 * 250


def test_forward_flops_of_cifar_resnet34_at_32():
    # 1.16 GMACs, i.e. about 2.32 GFLOP counted as 2 x MACs.
    assert forward_flops(CONFIGS["c100_ont_10_10"]) == pytest.approx(2.32e9, rel=0.05)


def test_cifar100_10_10_comes_near_the_130_pflop_of_the_issue_tracker():
    assert training_flops(CONFIGS["c100_ont_10_10"]) == pytest.approx(130e15, rel=0.05)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_files_carry_a_projection_labelled_as_assumed(name):
    estimate = PAPER[name].estimate
    assert estimate.gpu_hours is not None and estimate.gpu_hours > 0
    assert "assumed" in estimate.basis
    if estimate.basis.startswith("projection"):  # not stale against the configuration
        assert estimate.gpu_hours == pytest.approx(gpu_hours(PAPER[name]), rel=0.01)


def test_write_estimate_edits_only_its_block(tmp_path):
    path = tmp_path / "exp.yaml"
    before = ("# top\nname: x\n# keep me\nestimate:\n  gpu_hours: null\n  basis: \"\"\n"
              "# and me\ndataset:\n  name: cifar100\n")
    path.write_text(before)
    block = 'estimate:\n  gpu_hours: 1.5\n  basis: "projection: assumed"\n'
    assert write_estimate(path, block)
    assert path.read_text() == before.replace('estimate:\n  gpu_hours: null\n  basis: ""\n', block)
    assert not write_estimate(path, block)  # idempotent
