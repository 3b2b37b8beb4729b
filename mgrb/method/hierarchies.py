"""Where each phase's hierarchy comes from (docs/method.md section 5): ont, vis, sem.

A hierarchy is described by plain data (groups or paths and depths) so that a checkpoint can
carry it and a resumed run rebuilds exactly the same soft targets.
"""

from __future__ import annotations

import torch

from mgrb.config.schema import Hierarchy, Quirks
from mgrb.data.registry import DATASETS
from mgrb.errors import ConfigError
from mgrb.method.soft_targets import soft_targets, tree_height, visual_groups


def _synset_names(dataset: str, data) -> list[str] | None:
    if data.wnids is not None:
        return list(data.wnids)
    synsets = DATASETS[dataset].synsets
    return None if synsets is None else list(synsets)


def describe_hierarchy(hierarchy: Hierarchy, quirks: Quirks, *, dataset: str, data,
                       order: list[int], n_seen: int,
                       class_features: torch.Tensor | None) -> dict:
    """The hierarchy over labels 0..n_seen-1 as plain data; class_features for 'vis'."""
    kind, clusters = hierarchy.kind, hierarchy.clusters
    classes = order[:n_seen]
    if kind == "none":
        return {"kind": "none"}
    if kind == "vis":
        forced = quirks.cifar10_vis_clusters
        if DATASETS[dataset].vis_clusters_fixed and forced is not None:
            clusters = forced  # the original ignores -cluster on CIFAR-10 (docs/method.md section 5)
        return {"kind": "vis", "source": "k-means of class-mean features (balanced set)",
                "clusters": min(clusters, n_seen),
                "groups": visual_groups(class_features, clusters)}
    if kind == "sem":
        from mgrb.method import wordnet

        names = _synset_names(dataset, data)
        if names is None:
            raise ConfigError(f"hierarchy.kind: sem needs WordNet synsets for the classes of "
                              f"{dataset}; none are known (use {DATASETS[dataset].hierarchies_besides('sem')})")
        return {"kind": "sem", "source": wordnet.SOURCE, "clusters": min(clusters, n_seen),
                "groups": wordnet.semantic_groups([names[c] for c in classes], clusters)}
    # ont
    if data.coarse_labels is not None:
        return {"kind": "ont", "source": f"{dataset} superclasses",
                "groups": [data.coarse_labels[c] for c in classes]}
    if data.wnids is not None:
        from mgrb.method import wordnet

        paths = [wordnet.hypernym_path(data.wnids[c]) for c in classes]
        height = tree_height(paths)
        return {"kind": "ont", "source": "WordNet hypernym paths (NLTK, first hypernym)",
                "paths": paths, "tree_height": height,
                "depth_stage1": quirks.tree_depth_stage1 or height,
                "depth_stage2": quirks.tree_depth_stage2 or height}
    raise ConfigError(f"hierarchy.kind: ont needs superclasses or WordNet ids; {dataset} has "
                      f"neither (use {DATASETS[dataset].hierarchies_besides('ont')})")


def hierarchy_targets(description: dict, beta: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(stage-1 targets, stage-2 targets) of a described hierarchy."""
    if description["kind"] == "none":
        return None, None
    if "groups" in description:
        targets = soft_targets(beta=beta, coarse=description["groups"])
        return targets, targets
    paths = description["paths"]
    return (soft_targets(beta=beta, paths=paths, depth=description["depth_stage1"]),
            soft_targets(beta=beta, paths=paths, depth=description["depth_stage2"]))


def public_description(description: dict) -> dict:
    """What results.json records: everything but the long WordNet paths."""
    return {key: value for key, value in description.items() if key != "paths"}
