"""``bppo data sample``: what the policy answers before any RL, per family and level.

G completions per prompt from a vLLM engine (the run's own sampling settings and prompt
template), each judged by the run's verifier. Written as ``samples.jsonl`` (one row per
completion: the prompt, the text, its length, the extracted answer and the verdict) and
``pass_rates.json`` (per family x level: pass rate, the share of groups with both a correct
and an incorrect completion — BPPO's pairs — and response lengths). This is how a regime is
chosen by measurement: families and levels the model half-solves, with a tail of long answers.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from prompts.problems import Problem, prompt_ids
from prompts.tools.outputs import json_text, jsonl_text, write_atomically


def sample_completions(
    problems: list[Problem],
    model_path: str,
    *,
    template: str,
    chat_template: bool,
    sampling,
    reward,
    max_model_len: int,
    seed: int = 0,
) -> tuple[list[dict], dict]:
    """``sampling``: rollout.types.SamplingSettings; ``reward``: rewards.config.RewardConfig."""
    from transformers import AutoTokenizer

    from prompts.images import prompt_images
    from rewards.verify import score
    from rollout.engine import RolloutEngine

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prompts = [prompt_ids(p, template, tokenizer, chat_template=chat_template) for p in problems]
    engine = RolloutEngine(model_path, max_model_len=max_model_len, seed=seed, engine_core_process=False)
    try:
        samples = engine.generate(prompts, sampling, images=prompt_images(problems))
    finally:
        engine.close()
    rows = []
    for sample in samples:
        problem = problems[sample.prompt_index]
        result = score(sample.text, problem.answer, timeout_s=reward.timeout_s, config=reward)
        rows.append(
            {
                "id": problem.id,
                "family": problem.meta.get("family"),
                "level": problem.meta.get("level"),
                "question": problem.question,
                "gold": problem.answer,
                "completion": sample.text,
                "length": len(sample.response_ids),
                "finish_reason": sample.finish_reason,
                "answer": result.answer,
                "reason": result.reason,
                "correct": result.correct,
            }
        )
    return rows, pass_rates(rows, group_size=sampling.n)


def pass_rates(rows: list[dict], *, group_size: int) -> dict:
    """Per family x level (and overall): pass rate, share of groups with a BPPO pair, lengths."""
    by_pool: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_pool[f"{row['family']}:{row['level']}"].append(row)
    by_pool["all"] = list(rows)
    summary = {}
    for pool, pool_rows in sorted(by_pool.items()):
        groups = defaultdict(list)
        for row in pool_rows:
            groups[row["id"]].append(row["correct"])
        lengths = sorted(row["length"] for row in pool_rows)
        summary[pool] = {
            "completions": len(pool_rows),
            "pass_rate": sum(row["correct"] for row in pool_rows) / len(pool_rows),
            "pair_rate": sum(any(g) and not all(g) for g in groups.values()) / len(groups),
            "answered_rate": sum(row["answer"] is not None for row in pool_rows) / len(pool_rows),
            "length_mean": statistics.fmean(lengths),
            "length_median": statistics.median(lengths),
            "length_p90": lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))],
            "clipped_rate": sum(row["finish_reason"] == "length" for row in pool_rows) / len(pool_rows),
        }
    summary["group_size"] = group_size
    return summary


def write_samples(out_dir: Path, rows: list[dict], summary: dict) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    samples, rates = out_dir / "samples.jsonl", out_dir / "pass_rates.json"
    write_atomically(samples, jsonl_text(rows))
    write_atomically(rates, json_text(summary))
    return samples, rates
