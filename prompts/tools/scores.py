"""``bppo data score``: MagicVL-2B's complexity score of every prompt, and ``load_scores``.

Per problem (prompt p = the filled prompt template, response x = the worked solution, or
``\\boxed{answer}`` when the source has none):

- ``length``: tokens of x under the perplexity model's tokenizer (MagicVL's len(x_i)),
- ``ttr``: type-token ratio of p + x (``complexity.words``: lowercase letter/digit runs),
- ``perplexity``: exp(mean NLL of x given p) under the perplexity model (the policy),
- ``loss_small`` / ``loss_large`` / ``task``: the two models' AR losses of x given p and
  the indicator ``loss_small > beta * loss_large > delta`` (null without the two models),
- ``text``: S_text, the mean of the three components min-max-normalised over the split,
- ``score``: S = w_text * S_text + w_task * task (w_text renormalised to 1 without a task term).

Rows go to ``scores.jsonl`` in prompt-set order; ``scores_summary.json`` holds the dataset
means (the paper's L, T, P and C), ranges, weights, models, beta and delta.
``prompts.tools.complexity.load_scores`` reads the rows back (problem id -> S).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prompts.problems import Problem, format_prompt, render_prompt
from prompts.tools.complexity import (
    ScoreWeights,
    combined_scores,
    perplexity,
    task_complexity,
    text_complexity,
    type_token_ratio,
)
from prompts.tools.outputs import json_text, jsonl_text, write_atomically

SCORES_FILE = "scores.jsonl"
SUMMARY_FILE = "scores_summary.json"
DEFAULT_BETA = 1.2
DEFAULT_DELTA = 0.1


@dataclass(frozen=True)
class ScoreSettings:
    model: str
    """Perplexity model (the policy by default)."""
    small_model: str | None
    """M_s of the task term (None: no task term)."""
    large_model: str | None
    """M_l of the task term."""
    beta: float = DEFAULT_BETA
    """Required loss ratio: our default, the paper does not publish its value."""
    delta: float = DEFAULT_DELTA
    """Floor on beta * loss_large (nats per token): our default, likewise."""
    weights: ScoreWeights = ScoreWeights()
    batch_tokens: int = 8192
    device: str = "cpu"


def response_text(problem: Problem) -> str:
    """The response x a prompt is scored with: the worked solution, else the boxed gold answer."""
    return problem.solution or f"\\boxed{{{problem.answer}}}"


def response_losses(
    model_path: str, problems: list[Problem], template: str, chat_template: bool, settings: ScoreSettings, label: str
) -> tuple[list[float], list[int]]:
    """(mean NLL of each response given its prompt, response token counts) under one model."""
    import torch

    from prompts.tools.model_stats import encode_pairs, load_causal_lm, pad_token_id, pair_stats

    model, tokenizer = load_causal_lm(model_path, settings.device)
    prompts = [render_prompt(p, template, tokenizer=tokenizer, chat_template=chat_template) for p in problems]
    pairs = encode_pairs(tokenizer, prompts, [response_text(p) for p in problems])
    stats = pair_stats(
        model, pairs, pad_id=pad_token_id(tokenizer), batch_tokens=settings.batch_tokens, desc=f"AR loss ({label})"
    )
    del model
    if settings.device != "cpu":
        torch.cuda.empty_cache()
    return stats.losses, [len(response) for _, response in pairs]


def score_problems(
    problems: list[Problem], template: str, chat_template: bool, settings: ScoreSettings
) -> tuple[list[dict], dict]:
    """The rows of ``scores.jsonl`` and the summary record (see the module docstring)."""
    if not problems:
        raise ValueError("no problems to score")
    losses_by_model: dict[str, list[float]] = {}

    def losses_of(path: str, label: str) -> list[float]:
        if path not in losses_by_model:  # the policy is often the large model too: one pass
            losses_by_model[path] = response_losses(path, problems, template, chat_template, settings, label)[0]
        return losses_by_model[path]

    policy_losses, lengths = response_losses(settings.model, problems, template, chat_template, settings, "policy")
    losses_by_model[settings.model] = policy_losses
    ttrs = [type_token_ratio(format_prompt(p, template) + " " + response_text(p)) for p in problems]
    perplexities = [perplexity(loss) for loss in policy_losses]
    text = text_complexity([float(n) for n in lengths], ttrs, perplexities)
    task = small = large = None
    if settings.small_model is not None:
        small = losses_of(settings.small_model, "small model")
        large = losses_of(settings.large_model, "large model")
        task = task_complexity(small, large, beta=settings.beta, delta=settings.delta)
    weights = settings.weights if task is not None else settings.weights.without_task()
    scores = combined_scores(text, task, weights)
    rows = [
        {
            "id": p.id,
            "length": lengths[i],
            "ttr": _r(ttrs[i]),
            "perplexity": _r(perplexities[i]),
            "loss_small": None if small is None else _r(small[i]),
            "loss_large": None if large is None else _r(large[i]),
            "task": None if task is None else task[i],
            "text": _r(text[i]),
            "score": _r(scores[i]),
        }
        for i, p in enumerate(problems)
    ]
    summary = {
        "problems": len(problems),
        "response": "problem.solution, else \\boxed{answer}",
        "normalisation": "min-max over the scored problems (a constant component -> 0)",
        "models": {"perplexity": settings.model, "small": settings.small_model, "large": settings.large_model},
        "task_term": task is not None,
        "beta": settings.beta,
        "delta": settings.delta,
        "weights": {"text": weights.text, "task": weights.task},
        "ranges": {
            name: [_r(min(values)), _r(max(values))]
            for name, values in (("length", lengths), ("ttr", ttrs), ("perplexity", perplexities))
        },
        "means": {
            "length": _mean(lengths),
            "ttr": _mean(ttrs),
            "perplexity": _mean(perplexities),
            "text": _mean(text),
            "task": None if task is None else _mean(task),
            "score": _mean(scores),
        },
    }
    return rows, summary


def write_scores(out_dir: Path, rows: list[dict], summary: dict) -> tuple[Path, Path]:
    return (
        write_atomically(out_dir / SCORES_FILE, jsonl_text(rows)),
        write_atomically(out_dir / SUMMARY_FILE, json_text(summary)),
    )


def _r(value: float) -> float:
    # 6 decimals: far finer than any difference a curriculum ranks by, and short rows.
    return round(float(value), 6)


def _mean(values: list[float]) -> float:
    return _r(sum(values) / len(values))
