"""Class hierarchies and the soft targets of the multi-granularity regulariser.

docs/method.md section 3: for class y, s_y = softmax(l_y) with l_y[y] = 0 and
  two-level (coarse groups): l_y[j] = -beta/2 if j is in y's group, else -beta;
  tree (root-to-leaf paths):  l_y[j] = -beta * d(y, j) / (D - 1),
  d(y, j) = length of the longer path minus the length of the common prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _path_matrix(paths: Sequence[Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
    """Paths as a padded (K, L) integer matrix of node ids (-1 past the end) and lengths."""
    node_ids: dict = {}
    lengths = torch.tensor([len(p) for p in paths])
    matrix = torch.full((len(paths), int(lengths.max())), -1, dtype=torch.long)
    for row, path in enumerate(paths):
        for col, node in enumerate(path):
            matrix[row, col] = node_ids.setdefault(node, len(node_ids))
    return matrix, lengths


def _common_prefix_lengths(matrix: torch.Tensor) -> torch.Tensor:
    """(K, K) lengths of the common prefix of every pair of padded paths."""
    equal = (matrix[:, None, :] == matrix[None, :, :]) & (matrix[:, None, :] >= 0)
    return torch.cumprod(equal.long(), dim=2).sum(dim=2)


def tree_distances(paths: Sequence[Sequence]) -> torch.Tensor:
    """(K, K) matrix of d(y, j) = max(len_y, len_j) - common_prefix(y, j)."""
    matrix, lengths = _path_matrix(paths)
    longer = torch.maximum(lengths[:, None], lengths[None, :])
    return longer - _common_prefix_lengths(matrix)


def tree_height(paths: Sequence[Sequence]) -> int:
    """D: levels from the classes' common ancestor down to the deepest leaf (both counted).

    With this D the largest d(y, j) is D - 1, so tree logits span [-beta, 0].
    """
    matrix, lengths = _path_matrix(paths)
    shared = int(torch.cumprod((matrix == matrix[:1]).all(dim=0).long(), dim=0).sum())
    return int(lengths.max()) - shared + 1


def soft_targets(*, beta: float, coarse: Sequence[int] | None = None,
                 paths: Sequence[Sequence] | None = None, depth: int | None = None) -> torch.Tensor:
    """The (K, K) soft-target matrix; row y is the target distribution s_y of class y.

    Give `coarse` (group id per class) for a two-level hierarchy, or `paths` (root-to-leaf
    node sequence per class) for a tree; `depth` is D, the tree height over these classes
    when None.
    """
    if (coarse is None) == (paths is None):
        raise ValueError("give exactly one of coarse= or paths=")
    if coarse is not None:
        groups = torch.as_tensor(list(coarse))
        same = groups[:, None] == groups[None, :]
        logits = torch.where(same, -beta / 2.0, -float(beta)).double()
        logits.fill_diagonal_(0.0)
    else:
        distances = tree_distances(paths).double()
        height = tree_height(paths) if depth is None else depth
        if height <= 1:  # a single class: nothing to share probability with
            logits = torch.where(distances == 0, 0.0, -float("inf")).double()
        else:
            logits = -beta * distances / (height - 1)
    return torch.softmax(logits, dim=1).float()


def visual_groups(features: torch.Tensor, clusters: int, random_state: int = 0) -> list[int]:
    """Two-level 'vis' hierarchy: k-means of class-mean features (docs/method.md section 5).

    Fewer classes than clusters -> one group per class. n_init=10 is scikit-learn's
    historical default, which the original code ran with.
    """
    from sklearn.cluster import KMeans

    k = min(clusters, features.shape[0])
    data = features.detach().double().cpu().numpy()
    labels = KMeans(n_clusters=k, random_state=random_state, n_init=10).fit_predict(data)
    return _renumber(labels)


def _renumber(labels) -> list[int]:
    """Group ids in order of first appearance, so equal groupings compare equal."""
    mapping: dict[int, int] = {}
    return [mapping.setdefault(int(g), len(mapping)) for g in np.asarray(labels)]
