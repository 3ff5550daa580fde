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
            trial = [*overrides, share, *arm_overrides, *point, f"trainer.run_dir={root / name}",
                     f"wandb.group={sweep.name or root.name}"]
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

    from orchestrator.bootstrap import resolve_model_path
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
    summary = summarize_sweep(root, trials, status, baseline=config.sweep.baseline,
                              target=config.sweep.target_accuracy, times=times)
    summary["command"] = command
    (root / "sweep.json").write_text(json.dumps(summary, indent=1) + "\n")
    (root / "sweep.md").write_text(render_sweep(summary))
    log(f"sweep summary: {root / 'sweep.md'}")
    return root


def summarize_sweep(root: Path, trials: dict[str, list[str]], status: dict[str, str], *,
                    baseline: str, target: float | None, times: dict | None = None) -> dict:
    from orchestrator.report import ratio, read_metrics, summarize_run

    records = {n: read_metrics(root / n) for n in trials if status.get(n) == "ok"}
    if target is None and records:
        target = min((summarize_run(r)["best_eval_accuracy"] or 0.0) for r in records.values())
    rows = {}
    for name in trials:
        if name not in records:
            rows[name] = {"status": status.get(name, "not run")}
            continue
        s = summarize_run(records[name], target)
        rows[name] = {"status": "ok", **{k: s[k] for k in (
            "final_eval_accuracy", "warm_start_eval_accuracy", "best_eval_accuracy", "time_to_target_s",
            "mean_step_time_s", "mean_learner_time_s", "mean_generate_time_s", "train_tokens_per_step",
            "mean_response_len_start", "mean_response_len_end", "pair_rate", "aborted_rate", "steps")}}
        if times and name in times:
            rows[name]["started_at"], rows[name]["finished_at"] = times[name]
    for name, row in rows.items():
        point = name[name.index("-"):] if "-" in name else ""
        base = rows.get(baseline + point)
        if row["status"] != "ok" or not base or base.get("status") != "ok":
            continue
        for speedup, key in (("step", "mean_step_time_s"), ("learner", "mean_learner_time_s"),
                             ("generate", "mean_generate_time_s"), ("time_to_target", "time_to_target_s")):
            row[f"speedup_{speedup}"] = ratio(base[key], row[key])
    return {"target_accuracy": target, "baseline": baseline, "trials": rows}


def render_sweep(summary: dict) -> str:
    from orchestrator.report import fmt as f

    lines = [f"# Sweep (target accuracy {f(summary['target_accuracy'], 3)}, speedups vs {summary['baseline']})", "",
             f"Command: `{summary.get('command', '')}`", "",
             "| trial | status | final acc | time to target (s) | step (s) | generate (s) | learner (s) | tokens/step | "
             "length start → end | aborted | step speedup | generate speedup | learner speedup | time-to-target speedup |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in summary["trials"].items():
        if r["status"] != "ok":
            lines.append(f"| {name} | {r['status']} |" + " |" * 12)
            continue
        lines.append(
            f"| {name} | ok | {f(r['final_eval_accuracy'], 3)} | {f(r['time_to_target_s'], 1)} | "
            f"{f(r['mean_step_time_s'], 2)} | {f(r['mean_generate_time_s'], 2)} | {f(r['mean_learner_time_s'], 2)} | "
            f"{f(r['train_tokens_per_step'], 0)} | "
            f"{f(r['mean_response_len_start'], 1)} → {f(r['mean_response_len_end'], 1)} | {f(r.get('aborted_rate'), 2)} | "
            f"{f(r.get('speedup_step'), 2)} | {f(r.get('speedup_generate'), 2)} | {f(r.get('speedup_learner'), 2)} | "
            f"{f(r.get('speedup_time_to_target'), 2)} |")
    return "\n".join(lines) + "\n"
