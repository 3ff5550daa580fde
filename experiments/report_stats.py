"""Confidence intervals for the compare report: a paired bootstrap over eval items and seeds.

Every run of a comparison evaluates the same held-out problems, greedily, so one resample of
the eval items applies to every run at once (paired), and runs that share a seed share their
prompt order, so seeds are resampled as pairs too. Step times are resampled within each run.
Each resample recomputes every statistic the report states -- accuracies, the lift over the
warm start, time and steps to the target, and the speedups -- and a 95% interval is read off
the percentiles. Pure numpy, no Ray.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEVEL = 0.95
MIN_TARGET_SES = 2.0  # a time-to-target target closer than this to the warm start is noise's


def standard_error(accuracy: float, problems: int) -> float:
    """The binomial standard error of an accuracy measured on ``problems`` items."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / problems) if problems else 0.0


def fmt(value, digits: int = 2, suffix: str = "") -> str:
    """A number for a report table; "n/a" for a figure that was not measured."""
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


@dataclass(frozen=True)
class RunOutcomes:
    """One run (algorithm, seed): its evaluations item by item, and its per-step times."""

    eval_steps: np.ndarray  # (E,)
    eval_times: np.ndarray  # (E,) training seconds at each evaluation
    correct: np.ndarray  # (E, N) bool: problem i answered correctly at evaluation e
    step_times: np.ndarray  # (S,) seconds per step, warm-up steps excluded
    learner_times: np.ndarray  # (S,) old + ref + update seconds per step

    @property
    def curve(self) -> np.ndarray:
        return self.correct.mean(axis=1)


def read_evals(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "evals.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run_outcomes(records: list[dict], evals: list[dict], warmup_steps: int) -> RunOutcomes | None:
    """None when the run has no per-item evaluations (runs made before evals.jsonl existed)."""
    if not evals or len({len(e["correct"]) for e in evals}) != 1:
        return None
    steps = [r for r in records if r["step"] > 0]
    timed = [r for r in steps if r["step"] > warmup_steps] or steps
    learner = [sum(r.get(f"time/{p}") or 0.0 for p in ("old", "ref", "update")) for r in timed]
    return RunOutcomes(
        eval_steps=np.array([e["step"] for e in evals]),
        eval_times=np.array([e["train_elapsed_s"] for e in evals], dtype=float),
        correct=np.array([[c == "1" for c in e["correct"]] for e in evals], dtype=bool),
        step_times=np.array([r.get("time/step") or 0.0 for r in timed], dtype=float),
        learner_times=np.array(learner, dtype=float),
    )


def first_reach(curve: np.ndarray, marks: np.ndarray, target: float) -> float:
    """The mark (time or step) of the first evaluation at or above ``target``; inf if never."""
    hits = np.nonzero(curve >= target - 1e-12)[0]
    return float(marks[hits[0]]) if hits.size else math.inf


def speedup(slow: float, fast: float) -> float:
    """GRPO's quantity over BPPO's: inf when only BPPO got there, nan when neither did."""
    if math.isinf(slow) and math.isinf(fast):
        return math.nan
    return math.inf if fast == 0 else slow / fast


def _statistics(
    runs: dict[str, list[RunOutcomes]], items: np.ndarray, step_rows: dict, target: float | None, auto_target: bool
) -> dict:
    """The report's numbers for one (re)sample: ``runs[algo]`` lists the (resampled) seeds'
    runs, ``items`` the eval items, ``step_rows[(algo, i)]`` the steps drawn for run i.
    ``auto_target``: the target is the default rule (the highest accuracy every run reached)
    applied to this sample's curves -- the rule is part of the statistic, so it is resampled too;
    a fixed target would sit at one run's noisy maximum and be missed in half the resamples."""
    out: dict[str, float] = {}
    curves_of = {algo: [run.correct[:, items].mean(axis=1) for run in seeds] for algo, seeds in runs.items()}
    if auto_target and target is not None:
        target = min(float(c.max()) for curves in curves_of.values() for c in curves)
    for algo, seeds in runs.items():
        curves = curves_of[algo]
        out[f"{algo}/warm"] = float(np.mean([c[0] for c in curves]))
        out[f"{algo}/final"] = float(np.mean([c[-1] for c in curves]))
        out[f"{algo}/lift"] = out[f"{algo}/final"] - out[f"{algo}/warm"]
        out[f"{algo}/step_s"] = float(
            np.mean([run.step_times[step_rows[(algo, i)]].mean() for i, run in enumerate(seeds)])
        )
        out[f"{algo}/learner_s"] = float(
            np.mean([run.learner_times[step_rows[(algo, i)]].mean() for i, run in enumerate(seeds)])
        )
        if target is not None:
            # a seed that never reaches the target makes the mean infinite: "not reached"
            out[f"{algo}/time_to_target"] = float(
                np.mean([first_reach(c, r.eval_times, target) for c, r in zip(curves, seeds)])
            )
            out[f"{algo}/steps_to_target"] = float(
                np.mean([first_reach(c, r.eval_steps, target) for c, r in zip(curves, seeds)])
            )
    out["speedup/step"] = speedup(out["grpo/step_s"], out["bppo/step_s"])
    out["speedup/learner"] = speedup(out["grpo/learner_s"], out["bppo/learner_s"])
    if target is not None:
        out["speedup/time_to_target"] = speedup(out["grpo/time_to_target"], out["bppo/time_to_target"])
        # > 1: BPPO needed fewer steps (more signal per step); time = steps x step time
        out["speedup/steps_to_target"] = speedup(out["grpo/steps_to_target"], out["bppo/steps_to_target"])
    return out


def interval(samples: list[float]) -> tuple[float, float] | None:
    """Percentile interval; infinite ends stay infinite, undefined (nan) resamples are dropped
    unless they are the majority."""
    values = np.array([v for v in samples if not math.isnan(v)], dtype=float)
    if values.size < max(1, len(samples) // 2):
        return None
    tail = (1 - LEVEL) / 2 * 100
    low = float(np.percentile(values, tail, method="lower"))
    high = float(np.percentile(values, 100 - tail, method="higher"))
    return low, high


def choose_target(
    curves: dict[str, tuple[list[float], list[float]]], warm: float, se: float, problems: int, configured: float | None
) -> tuple[float | None, str | None]:
    """The time-to-target level, or None and why. ``curves[label] = (accuracies, times)`` per run.
    Default: the highest accuracy every run reached. Measurable only when it is at least
    MIN_TARGET_SES standard errors above the warm start and every run reached it."""
    target = configured if configured is not None else min(max(acc) for acc, _ in curves.values())
    if target < warm + MIN_TARGET_SES * se - 1e-12:
        how = "the configured target" if configured is not None else "the highest accuracy every run reached"
        return None, (
            f"{how}, {target:.3f}, is less than {MIN_TARGET_SES:g} standard errors above the warm start "
            f"({warm:.3f} ± {se:.3f} on {problems} problems): a difference noise alone produces"
        )
    missed = [
        label
        for label, (acc, times) in curves.items()
        if math.isinf(first_reach(np.array(acc), np.array(times), target))
    ]
    if missed:
        return None, f"{', '.join(missed)} never reached the target {target:.3f}"
    return target, None


def bootstrap(
    runs: dict[str, dict[int, RunOutcomes]],
    target: float | None,
    *,
    auto_target: bool = False,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict]:
    """``{name: {"value": point estimate, "ci": (low, high) or None}}`` for every statistic.
    ``target`` None: no time-to-target statistics (not measurable)."""
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in runs.values())))
    problems = next(iter(runs["grpo"].values())).correct.shape[1]
    all_steps = {
        (algo, i): np.arange(by_seed[s].step_times.size) for algo, by_seed in runs.items() for i, s in enumerate(seeds)
    }
    point = _statistics(
        {a: [runs[a][s] for s in seeds] for a in runs}, np.arange(problems), all_steps, target, auto_target
    )
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in point}
    for _ in range(resamples):
        chosen = [seeds[i] for i in rng.integers(0, len(seeds), len(seeds))]
        items = rng.integers(0, problems, problems)
        step_rows = {
            (algo, i): rng.integers(0, runs[algo][s].step_times.size, runs[algo][s].step_times.size)
            for algo in runs
            for i, s in enumerate(chosen)
        }
        sample = _statistics({a: [runs[a][s] for s in chosen] for a in runs}, items, step_rows, target, auto_target)
        for name, value in sample.items():
            draws[name].append(value)
    return {name: {"value": point[name], "ci": interval(draws[name])} for name in point}
