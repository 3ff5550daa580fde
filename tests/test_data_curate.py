"""``bppo data curate``: duplicates by hand, the clustering and max-min selection on constructed
points, and the command end to end (loadable output, determinism, diversity over random)."""

import json
import math

import pytest
import torch

from cli.main import main
from prompts.config import DataConfig, FileSource
from prompts.loaders import load_prompt_set
from prompts.synthetic import generate
from prompts.tools.complexity import words
from prompts.tools.curate import CurateSettings, easiest, hard_filters
from prompts.tools.dedup import exact_duplicates, jaccard, near_duplicates, normalise, numbers, shingles
from prompts.tools.diversity import (
    agglomerate,
    kmeans,
    max_min_order,
    mean_nearest_neighbour_cosine_distance,
    mean_pairwise_cosine_distance,
    select_diverse,
    split_budget,
    unit_rows,
)

TINY_CPU = "configs/tiny_cpu.yaml"


def test_exact_duplicates_after_normalisation():
    assert normalise("  What IS\t2 + 2?\n") == "what is 2 + 2?"
    texts = ["What is 2 + 2?", "  what IS 2 +  2? ", "What is 2 + 3?", "What is 2+2?"]
    assert exact_duplicates(texts) == [1]  # "2+2" is not "2 + 2" after normalisation: punctuation stays


def test_shingles_and_jaccard_by_hand():
    assert shingles("A b, c d") == {"a b c", "b c d"}
    assert shingles("Hi there") == {"hi there"}
    # {abc, bcd} vs {abc, bce}: 1 shared of 3
    assert jaccard(shingles("a b c d"), shingles("a b c e")) == 1 / 3


def test_near_duplicates_removed_and_distinct_prompts_kept():
    base = (
        "In triangle ABC, angle A is 50 degrees and angle B is 60 degrees. What is the measure of angle C in degrees?"
    )
    # 23 words, 21 distinct 3-grams
    reworded = base.replace("degrees?", "degrees? Explain.")  # 1 new 3-gram: Jaccard 21/22
    other_numbers = base.replace("50", "55")  # 3 of 21 change: 18/24, a different problem
    unrelated = "A cylinder has radius 3 and height 5. What is its volume?"
    assert jaccard(shingles(base), shingles(reworded)) == 21 / 22
    assert jaccard(shingles(base), shingles(other_numbers)) == 18 / 24
    assert near_duplicates([base, other_numbers, reworded, unrelated], 0.8) == [2]
    assert near_duplicates([base, reworded, base], 0.8, skip={2}) == [1]
    # one changed number at the end changes 1 of 9 3-grams (Jaccard 0.8): still another problem
    rectangle, other_rectangle = (
        "Find the area of a rectangle with sides 48 and 49.",
        "Find the area of a rectangle with sides 48 and 29.",
    )
    assert jaccard(shingles(rectangle), shingles(other_rectangle)) == 0.8
    assert numbers(rectangle) == ("48", "49") and numbers("Sides 49 and 48, area?") == ("48", "49")
    assert near_duplicates([rectangle, other_rectangle, rectangle.replace("Find", "Now find")], 0.8) == [2]


def _keep_first_brute_force(texts: list[str], threshold: float) -> list[int]:
    sets, kept, dropped = [shingles(t) for t in texts], [], []
    for i, s in enumerate(sets):
        close = any(numbers(texts[i]) == numbers(texts[j]) and jaccard(s, sets[j]) >= threshold for j in kept)
        (dropped if close else kept).append(i)
    return dropped


def test_near_duplicates_among_templated_prompts_equal_the_all_pairs_answer():
    train, _ = generate(300, 1, seed=3)
    questions = list(dict.fromkeys(p.question for p in train))
    # MinHash banding only proposes candidates; the result must be what comparing all pairs gives
    found = near_duplicates(questions, 0.8)
    assert found == _keep_first_brute_force(questions, 0.8)
    kept = [q for i, q in enumerate(questions) if i not in set(found)]
    long_ones = [q for q in kept if len(words(q)) >= 14][:25]
    copies = [q + " Show your work." for q in long_ones]  # n - 2 of n + 1 shingles shared: >= 12/15
    assert len(copies) == 25 and all(jaccard(shingles(q), shingles(c)) >= 0.8 for q, c in zip(long_ones, copies))
    assert near_duplicates(kept + copies, 0.8) == list(range(len(kept), len(kept) + 25))


def test_hard_filters_count_each_removal_and_easiest_by_loss():
    questions = ["a b c d e", "A b c  d e", "x y", "long " * 10, "p q r s t u v w x y z", "p q r s t u v w x y z!"]
    lengths = [5, 5, 2, 50, 11, 11]
    kept, removed = hard_filters(
        questions, lengths, CurateSettings(model="-", size=1, min_prompt_tokens=3, max_prompt_tokens=20)
    )
    assert kept == [0, 4]
    assert removed == {"prompt_too_short": 1, "prompt_too_long": 1, "exact_duplicate": 1, "near_duplicate": 1}
    # the lowest losses first, the lower index on a tie; the share rounds down (0.5 x 4 = 2)
    assert easiest([10, 11, 12, 13], [0.5, 0.1, 0.5, 0.9], 0.5) == [11, 10]
    assert easiest([10, 11, 12], [0.5, 0.1, 0.5], 0.3) == []


def test_split_budget_water_fills():
    assert split_budget(10, [2, 10, 10]) == [2, 4, 4]  # the small cluster kept whole, its surplus passed on
    assert split_budget(5, [1, 1, 1]) == [1, 1, 1]  # more budget than rows: everything
    assert split_budget(7, [5, 5, 5]) == [3, 2, 2]  # the remainder 1 to the lowest index on a tie
    assert split_budget(7, [5, 0, 9]) == [3, 0, 4]  # 3 + 3, then 1 to the one with the most room
    assert split_budget(0, [4, 4]) == [0, 0]


def _angles(*degrees: float) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees])


def test_max_min_order_by_hand():
    points = _angles(0, 2, 4, 180, 90)
    # mean direction ~29 degrees: 4 is nearest to it; then 180 (176 away), then 90 (nearest chosen
    # 86 away, where 0 and 2 are 2-4 away from 4), then 0 (4 from 4) before 2 (2 from 4).
    assert max_min_order(points, 4) == [2, 3, 4, 0]
    assert max_min_order(points, 0) == []
    assert max_min_order(points, 9) == [2, 3, 4, 0, 1]


def test_mean_pairwise_cosine_distance_by_hand():
    points = _angles(0, 90, 180)  # pair distances 1, 2, 1
    assert mean_pairwise_cosine_distance(points) == pytest.approx(4 / 3)
    assert mean_pairwise_cosine_distance(points[:1]) == 0.0
    # nearest neighbours of 0, 10, 90 degrees: 10, 0, 10
    expected = (2 * (1 - math.cos(math.radians(10))) + 1 - math.cos(math.radians(80))) / 3
    assert mean_nearest_neighbour_cosine_distance(_angles(0, 10, 90), chunk=2) == pytest.approx(expected)
    assert mean_nearest_neighbour_cosine_distance(points[:1]) == 0.0


def _clustered(sizes: list[int], dim: int = 16, spread: float = 0.05, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[: len(sizes)]
    return torch.cat([centres[c] + spread * torch.randn(n, dim, generator=generator) for c, n in enumerate(sizes)])


def test_kmeans_and_agglomeration_recover_constructed_clusters():
    points = unit_rows(_clustered([40, 30, 20]))
    assignment, centres = kmeans(points, 3, seed=0)
    labels = [assignment[:40].unique().tolist(), assignment[40:70].unique().tolist(), assignment[70:].unique().tolist()]
    assert all(len(label) == 1 for label in labels) and len({label[0] for label in labels}) == 3
    again, _ = kmeans(points, 3, seed=0)
    assert torch.equal(assignment, again)
    # centroids at 0, 10, 90, 100 degrees: two groups of two
    assert agglomerate(_angles(0, 90, 10, 100), 2) == [0, 1, 0, 1]
    assert agglomerate(_angles(0, 90), 5) == [0, 1]


def test_selection_is_balanced_and_more_diverse_than_random():
    points = unit_rows(_clustered([300, 30, 30]))
    selection = select_diverse(points, 45, leaves=3, groups=3, seed=0)
    assert len(selection.indices) == 45 and selection.indices == sorted(selection.indices)
    assert sorted(selection.leaf_budgets) == [15, 15, 15]  # equal shares, not 3/8/8 as proportional
    random_subset = torch.randperm(len(points), generator=torch.Generator().manual_seed(0))[:45]
    curated = mean_pairwise_cosine_distance(points[selection.indices])
    assert curated > mean_pairwise_cosine_distance(points[random_subset]) + 0.1
    nearest = mean_nearest_neighbour_cosine_distance(points[selection.indices])
    assert nearest > mean_nearest_neighbour_cosine_distance(points[random_subset])
    assert select_diverse(points, 45, leaves=3, groups=3, seed=0) == selection


def test_curate_command_end_to_end(tiny_model, tmp_path, capsys):
    overrides = ["data.source.num_train=150", "data.source.num_test=20"]
    args = [
        "data",
        "curate",
        "--config",
        TINY_CPU,
        *overrides,
        "--model",
        tiny_model,
        "--size",
        "40",
        "--clusters",
        "6",
        "--groups",
        "2",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "curated 40" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    for name in ("curated.jsonl", "curate_report.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    report = json.loads((tmp_path / "a" / "curate_report.json").read_text())
    removed = report["removed"]
    assert set(removed) == {
        "prompt_too_short",
        "prompt_too_long",
        "exact_duplicate",
        "near_duplicate",
        "easy_low_perplexity",
    }
    before_easy = 150 - sum(v for k, v in removed.items() if k != "easy_low_perplexity")
    assert removed["easy_low_perplexity"] == int(0.1 * before_easy) and report["pool"] == before_easy - int(
        0.1 * before_easy
    )
    assert report["selected"] == 40 and sum(report["clusters"]["leaf_budgets"]) == 40
    for metric in ("mean_pairwise_cosine_distance", "mean_nearest_neighbour_cosine_distance"):
        assert report[metric]["curated"] > report[metric]["random_same_size"], metric
    # the same rows `bppo data` writes, and data.source.kind=file loads them
    assert main(["data", "--config", TINY_CPU, *overrides, "--out", str(tmp_path / "plain")]) == 0
    written = {json.loads(line)["id"]: line for line in (tmp_path / "plain" / "train.jsonl").read_text().splitlines()}
    curated_lines = (tmp_path / "a" / "curated.jsonl").read_text().splitlines()
    assert all(written[json.loads(line)["id"]] == line for line in curated_lines)
    loaded = load_prompt_set(DataConfig(source=FileSource(train_path=str(tmp_path / "a" / "curated.jsonl"))))
    assert [p.question for p in loaded.train] == [json.loads(line)["question"] for line in curated_lines]


def test_curate_command_bad_flags(tiny_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "curate", "--config", TINY_CPU, "--size", "10", "--drop-easiest", "1.5"])
    assert exit_info.value.code == 2 and "argument --drop-easiest: '1.5': must be < 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "curate", "--config", TINY_CPU])  # --size is required
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "curate",
                "--config",
                TINY_CPU,
                "data.source.num_train=20",
                "--model",
                tiny_model,
                "--size",
                "5",
                "--min-prompt-tokens",
                "1000",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "every prompt was filtered out (prompt_too_short: 20" in capsys.readouterr().err
    assert not out.exists()
