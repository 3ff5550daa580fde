"""The BPPO-vs-GRPO report: every number is computed here from the runs' ``metrics.jsonl``.

``summarize_run`` reduces one run's records; ``build_report`` combines runs (one per
algorithm and seed) into ``report.json``'s structure, with 95% intervals from
``report_stats``; ``write_report`` adds ``report.md`` (``report_text``) and the PNG figures
(``report_plots``). Pure python + numpy + matplotlib, no Ray.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from experiments.report_stats import bootstrap, choose_target, read_evals, run_outcomes, standard_error

WARMUP_STEPS = 1  # step 1 pays engine/learner warm-ups: left out of per-step means


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _per(records: list[dict], numerator: str, denominator: str) -> float | None:
    """sum(numerator) / sum(denominator) over the records that have both (None: none have)."""
    pairs = [(r[numerator], r[denominator]) for r in records if numerator in r and denominator in r]
    total = sum(d for _, d in pairs)
    return sum(n for n, _ in pairs) / total if pairs and total else None


def summarize_run(records: list[dict], target: float | None = None) -> dict:
    """One run: eval curve, phase means, tokens, lengths, time to ``target`` accuracy."""
    steps = [r for r in records if r["step"] > 0]
    timed = [r for r in steps if r["step"] > WARMUP_STEPS] or steps
    evals = [
        (r.get("time/train_elapsed", 0.0), r["eval/accuracy"], r.get("eval/problems", 0.0), r["step"])
        for r in records
        if r.get("eval/accuracy") is not None
    ]
    phase = lambda name: _mean([r.get(f"time/{name}") or 0.0 for r in timed])  # noqa: E731
    # trainer.mode async logs the wait for the batch generated ahead: there generation overlaps the
    # previous step's update, and a step's own work is everything but that wait
    overlapped = any("time/wait_generation" in r for r in timed)
    lengths = [r["response/len_mean"] for r in steps]
    edge = max(1, min(3, len(lengths) // 3))
    summary = {
        "steps": len(steps),
        "warm_start_eval_accuracy": evals[0][1] if evals and evals[0][3] == 0 else None,
        "final_eval_accuracy": evals[-1][1] if evals else None,
        "best_eval_accuracy": max((e[1] for e in evals), default=None),
        "eval_problems": int(evals[-1][2]) if evals else 0,
        "mode": "async" if overlapped else "sync",
        "mean_step_time_s": phase("step"),
        "mean_generate_time_s": phase("generate"),
        # the step's phases other than generation: step - generate, or (async) step - the wait for it
        "mean_rest_time_s": (phase("step") or 0.0) - (phase("wait_generation" if overlapped else "generate") or 0.0),
        "mean_learner_time_s": phase("old") + phase("ref") + phase("update"),
        "phase_means_s": {p: phase(p) for p in ("generate", "reward", "select", "old", "ref", "update", "sync")},
        "train_tokens_per_step": _mean([r.get("train/tokens") or 0.0 for r in steps]),
        "decoded_tokens_per_step": _mean([r.get("rollout/decoded_tokens") for r in steps]),
        "pair_rate": _mean([r.get("bppo/pair_rate") for r in steps]),
        "useful_group_rate": _per(steps, "rollout/useful_groups", "rollout/sampled_groups"),
        # generation seconds per group a gradient could use, over the whole run (what scheduling cuts)
        "gen_s_per_useful_group": _per(steps, "time/generate", "rollout/useful_groups"),
        "aborted_rate": _mean([r.get("rollout/aborted_rate") for r in steps]),  # early-stopped groups
        "prompt_len_mean": _mean([r.get("response/prompt_len_mean") for r in steps]),
        "mean_response_len_start": _mean(lengths[:edge]),
        "mean_response_len_end": _mean(lengths[-edge:]),
        "train_elapsed_s": steps[-1].get("time/train_elapsed") if steps else 0.0,
        "eval_curve": [{"train_elapsed_s": t, "accuracy": a, "problems": n, "step": s} for t, a, n, s in evals],
    }
    return with_target(summary, target)


def with_target(summary: dict, target: float | None) -> dict:
    """Fill in a run summary's training seconds and steps to ``target`` (None: not reached)."""
    summary["time_to_target_s"] = time_to_target(summary["eval_curve"], target)
    summary["steps_to_target"] = time_to_target(summary["eval_curve"], target, mark="step")
    return summary


def time_to_target(curve: list[dict], target: float | None, mark: str = "train_elapsed_s") -> float | None:
    """Training seconds (or, with mark="step", steps) until the first evaluation at or above
    ``target`` (None: never)."""
    if target is None:
        return None
    return next((p[mark] for p in curve if p["accuracy"] >= target - 1e-12), None)


def token_ratio_bound(group_size: int, prompt_len: float, window: float, response_len: float) -> float:
    """docs/design.md §3: rho = (2/G) (P + n) / (P + L), the learner-token ratio of BPPO to GRPO."""
    return (2 / group_size) * (prompt_len + min(window, response_len)) / (prompt_len + response_len)


def amdahl_bound(generate_share: float, rho: float, *, overlapped: bool = False) -> float:
    """Largest step speedup when only the rest of a step (a 1 - g share of generation + rest)
    shrinks by rho: 1 / (g + (1 - g) rho); one step off policy (``overlapped``) a step takes the
    longer of generation and the rest, so max(g, 1 - g) / max(g, (1 - g) rho)."""
    g = generate_share
    if overlapped:
        return max(g, 1.0 - g) / max(g, (1.0 - g) * rho)
    return 1.0 / (g + (1.0 - g) * rho)


def _over_seeds(runs: list[dict], key: str) -> tuple[float | None, float | None]:
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def warm_start(summaries: dict[str, dict[int, dict]]) -> dict:
    """The shared starting point: every run evaluates the same warm-started model first."""
    runs = [s for by_seed in summaries.values() for s in by_seed.values()]
    accuracy = _mean([s["warm_start_eval_accuracy"] for s in runs])
    problems = runs[0]["eval_problems"]
    se = standard_error(accuracy, problems) if accuracy is not None else None
    return {"accuracy": accuracy, "standard_error": se, "problems": problems}


def build_report(
    runs: dict[str, dict[int, list[dict]]],
    *,
    group_size: int,
    window: float,
    target_accuracy: float | None = None,
    evals: dict[str, dict[int, list[dict]]] | None = None,
) -> dict:
    """``runs[algo][seed] = records`` (metrics.jsonl), algo in {grpo, bppo}; ``evals`` the runs'
    evals.jsonl (per-item outcomes), which give every figure its 95% bootstrap interval.
    Time to target: see ``report_stats.choose_target`` (None = the highest accuracy every run reached)."""
    plain = {
        algo: {seed: summarize_run(records) for seed, records in by_seed.items()} for algo, by_seed in runs.items()
    }
    warm = warm_start(plain)
    curves = {
        f"{algo.upper()} seed {seed}": (
            [p["accuracy"] for p in s["eval_curve"]],
            [p["train_elapsed_s"] for p in s["eval_curve"]],
        )
        for algo, by_seed in plain.items()
        for seed, s in by_seed.items()
    }
    if warm["accuracy"] is None or not all(acc for acc, _ in curves.values()):
        target, reason = None, "the runs have no evaluation at step 0 (eval.every = 0)"
    else:
        target, reason = choose_target(
            curves, warm["accuracy"], warm["standard_error"], warm["problems"], target_accuracy
        )
    report: dict = {
        "target_accuracy": target,
        "target_reason": reason,
        "warm_start": warm,
        "seeds": sorted({s for a in runs for s in runs[a]}),
    }
    for algo, per_seed in plain.items():
        summaries = [with_target(summary, target) for summary in per_seed.values()]
        entry = {"per_seed": per_seed}
        for key in (
            "final_eval_accuracy",
            "warm_start_eval_accuracy",
            "best_eval_accuracy",
            "mean_step_time_s",
            "mean_learner_time_s",
            "mean_generate_time_s",
            "mean_rest_time_s",
            "train_tokens_per_step",
            "decoded_tokens_per_step",
            "aborted_rate",
            "prompt_len_mean",
            "mean_response_len_start",
            "mean_response_len_end",
            "time_to_target_s",
            "steps_to_target",
            "pair_rate",
        ):
            entry[key], entry[f"{key}_std"] = _over_seeds(summaries, key)
        entry["reached_target"] = sum(s["time_to_target_s"] is not None for s in summaries)
        entry["phase_means_s"] = {
            p: _mean([s["phase_means_s"][p] for s in summaries]) for p in summaries[0]["phase_means_s"]
        }
        report[algo] = entry
    grpo, bppo = report["grpo"], report["bppo"]
    report["speedup"] = {
        "step": ratio(grpo["mean_step_time_s"], bppo["mean_step_time_s"]),
        "learner": ratio(grpo["mean_learner_time_s"], bppo["mean_learner_time_s"]),
        "time_to_target": ratio(grpo["time_to_target_s"], bppo["time_to_target_s"]),
        "steps_to_target": ratio(grpo["steps_to_target"], bppo["steps_to_target"]),
        "train_tokens": ratio(grpo["train_tokens_per_step"], bppo["train_tokens_per_step"]),
    }
    modes = {algo: sorted({s["mode"] for s in plain[algo].values()}) for algo in plain}
    if len({m for ms in modes.values() for m in ms}) > 1:
        # the baseline must get every efficiency the other arm gets (bppo compare refuses this)
        raise ValueError(f"the runs mix synchronous and async training ({modes}): the comparison would not be fair")
    overlapped = modes["grpo"] == ["async"]
    report["mode"] = modes["grpo"][0]
    rho = token_ratio_bound(group_size, grpo["prompt_len_mean"] or 0.0, window, grpo["mean_response_len_start"] or 0.0)
    gen, rest = grpo["mean_generate_time_s"] or 0.0, grpo["mean_rest_time_s"] or 0.0
    share = gen / (gen + rest) if gen + rest > 0 else 0.0
    # The bound of docs/design.md §3 assumes every group yields a pair; groups without one shrink BPPO's batch
    # further, so the bounds are also given at the measured pair rate.
    rho_pairs = rho * (bppo["pair_rate"] if bppo.get("pair_rate") is not None else 1.0)
    report["bound"] = {
        "token_ratio": rho,
        "learner": 1 / rho if rho else None,
        "generate_share_grpo": share,
        "amdahl": amdahl_bound(share, rho, overlapped=overlapped),
        "pair_rate": bppo.get("pair_rate"),
        "token_ratio_at_pair_rate": rho_pairs,
        "amdahl_at_pair_rate": amdahl_bound(share, rho_pairs, overlapped=overlapped),
    }
    report["response_length_change"] = {
        algo: ratio(report[algo]["mean_response_len_end"], report[algo]["mean_response_len_start"])
        for algo in ("grpo", "bppo")
    }
    report["projection"] = gpu_projection(grpo, bppo, report["speedup"]["steps_to_target"])
    report["intervals"] = _intervals(runs, evals, target, auto_target=target_accuracy is None)
    return report


PROJECTED_SHARES = (0.5, 0.7, 0.8, 0.9)
"""Generation shares of a GRPO step to project to (verl's docs: ~70-80% for long chains of thought)."""


def gpu_projection(grpo: dict, bppo: dict, steps_ratio: float | None) -> dict | None:
    """What the same run implies where generation is a share g of a GRPO step (a projection).

    Each phase keeps the BPPO/GRPO time ratio measured here: r_gen for generation (early-stopped
    tails, shorter responses), r_rest for everything else (the learner's fewer and shorter trained
    sequences, scoring, the weight sync; in async runs, what a step does besides waiting for the
    batch generated ahead). Then a GRPO step of 1 takes g + (1 - g) and BPPO's takes
    g r_gen + (1 - g) r_rest, so the step speedup is S(g) = 1 / (g r_gen + (1 - g) r_rest), and the
    time-to-target speedup S(g) x (steps-to-target ratio) when the per-step signal carries over.

    One step off policy (trainer.mode async), generation of the next batch overlaps the update of
    this one and a step takes the longer of the two: GRPO's max(g, 1 - g) against BPPO's
    max(g r_gen, (1 - g) r_rest), so S_async(g) = max(g, 1 - g) / max(g r_gen, (1 - g) r_rest).
    Where generation is the longer phase for both, BPPO's learner saving hides behind it and only
    r_gen counts.
    """
    gen_g, gen_b = grpo.get("mean_generate_time_s"), bppo.get("mean_generate_time_s")
    rest_g, rest_b = grpo.get("mean_rest_time_s"), bppo.get("mean_rest_time_s")
    if not (gen_g and gen_b and rest_g and rest_b) or rest_g <= 0:
        return None
    r_gen, r_rest = gen_b / gen_g, rest_b / rest_g
    measured = gen_g / (gen_g + rest_g)
    rows = []
    for share in (measured, *PROJECTED_SHARES):
        step = 1.0 / (share * r_gen + (1.0 - share) * r_rest)
        rows.append(
            {
                "generate_share": share,
                "measured": share == measured,
                "step_speedup": step,
                "time_to_target_speedup": step * steps_ratio if steps_ratio else None,
                "async_step_speedup": max(share, 1.0 - share) / max(share * r_gen, (1.0 - share) * r_rest),
            }
        )
    return {"r_gen": r_gen, "r_rest": r_rest, "generate_share_here": measured, "rows": rows}


def _intervals(runs: dict, evals: dict | None, target: float | None, *, auto_target: bool) -> dict | None:
    """Bootstrap intervals, or None when a run lacks per-item outcomes (made before evals.jsonl)."""
    if evals is None:
        return None
    outcomes = {
        algo: {
            seed: run_outcomes(records, evals.get(algo, {}).get(seed, []), WARMUP_STEPS)
            for seed, records in by_seed.items()
        }
        for algo, by_seed in runs.items()
    }
    if any(o is None for by_seed in outcomes.values() for o in by_seed.values()):
        return None
    return bootstrap(outcomes, target, auto_target=auto_target)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """A speedup or change factor; None when either side is missing or zero (not measurable)."""
    return numerator / denominator if numerator and denominator else None


def write_report(report: dict, runs: dict[str, dict[int, list[dict]]], out_dir: Path, *, command: str) -> list[Path]:
    from experiments.report_plots import plot_report
    from experiments.report_text import render_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report, command=command))
    return [out_dir / "report.json", out_dir / "report.md", *plot_report(report, runs, out_dir)]


def load_runs(root: Path, algos, seeds) -> tuple[dict, dict]:
    """``(metrics, evals)`` of a compare directory's runs: ``<root>/<algo>-seed<k>/``."""
    runs = {algo: {seed: read_metrics(root / f"{algo}-seed{seed}") for seed in seeds} for algo in algos}
    evals = {algo: {seed: read_evals(root / f"{algo}-seed{seed}") for seed in seeds} for algo in algos}
    return runs, evals
