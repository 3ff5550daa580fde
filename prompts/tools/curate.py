"""``bppo data curate``: Ruyi2.5's data pipeline (§3.1.2) applied to a prompt set.

In order, each step counted in the report:

1. hard quality filters: prompt length in tokens outside [min, max]; exact duplicates of
   the question (+ choices) after normalisation; near duplicates (word-3-gram Jaccard >=
   threshold), first occurrence kept (``prompts.tools.dedup``);
2. one forward pass of the policy (or ``--model``) over prompt + response: the prompt's
   embedding (mean last hidden state over its tokens) and the response's loss;
3. instruction-side pruning of low-value queries: the ``drop_easiest`` share of prompts
   whose gold response the model already finds most predictable (lowest perplexity). In RL
   such a prompt gives a group of equal rewards, hence no advantage and no gradient; the
   report states the perplexity at which the cut fell;
4. hierarchical clustering and per-cluster greedy max-min selection down to ``size``
   (``prompts.tools.diversity``).

The curated problems are written in ``bppo data``'s row format (``curated.jsonl``, loadable
with ``data.source.kind=file``), in prompt-set order, with ``curate_report.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from prompts.problems import Problem, format_prompt, render_prompt
from prompts.tools.dedup import exact_duplicates, near_duplicates
from prompts.tools.diversity import (
    mean_nearest_neighbour_cosine_distance,
    mean_pairwise_cosine_distance,
    select_diverse,
    unit_rows,
)
from prompts.tools.outputs import json_text, jsonl_text, write_atomically
from prompts.tools.scores import response_text

CURATED_FILE = "curated.jsonl"
REPORT_FILE = "curate_report.json"


@dataclass(frozen=True)
class CurateSettings:
    model: str
    """Model whose hidden states embed the prompts and whose loss finds the easy ones."""
    size: int
    """Target number of curated problems."""
    leaves: int = 16
    """k of the k-means level (leaf clusters)."""
    groups: int = 4
    """Groups the leaf centroids are merged into (the upper, agglomerative level)."""
    seed: int = 0
    """Seed of k-means and of the random comparison subset."""
    min_prompt_tokens: int = 4
    """Shorter prompts are dropped (a question needs some words)."""
    max_prompt_tokens: int | None = None
    """Longer prompts are dropped; None = no upper bound."""
    near_duplicate_threshold: float = 0.8
    """Word-3-gram Jaccard at or above which a later prompt is a near duplicate."""
    drop_easiest: float = 0.1
    """Share of the filtered prompts dropped as easiest (lowest response perplexity)."""
    batch_tokens: int = 8192
    device: str = "cpu"


def hard_filters(
    questions: list[str], prompt_lengths: list[int], settings: CurateSettings
) -> tuple[list[int], dict[str, int]]:
    """(indices kept, how many each filter removed): the length bounds, then exact and near
    duplicates of the question text (the prompt template is shared, so it says nothing)."""
    upper = settings.max_prompt_tokens
    too_short = {i for i, n in enumerate(prompt_lengths) if n < settings.min_prompt_tokens}
    too_long = {i for i, n in enumerate(prompt_lengths) if upper is not None and n > upper and i not in too_short}
    kept = [i for i in range(len(questions)) if i not in too_short and i not in too_long]
    exact = exact_duplicates([questions[i] for i in kept])
    near = near_duplicates([questions[i] for i in kept], settings.near_duplicate_threshold, skip=set(exact))
    duplicates = {kept[j] for j in exact} | {kept[j] for j in near}
    removed = {
        "prompt_too_short": len(too_short),
        "prompt_too_long": len(too_long),
        "exact_duplicate": len(exact),
        "near_duplicate": len(near),
    }
    return [i for i in kept if i not in duplicates], removed


def easiest(indices: list[int], losses: list[float], share: float) -> list[int]:
    """The ``share`` of ``indices`` (rounded down) with the lowest response loss, i.e. the lowest
    perplexity; ``losses`` is aligned with ``indices``. Ties: lower index first."""
    order = sorted(range(len(indices)), key=lambda j: (losses[j], indices[j]))
    return [indices[j] for j in order[: int(share * len(indices))]]


def curate(
    problems: list[Problem], template: str, chat_template: bool, settings: CurateSettings
) -> tuple[list[Problem], dict]:
    """(curated problems in prompt-set order, the report record)."""
    from prompts.tools.model_stats import encode_pairs, load_causal_lm, pad_token_id, pair_stats

    model, tokenizer = load_causal_lm(settings.model, settings.device)
    prompts = [render_prompt(p, template, tokenizer=tokenizer, chat_template=chat_template) for p in problems]
    pairs = encode_pairs(tokenizer, prompts, [response_text(p) for p in problems])
    questions = [format_prompt(p, "{question}{choices}") for p in problems]
    filtered, removed = hard_filters(questions, [len(prompt) for prompt, _ in pairs], settings)
    if not filtered:
        raise ValueError(f"every prompt was filtered out ({_counts(removed)}): loosen the length bounds")
    stats = pair_stats(
        model,
        [pairs[i] for i in filtered],
        pad_id=pad_token_id(tokenizer),
        embeddings=True,
        batch_tokens=settings.batch_tokens,
        desc="embed + AR loss",
    )
    easy = easiest(filtered, stats.losses, settings.drop_easiest)
    removed["easy_low_perplexity"] = len(easy)
    easy_set = set(easy)
    pool = [j for j, i in enumerate(filtered) if i not in easy_set]  # positions in ``filtered``
    if not pool:
        raise ValueError(f"every prompt was filtered out ({_counts(removed)}): lower --drop-easiest")
    points = unit_rows(stats.embeddings[pool])  # [pool, H]
    selection = select_diverse(
        points, settings.size, leaves=settings.leaves, groups=settings.groups, seed=settings.seed
    )
    chosen = points[selection.indices]
    random_subset = points[
        torch.randperm(len(pool), generator=torch.Generator().manual_seed(settings.seed))[: len(chosen)]
    ]
    curated = [problems[filtered[pool[j]]] for j in selection.indices]
    easy_ceiling = max((stats.losses[j] for j, i in enumerate(filtered) if i in easy_set), default=None)
    report = {
        "problems": len(problems),
        "model": settings.model,
        "seed": settings.seed,
        "filters": {
            "min_prompt_tokens": settings.min_prompt_tokens,
            "max_prompt_tokens": settings.max_prompt_tokens,
            "near_duplicate_threshold": settings.near_duplicate_threshold,
            "near_duplicate_text": "question + choices, word 3-grams",
            "drop_easiest": settings.drop_easiest,
            "easy_perplexity_at_most": None if easy_ceiling is None else _r(math.exp(easy_ceiling)),
        },
        "removed": removed,
        "pool": len(pool),
        "size": settings.size,
        "selected": len(curated),
        "clusters": {
            "method": "seeded spherical k-means leaves, average-linkage groups of their centroids, "
            "budget water-filled over groups then leaves, greedy max-min inside each leaf",
            "leaves": len(selection.leaf_sizes),
            "groups": max(selection.group_of_leaf) + 1,
            "leaf_sizes": selection.leaf_sizes,
            "leaf_budgets": selection.leaf_budgets,
            "group_of_leaf": selection.group_of_leaf,
        },
        "embedding": "mean last hidden state over the prompt tokens, unit length",
        "mean_pairwise_cosine_distance": _subset_metric(mean_pairwise_cosine_distance, points, chosen, random_subset),
        "mean_nearest_neighbour_cosine_distance": _subset_metric(
            mean_nearest_neighbour_cosine_distance, points, chosen, random_subset
        ),
        "truncated_pairs": stats.truncated,
    }
    return curated, report


def write_curated(out_dir: Path, curated: list[Problem], report: dict) -> tuple[Path, Path]:
    """``curated.jsonl`` (``bppo data``'s row format) and ``curate_report.json``."""
    from prompts.images import image_count

    with_images = [p.id for p in curated if image_count(p)]
    if with_images:  # before anything is written
        raise ValueError(
            f"{len(with_images)} curated prompts carry images (e.g. {with_images[0]}); curated.jsonl holds text: "
            "curate with data.images=drop, and select the same ids from the source file"
        )
    return (
        write_atomically(out_dir / CURATED_FILE, jsonl_text([asdict(p) for p in curated])),
        write_atomically(out_dir / REPORT_FILE, json_text(report)),
    )


def _subset_metric(metric, points: torch.Tensor, chosen: torch.Tensor, random_subset: torch.Tensor) -> dict[str, float]:
    """``metric`` of the curated subset, of a random subset of the same size, and of the pool."""
    return {"curated": _r(metric(chosen)), "random_same_size": _r(metric(random_subset)), "pool": _r(metric(points))}


def _counts(removed: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {count}" for reason, count in removed.items())


def _r(value: float) -> float:
    return round(float(value), 6)
