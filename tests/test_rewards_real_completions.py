"""The verifier on a real model's natural-language answers, against labels a person gave by reading.

tests/data/smollm2_completions.jsonl: 170 completions of SmolLM2-135M-Instruct (T=0.7, its chat
template, configs/smollm2_cpu.yaml's prompt "Explain your reasoning briefly, then end with: The
answer is <number>.") on the first 22 problems of that preset's level-0 training set, sampled with
`bppo data sample --config configs/smollm2_cpu.yaml --problems 40` (the first 170 of its 320 rows).
Each row carries the final answer a reader finds stated (``label_answer``; null when the text
states none) and whether it is right (``label_correct``). A text that states two different
answers (row 14: "The answer is 9. ... the area ... is 54") is labelled by its explicit "answer
is", i.e. wrong: a grader does not pick the right one of two.

A false positive (a wrong answer scored right) is worse than a miss: none is allowed.
"""

import json
from pathlib import Path

from rewards.config import RewardConfig
from rewards.verify import score

ROWS = [json.loads(line) for line in (Path(__file__).parent / "data/smollm2_completions.jsonl").open(encoding="utf-8")]
PRESET_READERS = ["answer_is", "last_statement"]  # configs/smollm2_cpu.yaml's reward.fallback


def _verdicts(fallback: list[str]) -> list[bool]:
    config = RewardConfig(fallback=fallback)
    return [score(row["completion"], row["gold"], timeout_s=10, config=config).correct for row in ROWS]


def test_the_corpus_is_what_the_test_says():
    assert len(ROWS) == 170 and len({row["id"] for row in ROWS}) == 170
    assert sum(row["label_correct"] for row in ROWS) == 13  # the model is right on few: 8%
    assert sum(row["label_answer"] is None for row in ROWS) == 43  # and states no answer on a quarter


def test_the_presets_readers_agree_with_the_labels_and_never_score_a_wrong_answer_right():
    verdicts = _verdicts(PRESET_READERS)
    false_positives = [row["id"] for row, right in zip(ROWS, verdicts) if right and not row["label_correct"]]
    misses = [row["id"] for row, right in zip(ROWS, verdicts) if row["label_correct"] and not right]
    assert false_positives == []
    # the two misses state an unevaluated product with a bare "is": "the volume ... is 7^3",
    # "the area is simply 9 * 7" (a bare "is" also restates givens, so it is not read)
    assert misses == ["smollm2-031", "smollm2-058"]
    assert (len(ROWS) - len(misses)) / len(ROWS) >= 0.95  # 168 / 170 = 0.988


def test_boxed_only_misses_every_right_answer_of_this_model():
    """Why the preset needs its readers: this model never writes \\boxed{}."""
    assert not any(_verdicts([]))
