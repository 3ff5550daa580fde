"""Diverse subsets of embedded prompts: Ruyi2.5's clustering + greedy max-min selection (pure torch).

Ruyi2.5 (§3.1.2) clusters the feature vectors hierarchically, then inside each cluster
greedily selects samples by maximising pairwise cosine distance, instead of proportional
random sampling, so frequent concepts do not crowd out the long tail. Here:

1. ``unit_rows``: embeddings scaled to unit length, so a dot product is a cosine similarity.
   Not centred: the mean pairwise cosine distance of centred vectors is ~1 for any subset
   whose mean is near the pool's (every random subset), so it could no longer tell a diverse
   subset from a random one; measured on the tiny model's embeddings of 2,000 synthetic
   prompts, centring left the curated subset at 0.996 against random subsets' 0.994-1.000,
   while raw unit vectors give 0.290 against 0.255-0.271.
2. ``kmeans``: seeded spherical k-means (k-means++ start) into leaf clusters.
3. ``agglomerate``: average-linkage agglomerative clustering of the leaf centroids into
   groups: the upper level of the hierarchy.
4. ``split_budget``: the target size is water-filled over groups, then over the leaves of
   each group: equal shares, capped by what a cluster holds, the surplus passed on to the
   others. Small clusters are kept whole, large ones thinned: the balance Ruyi aims for.
5. ``max_min_order``: inside each leaf, farthest-point selection (start at the point closest
   to the leaf's centre, then always add the point whose nearest selected neighbour is
   farthest away), which greedily maximises the minimum pairwise cosine distance.

Everything runs on CPU float32 with explicit tie rules (lowest index wins), so the same
embeddings and seed give the same subset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Selection:
    """What ``select_diverse`` chose and how the budget was split (for the report)."""

    indices: list[int]
    """Chosen rows, ascending."""
    leaf_sizes: list[int]
    """Rows per k-means leaf."""
    leaf_budgets: list[int]
    """Rows chosen per leaf."""
    group_of_leaf: list[int]
    """Each leaf's group (the agglomerative level)."""


def unit_rows(embeddings: torch.Tensor) -> torch.Tensor:
    """[N, H] -> [N, H]: each row scaled to unit length (float32)."""
    return torch.nn.functional.normalize(embeddings.float(), dim=1)


def mean_pairwise_cosine_distance(points: torch.Tensor) -> float:
    """Mean of 1 - cos over all unordered pairs of the unit rows ``points`` [M, H] (0.0 for M < 2).
    Sum of all pairwise dot products = |sum of rows|^2 - M (the diagonal), so this is O(M H)."""
    count = points.shape[0]
    if count < 2:
        return 0.0
    total = points.sum(0)
    mean_similarity = (torch.dot(total, total) - count) / (count * (count - 1))
    return float(1 - mean_similarity)


def mean_nearest_neighbour_cosine_distance(points: torch.Tensor, *, chunk: int = 1024) -> float:
    """Mean over rows of the cosine distance to the nearest other row of unit rows ``points``
    [M, H] (0.0 for M < 2): how far apart the closest prompts sit, which max-min selection
    raises and near-copies lower. Chunked so M x M similarities never exist at once."""
    count = points.shape[0]
    if count < 2:
        return 0.0
    total = 0.0
    for start in range(0, count, chunk):
        similarity = points[start : start + chunk] @ points.T  # [chunk, M]
        rows = torch.arange(similarity.shape[0])
        similarity[rows, rows + start] = -torch.inf  # not its own neighbour
        total += float((1 - similarity.max(1).values).sum())
    return total / count


def kmeans(points: torch.Tensor, k: int, *, seed: int, iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical k-means of unit rows ``points`` [N, H]: (assignment [N], centroids [k', H]),
    k' = min(k, N). k-means++ start drawn with a seeded generator; stops when no assignment
    changes. An emptied cluster keeps its previous centroid."""
    generator = torch.Generator().manual_seed(seed)
    k = min(k, points.shape[0])
    centroids = [points[int(torch.randint(points.shape[0], (1,), generator=generator))]]
    nearest = 1 - points @ centroids[0]  # [N] cosine distance to the nearest centroid so far
    for _ in range(1, k):
        weights = nearest.clamp(min=0) ** 2
        if float(weights.sum()) <= 0:  # fewer distinct points than k: repeat one
            weights = torch.ones_like(weights)
        chosen = int(torch.multinomial(weights, 1, generator=generator))
        centroids.append(points[chosen])
        nearest = torch.minimum(nearest, 1 - points @ points[chosen])
    centres = torch.stack(centroids)  # [k, H]
    assignment = torch.full((points.shape[0],), -1, dtype=torch.long)
    for _ in range(iterations):
        new_assignment = (points @ centres.T).argmax(1)  # [N]
        if torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        filled = torch.bincount(assignment, minlength=k) > 0
        centres = torch.where(filled[:, None], torch.nn.functional.normalize(sums, dim=1), centres)
    return assignment, centres


def agglomerate(centroids: torch.Tensor, groups: int) -> list[int]:
    """Average-linkage agglomerative clustering of unit rows ``centroids`` [K, H] into
    ``min(groups, K)`` groups by cosine distance; returns each centroid's group, numbered by
    first appearance. Ties merge the pair that comes first in row-major order."""
    count = centroids.shape[0]
    distance = (1 - centroids @ centroids.T).double().fill_diagonal_(torch.inf)  # [K, K]
    alive = torch.ones(count, dtype=torch.bool)
    members = {i: [i] for i in range(count)}
    while len(members) > max(1, groups):
        live = distance.masked_fill(~(alive[:, None] & alive[None, :]), torch.inf)
        a, b = divmod(int(live.argmin()), count)  # the first minimum: a < b (the matrix is symmetric)
        size_a, size_b = len(members[a]), len(members[b])
        # Lance-Williams for average linkage: the merged cluster's mean distance to every other
        distance[a, :] = (size_a * distance[a, :] + size_b * distance[b, :]) / (size_a + size_b)
        distance[:, a] = distance[a, :]
        distance[a, a] = torch.inf
        alive[b] = False
        members[a] += members.pop(b)
    label_of = {}
    for label, root in enumerate(sorted(members, key=lambda r: min(members[r]))):
        for member in members[root]:
            label_of[member] = label
    return [label_of[i] for i in range(count)]


def split_budget(total: int, capacities: list[int]) -> list[int]:
    """Water-filling: ``min(total, sum(capacities))`` shared out as equally as the capacities
    allow. A remainder smaller than the number of open slots goes one each to the clusters
    with the most room left (lowest index on ties)."""
    budgets = [0] * len(capacities)
    remaining = min(total, sum(capacities))
    open_slots = [i for i, capacity in enumerate(capacities) if capacity > 0]
    while remaining > 0 and open_slots:
        share = remaining // len(open_slots)
        if share == 0:
            for i in sorted(open_slots, key=lambda i: (budgets[i] - capacities[i], i))[:remaining]:
                budgets[i] += 1
            break
        for i in open_slots:
            given = min(share, capacities[i] - budgets[i])
            budgets[i] += given
            remaining -= given
        open_slots = [i for i in open_slots if budgets[i] < capacities[i]]
    return budgets


def max_min_order(points: torch.Tensor, count: int) -> list[int]:
    """The first ``count`` row indices of farthest-point selection over unit rows ``points``:
    start at the row most similar to the mean direction, then repeatedly the row whose
    cosine distance to its nearest already-chosen row is largest."""
    count = min(count, points.shape[0])
    if count <= 0:
        return []
    first = int((points @ points.mean(0)).argmax())
    chosen = [first]
    nearest = 1 - points @ points[first]  # [n] distance to the nearest chosen row
    nearest[first] = -torch.inf
    for _ in range(count - 1):
        pick = int(nearest.argmax())  # argmax returns the first maximum: lowest index on ties
        chosen.append(pick)
        nearest = torch.minimum(nearest, 1 - points @ points[pick])
        nearest[chosen] = -torch.inf
    return chosen


def select_diverse(points: torch.Tensor, size: int, *, leaves: int, groups: int, seed: int) -> Selection:
    """The hierarchical selection above: ``size`` row indices of unit rows ``points`` (sorted)."""
    assignment, centres = kmeans(points, leaves, seed=seed)
    leaf_sizes = torch.bincount(assignment, minlength=centres.shape[0]).tolist()
    group_of_leaf = agglomerate(centres, groups)
    group_count = max(group_of_leaf) + 1
    group_sizes = [sum(n for n, g in zip(leaf_sizes, group_of_leaf) if g == group) for group in range(group_count)]
    leaf_budgets = [0] * len(leaf_sizes)
    for group, budget in enumerate(split_budget(size, group_sizes)):
        leaves_here = [leaf for leaf, g in enumerate(group_of_leaf) if g == group]
        for leaf, leaf_budget in zip(leaves_here, split_budget(budget, [leaf_sizes[leaf] for leaf in leaves_here])):
            leaf_budgets[leaf] = leaf_budget
    selected = []
    for leaf, budget in enumerate(leaf_budgets):
        rows = torch.nonzero(assignment == leaf).squeeze(1)
        selected += rows[max_min_order(points[rows], budget)].tolist()
    return Selection(sorted(selected), leaf_sizes, leaf_budgets, group_of_leaf)
