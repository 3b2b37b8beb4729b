import math

import pytest
import torch

from mgrb.method.soft_targets import soft_targets, tree_distances, tree_height, visual_groups


def _softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_two_level_targets_hand_values():
    targets = soft_targets(beta=2.0, coarse=[0, 0, 1])
    # class 0: itself 0, same group -beta/2 = -1, other group -beta = -2
    assert targets[0].tolist() == pytest.approx(_softmax([0, -1, -2]), rel=1e-6)
    assert targets[2].tolist() == pytest.approx(_softmax([-2, -2, 0]), rel=1e-6)
    assert torch.allclose(targets.sum(1), torch.ones(3))


PATHS = [["root", "a", "x"], ["root", "a", "y"], ["root", "b"]]


def test_tree_distance_is_longer_path_minus_common_prefix():
    assert tree_distances(PATHS).tolist() == [[0, 1, 2], [1, 0, 2], [2, 2, 0]]


def test_tree_height_counts_levels_below_the_common_ancestor():
    assert tree_height(PATHS) == 3
    # a shared trunk above the common ancestor does not count
    assert tree_height([["e", "t", *p] for p in PATHS]) == 3


def test_tree_targets_hand_values():
    targets = soft_targets(beta=2.0, paths=PATHS)  # D = 3: l = -2 * d / 2 = -d
    assert targets[0].tolist() == pytest.approx(_softmax([0, -1, -2]), rel=1e-6)
    assert targets[2].tolist() == pytest.approx(_softmax([-2, -2, 0]), rel=1e-6)
    quirk = soft_targets(beta=2.0, paths=PATHS, depth=2)  # the original's stage-1 D = 2
    assert quirk[0].tolist() == pytest.approx(_softmax([0, -2, -4]), rel=1e-6)


def test_single_class_tree_is_one_hot():
    assert soft_targets(beta=50, paths=[["r", "x"]]).tolist() == [[1.0]]


def test_soft_targets_needs_exactly_one_hierarchy():
    with pytest.raises(ValueError):
        soft_targets(beta=1.0)
    with pytest.raises(ValueError):
        soft_targets(beta=1.0, coarse=[0], paths=[["r"]])


def test_visual_groups_cluster_class_means():
    features = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
    assert visual_groups(features, clusters=2) == [0, 0, 1, 1]
    assert visual_groups(features[:1], clusters=5) == [0]  # fewer classes than clusters


@pytest.mark.parametrize("kind", ["ont", "sem"])
def test_a_refused_hierarchy_kind_advises_only_kinds_the_data_set_has(kind):
    """On digits, ont used to advise 'vis or sem' and sem 'vis, or ont': each the other refusal."""
    from types import SimpleNamespace

    from mgrb.config.schema import Hierarchy, Quirks
    from mgrb.errors import ConfigError
    from mgrb.method.hierarchies import describe_hierarchy

    bare = SimpleNamespace(wnids=None, coarse_labels=None)  # digits' data: no ontology, no synsets
    with pytest.raises(ConfigError) as refused:
        describe_hierarchy(Hierarchy(kind=kind), Quirks(), dataset="digits", data=bare,
                           order=list(range(10)), n_seen=10, class_features=None)
    assert str(refused.value).endswith("(use vis)")
