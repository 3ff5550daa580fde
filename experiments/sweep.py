"""``bppo sweep``: arms × grid expanded into validated configs, each trial a Ray task.

Why Ray tasks (not Ray Tune, not the Jobs API): a trial is a whole ``bppo train`` run
that starts its own actors; a task with no CPU of its own is a driver-like process on the
cluster, so a trial that crashes is recorded as failed without taking the sweep down, and
``sweep.max_concurrent`` trials share a multi-node cluster. Tune would add a scheduler and
search algorithms we do not use (the grid is explicit); the Jobs API needs the dashboard
and a working directory upload. Every trial's config is expanded and validated before the
first one starts, so a typo fails the sweep in one line, not an hour in.

Concurrent trials share the cluster: each plans into ``ray.share`` = 1/(trials at once) of it
(times the sweep's own ``ray.share``), so ``max_concurrent`` trials fit side by side. A trial task
finds Ray already initialised and uses that cluster. Trials go to ``<run_dir>/<trial>/`` (made
absolute here: a task's working directory is not the driver's; on several nodes run_dir must be
on a shared filesystem); the summary to ``<run_dir>/sweep.json`` and ``sweep.md``, with each
trial's start and end time.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

from orchestrator import console
from orchestrator.config_io import ConfigError, load_config


def expand_trials(paths: list[str], overrides: list[str]) -> dict[str, list[str]]:
    """Trial name (``<arm>`` or ``<arm>-<grid point>``) -> the overrides that make its config
    (each one validated here)."""
    config = load_config(paths, overrides)
    sweep, root = config.sweep, Path(os.path.abspath(config.trainer.run_dir))
    if sweep.baseline not in sweep.arms:
        raise ConfigError(f"sweep.baseline={sweep.baseline!r} is not one of sweep.arms ({', '.join(sweep.arms)})")
    keys = list(sweep.grid)
    at_once = min(sweep.max_concurrent, len(sweep.arms) * math.prod(len(v) for v in sweep.grid.values()))
    share = f"ray.share={config.ray.share / max(1, at_once)!r}"  # an arm may still set its own
    trials = {}
    bad = [arm for arm in sweep.arms if "-" in arm]
    if bad:
        raise ConfigError(f"sweep.arms: names may not contain '-' (it separates arm and grid point): {bad}")
    for arm, arm_overrides in sweep.arms.items():
        for values in itertools.product(*(sweep.grid[k] for k in keys)):
            point = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in zip(keys, values)]
            name = "-".join([arm, *(f"{k.split('.')[-1]}{v}" for k, v in zip(keys, values))])
            trial = [
                *overrides,
                share,
                *arm_overrides,
                *point,
                f"trainer.run_dir={root / name}",
                f"wandb.group={sweep.name or root.name}",
            ]
            try:
                load_config(paths, trial)
            except ConfigError as error:
                raise ConfigError(f"sweep trial {name}: {error}") from None
            trials[name] = trial
    return trials


def _run_trial(paths: list[str], overrides: list[str]) -> tuple[str, float, float]:
    """Inside a Ray task: one ``bppo train`` run on the cluster the task runs in; ("ok", start, end)."""
    from orchestrator.loop import Trainer

    started = time.time()
    Trainer(load_config(paths, overrides)).run()
    return "ok", started, time.time()


def run_sweep(paths: list[str], overrides: list[str], *, command: str, log=print) -> Path:
    import ray

    from models.sources import resolve_model_path
    from orchestrator.ray_cluster import ray_cluster

    config = load_config(paths, overrides)
    trials = expand_trials(paths, overrides)
    log(f"sweep: {len(trials)} trials: {', '.join(trials)}", file=sys.stderr)
    status: dict[str, str] = {}
    times: dict[str, tuple[float, float]] = {}  # trial -> (start, end), unix time, as the trial saw it
    with ray_cluster(config.ray):
        console.worker_log(Path(config.trainer.run_dir) / "worker.log")  # every trial's worker output
        resolve_model_path(config, log=log)  # one warm start before any trial needs it
        task = ray.remote(num_cpus=0, max_retries=0)(_run_trial)
        pending: dict = {}
        queue = list(trials.items())
        while queue or pending:
            while queue and len(pending) < config.sweep.max_concurrent:
                name, trial = queue.pop(0)
                log(f"== trial {name}", file=sys.stderr)
                pending[task.remote(paths, trial)] = name
            done, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(done[0])
            try:
                status[name], started, finished = ray.get(done[0])
                times[name] = (started, finished)
            except Exception as error:  # noqa: BLE001 - one failed trial must not end the sweep
                status[name] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
                log(f"trial {name} {status[name]}", file=sys.stderr)
    root = Path(config.trainer.run_dir)
    summary = summarize_sweep(
        root, trials, status, baseline=config.sweep.baseline, target=config.sweep.target_accuracy, times=times
    )
    summary["command"] = command
    (root / "sweep.json").write_text(json.dumps(summary, indent=1) + "\n")
    (root / "sweep.md").write_text(render_sweep(summary))
    log(f"sweep summary: {root / 'sweep.md'}")
    return root


def summarize_sweep(
    root: Path,
    trials: dict[str, list[str]],
    status: dict[str, str],
    *,
    baseline: str,
    target: float | None,
    times: dict | None = None,
) -> dict:
    """One row per trial, with its speedups over the baseline arm's trial at the same grid point.
    Time to target is per pair (trial, its baseline): the configured target, else the highest
    accuracy both reached, and only when that is >= 2 standard errors above the warm start and
    both reached it (``report_stats.choose_target``); otherwise the row says why not."""
    from experiments.report import read_metrics, summarize_run

    summaries = {n: summarize_run(read_metrics(root / n)) for n in trials if status.get(n) == "ok"}
    rows = {}
    for name in trials:
        if name not in summaries:
            rows[name] = {"status": status.get(name, "not run")}
            continue
        s = summaries[name]
        rows[name] = {
            "status": "ok",
            **{
                k: s[k]
                for k in (
                    "mode",
                    "final_eval_accuracy",
                    "warm_start_eval_accuracy",
                    "best_eval_accuracy",
                    "mean_step_time_s",
                    "mean_learner_time_s",
                    "mean_generate_time_s",
                    "train_tokens_per_step",
                    "mean_response_len_start",
                    "mean_response_len_end",
                    "pair_rate",
                    "useful_group_rate",
                    "gen_s_per_useful_group",
                    "aborted_rate",
                    "steps",
                )
            },
        }
        if times and name in times:
            rows[name]["started_at"], rows[name]["finished_at"] = times[name]
    for name, row in rows.items():
        point = name[name.index("-") :] if "-" in name else ""
        base_name = baseline + point
        if row["status"] != "ok" or name == base_name or base_name not in summaries:
            continue
        row.update(_versus_baseline(summaries[name], summaries[base_name], target))
        row["baseline_mode"] = summaries[base_name]["mode"]
    return {"target_accuracy": target, "baseline": baseline, "trials": rows}


def _versus_baseline(trial: dict, base: dict, target: float | None) -> dict:
    from experiments.report import ratio, time_to_target
    from experiments.report_stats import choose_target, standard_error

    row = {
        f"speedup_{speedup}": ratio(base[key], trial[key])
        for speedup, key in (
            ("step", "mean_step_time_s"),
            ("learner", "mean_learner_time_s"),
            ("generate", "mean_generate_time_s"),
            ("gen_per_useful_group", "gen_s_per_useful_group"),
        )
    }
    warm, problems = base["warm_start_eval_accuracy"], base["eval_problems"]
    curves = {
        label: ([p["accuracy"] for p in s["eval_curve"]], [p["train_elapsed_s"] for p in s["eval_curve"]])
        for label, s in (("this trial", trial), ("the baseline", base))
    }
    if warm is None or not all(acc for acc, _ in curves.values()):
        pair_target, reason = None, "no evaluation at step 0 (eval.every = 0)"
    else:
        pair_target, reason = choose_target(curves, warm, standard_error(warm, problems), problems, target)
    row.update(
        target_accuracy=pair_target,
        target_reason=reason,
        time_to_target_s=time_to_target(trial["eval_curve"], pair_target),
        baseline_time_to_target_s=time_to_target(base["eval_curve"], pair_target),
    )
    row["speedup_time_to_target"] = ratio(row["baseline_time_to_target_s"], row["time_to_target_s"])
    return row


def render_sweep(summary: dict) -> str:
    from experiments.report_stats import fmt as f

    configured = summary["target_accuracy"]
    how = (
        f"target accuracy {f(configured, 3)}"
        if configured is not None
        else "target per pair: the highest accuracy the trial and its baseline both reached"
    )
    lines = [
        f"# Sweep (speedups vs {summary['baseline']}; time to target: {how}, measured only when it is "
        "at least 2 standard errors above the warm start and both reached it)",
        "",
        f"Command: `{summary.get('command', '')}`",
        "",
        "| trial | status | mode | final acc | step (s) | generate (s) | learner (s) | tokens/step | "
        "length start → end | aborted | useful groups | gen s / useful group | step speedup | generate speedup | "
        "learner speedup | gen / useful group speedup | target | time to target (s): trial / baseline | "
        "time-to-target speedup |",
        "|" + "---|" * 19,
    ]
    notes = []
    for name, r in summary["trials"].items():
        if r["status"] != "ok":
            lines.append(f"| {name} | {r['status']} |" + " |" * 17)
            continue
        if r.get("target_reason"):
            notes.append(f"- {name}: time to target not measurable: {r['target_reason']}.")
        baseline_row = "speedup_step" not in r
        if not baseline_row and r.get("baseline_mode") and r["baseline_mode"] != r.get("mode"):
            notes.append(
                f"- {name}: trainer.mode {r.get('mode')} against a {r['baseline_mode']} baseline: its speedups "
                "include what the mode itself changes."
            )
        lines.append(
            f"| {name} | ok | {r.get('mode', 'sync')} | {f(r['final_eval_accuracy'], 3)} | "
            f"{f(r['mean_step_time_s'], 2)} | {f(r['mean_generate_time_s'], 2)} | {f(r['mean_learner_time_s'], 2)} | "
            f"{f(r['train_tokens_per_step'], 0)} | "
            f"{f(r['mean_response_len_start'], 1)} → {f(r['mean_response_len_end'], 1)} | {f(r.get('aborted_rate'), 2)} | "
            f"{f(r.get('useful_group_rate'), 2)} | {f(r.get('gen_s_per_useful_group'), 3)} | "
            + (
                "baseline | | | | | | |"
                if baseline_row
                else f"{f(r.get('speedup_step'), 2)} | {f(r.get('speedup_generate'), 2)} | {f(r.get('speedup_learner'), 2)} | "
                f"{f(r.get('speedup_gen_per_useful_group'), 2)} | "
                f"{f(r.get('target_accuracy'), 3)} | {f(r.get('time_to_target_s'), 1)} / "
                f"{f(r.get('baseline_time_to_target_s'), 1)} | {f(r.get('speedup_time_to_target'), 2)} |"
            )
        )
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"
