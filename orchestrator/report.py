"""The BPPO-vs-GRPO report: every number is computed here from the runs' ``metrics.jsonl``.

``summarize_run`` reduces one run's records; ``build_report`` combines runs (one per
algorithm and seed) into ``report.json``'s structure; ``write_report`` adds
``report.md`` and the PNG figures. Pure python + matplotlib, no Ray.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

WARMUP_STEPS = 1  # step 1 pays engine/learner warm-ups: left out of per-step means


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize_run(records: list[dict], target: float | None = None) -> dict:
    """One run: eval curve, phase means, tokens, lengths, time to ``target`` accuracy."""
    steps = [r for r in records if r["step"] > 0]
    timed = [r for r in steps if r["step"] > WARMUP_STEPS] or steps
    evals = [(r.get("time/train_elapsed", 0.0), r["eval/accuracy"], r.get("eval/problems", 0.0), r["step"])
             for r in records if r.get("eval/accuracy") is not None]
    phase = lambda name: _mean([r.get(f"time/{name}") or 0.0 for r in timed])  # noqa: E731
    lengths = [r["response/len_mean"] for r in steps]
    edge = max(1, min(3, len(lengths) // 3))
    summary = {
        "steps": len(steps),
        "warm_start_eval_accuracy": evals[0][1] if evals and evals[0][3] == 0 else None,
        "final_eval_accuracy": evals[-1][1] if evals else None,
        "best_eval_accuracy": max((e[1] for e in evals), default=None),
        "eval_problems": int(evals[-1][2]) if evals else 0,
        "mean_step_time_s": phase("step"),
        "mean_generate_time_s": phase("generate"),
        "mean_learner_time_s": phase("old") + phase("ref") + phase("update"),
        "phase_means_s": {p: phase(p) for p in ("generate", "reward", "select", "old", "ref", "update", "sync")},
        "train_tokens_per_step": _mean([r.get("train/tokens") or 0.0 for r in steps]),
        "pair_rate": _mean([r.get("bppo/pair_rate") for r in steps]),
        "aborted_rate": _mean([r.get("rollout/aborted_rate") for r in steps]),  # early-stopped groups
        "prompt_len_mean": _mean([r.get("response/prompt_len_mean") for r in steps]),
        "mean_response_len_start": _mean(lengths[:edge]),
        "mean_response_len_end": _mean(lengths[-edge:]),
        "train_elapsed_s": steps[-1].get("time/train_elapsed") if steps else 0.0,
        "eval_curve": [{"train_elapsed_s": t, "accuracy": a, "problems": n, "step": s} for t, a, n, s in evals],
    }
    summary["time_to_target_s"] = time_to_target(summary["eval_curve"], target)
    return summary


def time_to_target(curve: list[dict], target: float | None) -> float | None:
    """Training seconds until the first evaluation at or above ``target`` (None: never)."""
    if target is None:
        return None
    return next((p["train_elapsed_s"] for p in curve if p["accuracy"] >= target - 1e-12), None)


def standard_error(accuracy: float, problems: int) -> float:
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / problems) if problems else 0.0


def token_ratio_bound(group_size: int, prompt_len: float, window: float, response_len: float) -> float:
    """DESIGN §3: rho = (2/G) (P + n) / (P + L), the learner-token ratio of BPPO to GRPO."""
    return (2 / group_size) * (prompt_len + min(window, response_len)) / (prompt_len + response_len)


def amdahl_bound(generate_share: float, rho: float) -> float:
    """Largest step speedup when only the learner (a 1 - g share of the step) shrinks by rho."""
    return 1.0 / (generate_share + (1.0 - generate_share) * rho)


def _over_seeds(runs: list[dict], key: str) -> tuple[float | None, float | None]:
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def build_report(runs: dict[str, dict[int, list[dict]]], *, group_size: int, window: float,
                 target_accuracy: float | None = None) -> dict:
    """``runs[algo][seed] = records``; algo in {grpo, bppo}. Target None = the best eval
    accuracy both algorithms reach (the lower of their per-seed-mean best accuracies)."""
    if target_accuracy is None:
        bests = [_over_seeds([summarize_run(r) for r in runs[a].values()], "best_eval_accuracy")[0] for a in runs]
        target_accuracy = min(b for b in bests if b is not None) if all(b is not None for b in bests) else None
    report: dict = {"target_accuracy": target_accuracy, "seeds": sorted({s for a in runs for s in runs[a]})}
    for algo, by_seed in runs.items():
        per_seed = {seed: summarize_run(records, target_accuracy) for seed, records in by_seed.items()}
        summaries = list(per_seed.values())
        entry = {"per_seed": per_seed}
        for key in ("final_eval_accuracy", "warm_start_eval_accuracy", "best_eval_accuracy", "mean_step_time_s",
                    "mean_learner_time_s", "mean_generate_time_s", "train_tokens_per_step", "prompt_len_mean",
                    "mean_response_len_start", "mean_response_len_end", "time_to_target_s", "pair_rate"):
            entry[key], entry[f"{key}_std"] = _over_seeds(summaries, key)
        entry["reached_target"] = sum(s["time_to_target_s"] is not None for s in summaries)
        entry["phase_means_s"] = {p: _mean([s["phase_means_s"][p] for s in summaries])
                                  for p in summaries[0]["phase_means_s"]}
        report[algo] = entry
    grpo, bppo = report["grpo"], report["bppo"]
    report["speedup"] = {
        "step": ratio(grpo["mean_step_time_s"], bppo["mean_step_time_s"]),
        "learner": ratio(grpo["mean_learner_time_s"], bppo["mean_learner_time_s"]),
        "time_to_target": ratio(grpo["time_to_target_s"], bppo["time_to_target_s"]),
        "train_tokens": ratio(grpo["train_tokens_per_step"], bppo["train_tokens_per_step"]),
    }
    rho = token_ratio_bound(group_size, grpo["prompt_len_mean"] or 0.0, window, grpo["mean_response_len_start"] or 0.0)
    share = (grpo["mean_generate_time_s"] or 0.0) / (grpo["mean_step_time_s"] or 1.0)
    # DESIGN's bound assumes every group yields a pair; groups without one shrink BPPO's batch
    # further, so the bounds are also given at the measured pair rate.
    rho_pairs = rho * (bppo["pair_rate"] if bppo.get("pair_rate") is not None else 1.0)
    report["bound"] = {"token_ratio": rho, "learner": 1 / rho if rho else None, "generate_share_grpo": share,
                       "amdahl": amdahl_bound(share, rho), "pair_rate": bppo.get("pair_rate"),
                       "token_ratio_at_pair_rate": rho_pairs,
                       "amdahl_at_pair_rate": amdahl_bound(share, rho_pairs)}
    report["response_length_change"] = {
        algo: ratio(report[algo]["mean_response_len_end"], report[algo]["mean_response_len_start"])
        for algo in ("grpo", "bppo")
    }
    return report


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """A speedup or change factor; None when either side is missing or zero (not measurable)."""
    return numerator / denominator if numerator and denominator else None


def fmt(value, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def _pm(entry: dict, key: str, digits: int = 3) -> str:
    mean, std = entry.get(key), entry.get(f"{key}_std")
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def render_markdown(report: dict, *, command: str) -> str:
    grpo, bppo, speedup, bound = report["grpo"], report["bppo"], report["speedup"], report["bound"]
    problems = next(iter(grpo["per_seed"].values()))["eval_problems"]
    acc = grpo["final_eval_accuracy"] or 0.0
    lines = [
        "# BPPO vs GRPO", "",
        f"Command: `{command}`  ",
        f"Seeds: {report['seeds']}; eval: greedy on {problems} held-out problems "
        f"(one run's accuracy near {acc:.2f} has a standard error of ±{standard_error(acc, problems):.3f}).", "",
        "| | GRPO | BPPO |", "|---|---|---|",
        f"| warm-start eval accuracy | {_pm(grpo, 'warm_start_eval_accuracy')} | {_pm(bppo, 'warm_start_eval_accuracy')} |",
        f"| final eval accuracy | {_pm(grpo, 'final_eval_accuracy')} | {_pm(bppo, 'final_eval_accuracy')} |",
        f"| best eval accuracy | {_pm(grpo, 'best_eval_accuracy')} | {_pm(bppo, 'best_eval_accuracy')} |",
        f"| time to target {fmt(report['target_accuracy'], 3)} (s of training) | {_pm(grpo, 'time_to_target_s', 1)} "
        f"({grpo['reached_target']}/{len(report['seeds'])} seeds) | {_pm(bppo, 'time_to_target_s', 1)} "
        f"({bppo['reached_target']}/{len(report['seeds'])} seeds) |",
        f"| mean step time (s) | {_pm(grpo, 'mean_step_time_s')} | {_pm(bppo, 'mean_step_time_s')} |",
        f"| generation per step (s) | {_pm(grpo, 'mean_generate_time_s')} | {_pm(bppo, 'mean_generate_time_s')} |",
        f"| learner per step (s): old + ref + update | {_pm(grpo, 'mean_learner_time_s')} | {_pm(bppo, 'mean_learner_time_s')} |",
        f"| tokens through the learner per step | {_pm(grpo, 'train_tokens_per_step', 0)} | {_pm(bppo, 'train_tokens_per_step', 0)} |",
        f"| mean response length, start → end (tokens) | {fmt(grpo['mean_response_len_start'], 1)} → "
        f"{fmt(grpo['mean_response_len_end'], 1)} | {fmt(bppo['mean_response_len_start'], 1)} → "
        f"{fmt(bppo['mean_response_len_end'], 1)} |",
        "",
        "## Speedups", "",
        f"- Step: **{fmt(speedup['step'])}×** (Amdahl bound {fmt(bound['amdahl'])}× with a pair in every "
        f"group, {fmt(bound['amdahl_at_pair_rate'])}× at the measured pair rate "
        f"{fmt(bound['pair_rate'])}: generation is {fmt(100 * bound['generate_share_grpo'], 0)}% of a GRPO "
        "step and BPPO does not shorten it).",
        f"- Learner phase: **{fmt(speedup['learner'])}×**, against the token-ratio bound 1/ρ = "
        f"{fmt(bound['learner'])}× (ρ = (2/G)(P+n)/(P+L) = {fmt(bound['token_ratio'], 3)}; "
        f"× pair rate = {fmt(bound['token_ratio_at_pair_rate'], 3)}); measured token ratio "
        f"1/{fmt(speedup['train_tokens'], 1)}.",
        f"- Time to target accuracy {fmt(report['target_accuracy'], 3)}: **{fmt(speedup['time_to_target'])}×**"
        + (" (n/a: a run never reached it)" if speedup["time_to_target"] is None else "") + ".",
        f"- Response length change (end / start): GRPO {fmt(report['response_length_change']['grpo'])}, "
        f"BPPO {fmt(report['response_length_change']['bppo'])}.",
        "", "## Why", "",
        explain(report), "",
        "Figures: `accuracy_vs_time.png`, `phase_times.png`, `train_tokens.png`, `response_length.png`.",
    ]
    return "\n".join(lines) + "\n"


def explain(report: dict) -> str:
    """A paragraph that reads the measured numbers, whichever way they came out."""
    speedup, bound = report["speedup"], report["bound"]
    share = bound["generate_share_grpo"]
    text = (f"BPPO trains {fmt(speedup['train_tokens'], 1)}× fewer tokens per step, so its learner phase is "
            f"{fmt(speedup['learner'])}× faster (only {fmt(bound['pair_rate'])} of groups had both a correct and "
            f"an incorrect response, so BPPO's batch is smaller still than its 2-of-G selection); but generation, "
            f"{fmt(100 * share, 0)}% of a GRPO step here, is the same work for both, which caps the step speedup "
            f"at {fmt(bound['amdahl_at_pair_rate'])}× (measured {fmt(speedup['step'])}×).")
    ttt = speedup["time_to_target"]
    if ttt is None:
        text += " One of the runs never reached the target accuracy, so no time-to-target speedup is reported."
    elif ttt >= (speedup["step"] or 0):
        text += f" Time to target improved by {fmt(ttt)}×, at least the step speedup: per second, BPPO learned as fast or faster."
    else:
        text += (f" Time to target improved by only {fmt(ttt)}× (below the step speedup): per step, the pair "
                 "carries less signal than all G responses, so BPPO needed more steps.")
    change = report["response_length_change"]
    if change["grpo"] and change["bppo"]:
        text += (f" Response length changed by ×{fmt(change['grpo'])} under GRPO and ×{fmt(change['bppo'])} "
                 "under BPPO; shorter responses are the route by which BPPO can also cut generation time.")
    return text


def plot_report(report: dict, runs: dict[str, dict[int, list[dict]]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"grpo": "tab:blue", "bppo": "tab:orange"}
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo, by_seed in runs.items():
        for i, seed in enumerate(sorted(by_seed)):
            curve = report[algo]["per_seed"][seed]["eval_curve"]
            ax.errorbar([p["train_elapsed_s"] for p in curve], [p["accuracy"] for p in curve],
                        yerr=[standard_error(p["accuracy"], int(p["problems"])) for p in curve],
                        color=colors[algo], marker="o", capsize=3, alpha=0.9 if i == 0 else 0.5,
                        label=algo.upper() if i == 0 else None)
    if report["target_accuracy"] is not None:
        ax.axhline(report["target_accuracy"], color="gray", linestyle="--", label="target")
    ax.set(xlabel="training time (s)", ylabel="eval accuracy (greedy)", title="Accuracy vs wall-clock")
    ax.legend()
    paths.append(_save(fig, out_dir / "accuracy_vs_time.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = {a: 0.0 for a in runs}
    for phase in ("generate", "reward", "select", "old", "ref", "update", "sync"):
        values = [report[a]["phase_means_s"][phase] or 0.0 for a in runs]
        ax.bar([a.upper() for a in runs], values, bottom=[bottom[a] for a in runs], label=phase)
        for a, v in zip(runs, values):
            bottom[a] += v
    ax.set(ylabel="seconds per step", title="Time per phase per step")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "phase_times.png"))

    for key, name, ylabel in (("train/tokens", "train_tokens.png", "tokens through the learner"),
                              ("response/len_mean", "response_length.png", "mean response length (tokens)")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for algo, by_seed in runs.items():
            for i, seed in enumerate(sorted(by_seed)):
                steps = [r for r in by_seed[seed] if r["step"] > 0 and r.get(key) is not None]
                ax.plot([r["step"] for r in steps], [r[key] for r in steps], color=colors[algo],
                        alpha=0.9 if i == 0 else 0.5, label=algo.upper() if i == 0 else None)
        ax.set(xlabel="step", ylabel=ylabel, title=ylabel[0].upper() + ylabel[1:] + " per step")
        ax.legend()
        paths.append(_save(fig, out_dir / name))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write_report(report: dict, runs: dict[str, dict[int, list[dict]]], out_dir: Path, *, command: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report, command=command))
    return [out_dir / "report.json", out_dir / "report.md", *plot_report(report, runs, out_dir)]
