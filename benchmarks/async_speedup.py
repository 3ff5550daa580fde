"""Sync vs async (one step off policy) step times of GRPO and BPPO on one preset.

    .venv/bin/python benchmarks/async_speedup.py [--config configs/tiny_cpu.yaml] [--steps 8]
                                                 [--name async_speedup] [overrides...]

Runs `bppo train` in-process four times (GRPO sync, GRPO async, BPPO sync, BPPO async: the same
seed, prompts and model; in async mode the engine and the learner on disjoint cores), skips the
first two steps (warm-ups; an async run's first step also generates its own batch) and the last
(an async run generates nothing during it), and writes
benchmarks/results/<name>.json: each run's mean step, generation and update seconds, and the
async / sync step ratio per algorithm. On two cores the sync phases use both cores each and the
async ones one each, so how much overlap pays depends on how well each phase scales with cores:
the number this measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHASES = ["generate", "reward", "update", "wait_generation", "sync", "step"]
SKIP = 2  # warm-up steps left out of the means


def run(config_path: str, algo: str, mode: str, steps: int, overrides: list[str], run_root: Path) -> dict:
    from orchestrator.config_io import load_config
    from orchestrator.loop import Trainer

    run_dir = run_root / f"{algo}-{mode}"
    config = load_config(
        [config_path],
        [
            f"algo.name={algo}",
            f"trainer.mode={mode}",
            f"trainer.steps={steps}",
            f"trainer.run_dir={run_dir}",
            "trainer.time_budget_s=null",
            "eval.every=0",
            "trainer.save_every=0",
            *overrides,
        ],
    )
    Trainer(config).run()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in records if SKIP < r["step"] < steps]
    mean = lambda key: statistics.mean(r.get(key) or 0.0 for r in timed)  # noqa: E731
    result = {f"time_{p}_s": round(mean(f"time/{p}"), 3) for p in PHASES}
    result["step_s_each"] = [round(r["time/step"], 3) for r in timed]
    result["trained_tokens"] = round(mean("train/trained_tokens"), 1)
    result["staleness"] = mean("rollout/staleness")
    result["steps_timed"] = len(timed)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "tiny_cpu.yaml"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--name", default="async_speedup", help="results file: benchmarks/results/<name>.json")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.steps <= SKIP + 1:
        parser.error(f"--steps must leave a step between the {SKIP} warm-up steps and the last")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from orchestrator.config import RayConfig
    from orchestrator.config_io import load_config
    from orchestrator.ray_cluster import ray_cluster

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp, ray_cluster(RayConfig(num_cpus=os.cpu_count() or 2)):
        from models.sources import resolve_model_path

        resolve_model_path(load_config([args.config], args.overrides))  # the warm start, once, before timing
        for algo in ("grpo", "bppo"):
            for mode in ("sync", "async"):
                results[f"{algo}_{mode}"] = run(args.config, algo, mode, args.steps, args.overrides, Path(tmp))
    results["async_over_sync_step"] = {
        algo: round(results[f"{algo}_async"]["time_step_s"] / results[f"{algo}_sync"]["time_step_s"], 3)
        for algo in ("grpo", "bppo")
    }
    results["bppo_speedup_step"] = {
        mode: round(results[f"grpo_{mode}"]["time_step_s"] / results[f"bppo_{mode}"]["time_step_s"], 3)
        for mode in ("sync", "async")
    }
    results["machine"] = f"{os.cpu_count()} CPUs"
    results["command"] = " ".join(
        ["benchmarks/async_speedup.py", f"--config {args.config}", f"--steps {args.steps}", f"--name {args.name}"]
        + args.overrides
    )
    print(f"{'s/step':<24}" + "".join(f"{k:>14}" for k in ("grpo_sync", "grpo_async", "bppo_sync", "bppo_async")))
    for key in [f"time_{p}_s" for p in PHASES]:
        print(
            f"{key:<24}"
            + "".join(f"{results[k][key]:>14}" for k in ("grpo_sync", "grpo_async", "bppo_sync", "bppo_async"))
        )
    print("async / sync step:", results["async_over_sync_step"], " GRPO / BPPO step:", results["bppo_speedup_step"])
    print(f"-> {save_result(args.name, results)}")


if __name__ == "__main__":
    main()
