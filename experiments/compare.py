"""``bppo compare``: GRPO and BPPO (per seed) with everything else identical, then the report.

Both algorithms start from the same (warm-started) model, use the same prompt order and
sampling seeds (``trainer.seed``), G, evaluation set and schedule, and the same budget
(``trainer.steps`` or ``trainer.time_budget_s``). ``compare.schedule: interleaved`` keeps both
arms' actors up side by side and lets them take training steps in turn, so a slow spell of a
shared machine lands on both arms alike; ``sequential`` runs one arm after the other. Either
way only one arm computes at a time: neither competes with the other for CPU or GPU (an async
arm's step ends with its batch generated ahead finished, before the other arm's turn). Both arms
train in the same ``trainer.mode``: ``bppo compare ... trainer.mode=async`` compares BPPO-async
with GRPO-async, whose step bound the report then uses. Runs go to
``<run_dir>/<algo>-seed<k>/``, the report (``report.json``, ``report.md``, PNGs) to
``<run_dir>/``; all runs share one wandb group.
"""

from __future__ import annotations

import sys
from pathlib import Path

from orchestrator import console
from orchestrator.config import Config
from orchestrator.config_io import ConfigError, load_config

ALGOS = ("grpo", "bppo")


def arm_overrides(config: Config, algo: str, seed: int) -> list[str]:
    root = Path(config.trainer.run_dir)
    group = config.compare.name or root.name
    extra = config.compare.grpo if algo == "grpo" else config.compare.bppo
    # interleaved: both arms' actors share the cluster at once, each placed in half of it
    share = [f"ray.share={config.ray.share / len(ALGOS):g}"] if config.compare.schedule == "interleaved" else []
    return [
        f"algo.name={algo}",
        *extra,
        f"trainer.seed={seed}",
        f"trainer.run_dir={root / f'{algo}-seed{seed}'}",
        f"wandb.group={group}",
        *share,
    ]


def bppo_window(config: Config) -> float:
    """n of the token-ratio bound for the BPPO arm's prefix mode (inf = whole response)."""
    prefix = config.algo.prefix
    return {"tokens": prefix.tokens, "divergence": prefix.tokens}.get(prefix.mode, float("inf"))


def run_compare(paths: list[str], overrides: list[str], *, command: str, report_only: bool = False, log=print) -> Path:
    """Every arm, then the report; ``report_only`` re-reads the arms' run directories instead of
    training (the report of runs made earlier, e.g. after a change to the report itself)."""
    from models.sources import resolve_model_path
    from orchestrator.loop import Trainer
    from orchestrator.ray_cluster import ray_cluster

    config = load_config(paths, overrides)
    arms = {
        (algo, seed): load_config(paths, [*overrides, *arm_overrides(config, algo, seed)])
        for seed in config.compare.seeds
        for algo in ALGOS
    }
    modes = {arm.trainer.mode for arm in arms.values()}
    if len(modes) > 1:
        raise ConfigError(
            f"trainer.mode differs between the arms (compare.grpo={config.compare.grpo}, "
            f"compare.bppo={config.compare.bppo}): the GRPO baseline gets every efficiency BPPO gets; "
            "set trainer.mode for both (e.g. trainer.mode=async)"
        )
    if not report_only:
        with ray_cluster(config.ray):
            console.worker_log(Path(config.trainer.run_dir) / "worker.log")  # the warm start's; each arm its own
            resolve_model_path(config, log=log)  # one warm start, shared by every run
            if config.compare.schedule == "interleaved":
                for seed in config.compare.seeds:
                    log(f"== seed {seed}: {' and '.join(ALGOS)} in turn", file=sys.stderr)
                    run_interleaved([Trainer(arms[(algo, seed)], log=log) for algo in ALGOS])
            else:
                for (algo, seed), arm in arms.items():
                    log(f"== {algo} seed {seed} -> {arm.trainer.run_dir}", file=sys.stderr)
                    Trainer(arm, log=log).run()
    return write_compare_report(config, arms[("bppo", config.compare.seeds[0])], command=command, log=log)


def run_interleaved(trainers: list) -> None:
    """Start every run, then one training step of each in turn until all are done; every run's
    actors are stopped whatever happens. Step times are each run's own, measured while the
    others wait, so the alternation spreads a slow spell of the machine over all of them."""
    started = []
    try:
        for trainer in trainers:
            trainer.start()
            started.append(trainer)
        for trainer in trainers:
            trainer.begin()
        running = list(trainers)
        while running:
            for trainer in list(running):
                if not trainer.advance():
                    trainer.finish()
                    running.remove(trainer)
    finally:
        for trainer in started:
            trainer.stop()


def write_compare_report(config: Config, bppo_config: Config, *, command: str, log=print) -> Path:
    from experiments.report import build_report, load_runs, write_report

    out = Path(config.trainer.run_dir)
    missing = [
        f"{algo}-seed{seed}"
        for algo in ALGOS
        for seed in config.compare.seeds
        if not (out / f"{algo}-seed{seed}" / "metrics.jsonl").exists()
    ]
    if missing:
        raise ValueError(f"{out}: no metrics.jsonl for {', '.join(missing)} (run the compare first)")
    runs, evals = load_runs(out, ALGOS, config.compare.seeds)
    report = build_report(
        runs,
        group_size=config.rollout.n,
        window=bppo_window(bppo_config),
        target_accuracy=config.compare.target_accuracy,
        evals=evals,
    )
    written = write_report(report, runs, out, command=command)
    log(f"report: {out / 'report.md'} ({', '.join(p.name for p in written)})")
    return out
