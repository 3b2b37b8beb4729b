import pytest
import torch

from mgrb.data.protocol import (EXEMPLAR, HOLDOUT, REST, PhasePlan, class_order, memory_roles,
                           memory_sizes, phase_split)


def test_class_order_matches_method_md_check_values():
    assert class_order(100)[:10] == [68, 56, 78, 8, 23, 84, 90, 65, 74, 76]
    assert class_order(10) == [4, 2, 7, 6, 0, 3, 5, 8, 9, 1]
    assert sorted(class_order(100)) == list(range(100))


def test_class_order_leaves_numpy_global_state_alone():
    import numpy as np

    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    class_order(100)
    assert np.random.rand() == expected


@pytest.mark.parametrize("classes,initial,increment,phases", [
    (100, 10, 10, 10), (100, 50, 5, 11), (100, 50, 10, 6), (100, 20, 20, 5), (10, 5, 1, 6),
    (10, 10, 0, 1)])
def test_phase_counts(classes, initial, increment, phases):
    assert PhasePlan(classes, initial, increment).num_phases == phases


def test_impossible_protocol_is_refused():
    with pytest.raises(ValueError, match="do not divide"):
        PhasePlan(100, 50, 7)


def test_seen_and_old():
    protocol = PhasePlan(100, 50, 10)
    assert [protocol.seen(t) for t in range(6)] == [50, 60, 70, 80, 90, 100]
    assert protocol.old(0) == 0 and protocol.old(1) == 50


def test_memory_sizes_of_the_paper():
    assert memory_sizes(100, 2000, None, 0.1) == (20, 2)
    assert memory_sizes(10, 2000, None, 0.1) == (200, 20)
    assert memory_sizes(100, 2000, 30, 0.1) == (30, 3)


def test_roles_take_the_first_images_of_each_class_in_data_set_order():
    labels = torch.tensor([0, 1, 0, 0, 1, 1, 0, 2, 2, 2, 2, 2])
    roles = memory_roles(labels, per_class=3, holdout=1)
    assert roles.tolist() == [HOLDOUT, HOLDOUT, EXEMPLAR, EXEMPLAR, EXEMPLAR, EXEMPLAR, REST,
                              HOLDOUT, EXEMPLAR, EXEMPLAR, REST, REST]


def test_random_selection_keeps_the_counts():
    labels = torch.arange(10).repeat_interleave(50)
    roles = memory_roles(labels, per_class=20, holdout=2, selection="random", seed=3)
    for c in range(10):
        mine = roles[labels == c]
        assert (mine == HOLDOUT).sum() == 2 and (mine == EXEMPLAR).sum() == 18


def test_phase_split_follows_the_protocol():
    protocol = PhasePlan(4, 2, 1)
    train_labels = torch.arange(4).repeat_interleave(10)  # 10 images per class
    roles = memory_roles(train_labels, per_class=5, holdout=1)
    test_labels = torch.arange(4).repeat_interleave(3)
    split = phase_split(protocol, 1, train_labels, roles, test_labels)
    trained = train_labels[split.train]
    # new class 2: all 10 but its 1 hold-out; old classes 0, 1: their 4 exemplars each
    assert torch.bincount(trained, minlength=4).tolist() == [4, 4, 9, 0]
    assert torch.bincount(train_labels[split.balanced], minlength=4).tolist() == [1, 1, 1, 0]
    assert torch.bincount(test_labels[split.test], minlength=4).tolist() == [3, 3, 3, 0]
    assert not set(split.train.tolist()) & set(split.balanced.tolist())
