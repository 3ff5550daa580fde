"""MagicVL-2B's dataset complexity score, text-only: the pure math of ``bppo data score``.

MagicVL-2B ("Curriculum Learning Training") scores a dataset of (image v, prompt p,
response x) by three dimensions: text, image and cross-modal task complexity. There is
no image here, so two remain:

- text: response token length L, type-token ratio T of prompt + response, and the
  perplexity P of the response given the prompt under a language model; each is
  normalised and S_text = (L^ + T^ + P^) / 3.
- task: with a small model M_s and a large model M_l, a sample counts when
  ``M_s(x|p) > beta * M_l(x|p) > delta`` (autoregressive losses); the paper's dataset
  score is the share of samples that count.

The paper defines L, T, P and C as means over a dataset (it ranks datasets); a curriculum
ranks samples, so every function here is per sample and the dataset means are what the
paper reports. Nothing here loads a model: losses come in as numbers
(``prompts.tools.model_stats`` computes them). ``load_scores`` reads the combined scores
back from the ``scores.jsonl`` that ``bppo data score`` writes (for a curriculum).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

# A word is a maximal run of letters or digits (Unicode-aware), lowercased: "Angle ABC is
# 50°." -> ["angle", "abc", "is", "50"]. Punctuation, LaTeX backslashes and braces separate
# words and are not words themselves, so "\boxed{50}" -> ["boxed", "50"].
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The lowercase words of ``text`` that the type-token ratio counts (see ``_WORD``)."""
    return _WORD.findall(text.lower())


def type_token_ratio(text: str) -> float:
    """Distinct words / words (0.0 for a text without words)."""
    tokens = words(text)
    return len(set(tokens)) / len(tokens) if tokens else 0.0


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood per token): the model's perplexity of a response."""
    return math.exp(mean_nll)


def min_max_normalise(values: list[float]) -> list[float]:
    """(v - min) / (max - min) over ``values``, so every component lands in [0, 1] with the
    dataset's least complex sample at 0 and its most complex at 1. MagicVL says only "after
    normalization"; min-max is the reading that makes the three components of different units
    (tokens, a ratio, a perplexity) comparable. A constant component carries no ranking
    information and normalises to 0 everywhere."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [0.0] * len(values)
    return [(v - low) / (high - low) for v in values]


def text_complexity(lengths: list[float], ttrs: list[float], perplexities: list[float]) -> list[float]:
    """S_text per sample: the arithmetic mean of the three min-max-normalised components."""
    if not len(lengths) == len(ttrs) == len(perplexities):
        raise ValueError(f"component lists differ in length: {len(lengths)}, {len(ttrs)}, {len(perplexities)}")
    columns = zip(min_max_normalise(lengths), min_max_normalise(ttrs), min_max_normalise(perplexities))
    return [(length + ttr + ppl) / 3 for length, ttr, ppl in columns]


def needs_larger_model(loss_small: float, loss_large: float, *, beta: float, delta: float) -> bool:
    """MagicVL's indicator 1{M_s(x|p) > beta * M_l(x|p) > delta}, read as the chain it is
    written as: the small model's loss exceeds beta times the large model's, AND beta times
    the large model's loss exceeds the floor delta. The floor drops samples that even the
    large model finds near-trivial, where a large ratio of two tiny losses means nothing.
    (This is stricter than ``loss_small > delta``, which the chain implies.)"""
    scaled_large = beta * loss_large
    return loss_small > scaled_large > delta


def task_complexity(losses_small: list[float], losses_large: list[float], *, beta: float, delta: float) -> list[float]:
    """Per sample, 1.0 where the larger model is needed (``needs_larger_model``), else 0.0.

    Their mean is the paper's dataset score C(M_s, M_l). A per-sample value has to be this
    indicator to stay the paper's quantity (a graded loss gap would be a different score);
    within each indicator value the text term still orders the samples in the combined score.
    The paper averages C over two model pairs (2B/7B, 7B/72B); with one pair given, S_task = C.
    """
    if len(losses_small) != len(losses_large):
        raise ValueError(f"{len(losses_small)} small-model losses but {len(losses_large)} large-model losses")
    return [float(needs_larger_model(s, large, beta=beta, delta=delta)) for s, large in zip(losses_small, losses_large)]


@dataclass(frozen=True)
class ScoreWeights:
    """lambda_text and lambda_task of S = lambda_text * S_text + lambda_task * S_task (MagicVL's
    lambda_1 and lambda_3; there is no image term). The paper chooses them per task category
    in its supplementary material, which is not published with it: equal weights are ours."""

    text: float = 0.5
    task: float = 0.5

    def without_task(self) -> ScoreWeights:
        """The weights when there is no task term: the text weight renormalised to 1, so scores
        stay on the same [0, 1] scale."""
        if self.text <= 0:
            raise ValueError("the text weight must be > 0 when the task term is left out")
        return ScoreWeights(text=1.0, task=0.0)


def combined_scores(text: list[float], task: list[float] | None, weights: ScoreWeights) -> list[float]:
    """S per sample: ``weights.text * text + weights.task * task``; ``task`` None leaves the
    task term out and renormalises the weights (``ScoreWeights.without_task``)."""
    if task is None:
        return [weights.without_task().text * t for t in text]
    if len(task) != len(text):
        raise ValueError(f"{len(text)} text scores but {len(task)} task scores")
    return [weights.text * t + weights.task * k for t, k in zip(text, task)]


class ScoresError(ValueError):
    """A scores file cannot be used; the message names the file and the row."""


def load_scores(path: str | Path, field: str = "score") -> dict[str, float]:
    """Problem id -> the ``field`` column (default: the combined score S) of a ``scores.jsonl``
    that ``bppo data score`` wrote. Raises ``ScoresError`` naming the file and row for a row that
    is not an object with a string ``id`` and a finite numeric ``field`` (the task columns are
    null when no task term was computed), for a repeated id, and for an empty file."""
    path = Path(path)
    if not path.is_file():
        raise ScoresError(f"{path}: no such file (bppo data score writes it)")
    scores: dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ScoresError(f"{path}: row {number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ScoresError(f"{path}: row {number}: expected an object, got {type(row).__name__}")
            problem_id, score = row.get("id"), row.get(field)
            if not isinstance(problem_id, str) or not problem_id:
                raise ScoresError(f"{path}: row {number}: 'id' must be a non-empty string, got {problem_id!r}")
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise ScoresError(
                    f"{path}: row {number}: {field!r} must be a finite number, got {score!r}"
                    + (f" (its columns: {', '.join(row)})" if field not in row else "")
                )
            if problem_id in scores:
                raise ScoresError(f"{path}: row {number}: id {problem_id!r} appears twice")
            scores[problem_id] = float(score)
    if not scores:
        raise ScoresError(f"{path}: no rows")
    return scores
