"""Generation time saved by early-stopped groups (rollout.early_stop_groups), same policy.

    .venv/bin/python benchmarks/early_stop.py [--batches 8] [--config configs/tiny_cpu.yaml] [--name early_stop] [overrides...]

On the warm-started tiny model (configs/tiny_cpu.yaml, or --config's; bootstrapped first if not cached),
with the real geometry reward: each batch of ``trainer.prompts_per_step`` prompts x G is
sampled twice with the same seeds, once whole and scored by the reward pool (what a
training step's generate + reward phases do), once with early-stopped groups (judged while
generating). The order alternates per batch; the first batch is a warm-up and not timed.
Prints and writes benchmarks/results/early_stop.json: seconds per batch both ways, tokens
decoded, completions aborted, pair rate, and how often the early
pair is the full group's pair (it should be always: completions finish in length order).
The accuracy effect needs training runs: `bppo sweep --config configs/sweep_early_stop.yaml`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _pairs(samples, correct, finished, G):
    import torch

    from learner.selection import select_pairs

    shape = (len(samples) // G, G)
    lengths = torch.tensor([len(s.response_ids) for s in samples]).view(shape)
    return select_pairs(
        torch.tensor(correct).view(shape), lengths, "shortest", eligible=torch.tensor(finished).view(shape)
    )


def _decoded_tokens(samples, correct, finished, G) -> int:
    """Tokens the engine decoded. The completions of a group all start in the same step; the
    group is decided by the step t at which its first correct and first incorrect completions
    have both finished, and the verdicts arrive one step later, so an aborted completion
    decoded t + 1 tokens."""
    total = 0
    for start in range(0, len(samples), G):
        group = [
            (len(s.response_ids), c)
            for s, c, done in zip(samples[start : start + G], correct[start : start + G], finished[start : start + G])
            if done
        ]
        total += sum(length for length, _ in group)
        aborted = G - len(group)
        if aborted:
            first_correct = min(length for length, c in group if c)
            first_incorrect = min(length for length, c in group if not c)
            total += aborted * (max(first_correct, first_incorrect) + 1)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--config", default="configs/tiny_cpu.yaml", help="e.g. configs/smollm2_cpu.yaml")
    parser.add_argument("--name", default="early_stop", help="writes benchmarks/results/<name>.json")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from orchestrator.config import RayConfig
    from orchestrator.config_io import load_config
    from orchestrator.loop import Trainer
    from orchestrator.ray_cluster import ray_cluster
    from rewards.pool import RewardPool
    from rollout.early_stop import EarlyStop
    from rollout.fleet import EngineFleet

    config = load_config([str(ROOT / args.config)], args.overrides)
    trainer = Trainer(config)  # resolves (bootstraps) the model, tokenizes the prompts
    rollout, per_batch = config.rollout, config.trainer.prompts_per_step
    rows = {"full": [], "early": []}
    with ray_cluster(RayConfig(num_cpus=2)):
        pool = RewardPool(config.reward, num_cpus_per_worker=0.25)
        fleet = EngineFleet(
            num_engines=1,
            resources_per_engine={"CPU": 1},
            engine_kwargs=dict(
                model_path=trainer.model_path,
                max_model_len=rollout.max_model_len,
                cpu_kv_cache_gib=rollout.cpu_kv_cache_gib,
                seed=config.trainer.seed,
            ),
        )
        for batch in range(args.batches + 1):
            indices = list(range(batch * per_batch, (batch + 1) * per_batch))
            prompts = [trainer.train_prompts[i] for i in indices]
            answers = [trainer.train_set[i].answer for i in indices]
            sampling = trainer._sampling(step=batch + 1, round_=0)
            measured = {}
            for mode in ("full", "early") if batch % 2 else ("early", "full"):
                started = time.perf_counter()
                if mode == "full":
                    samples = fleet.generate(prompts, sampling)
                    results, _ = pool.score([s.text for s in samples], [answers[s.prompt_index] for s in samples])
                else:
                    samples = fleet.generate(
                        prompts, sampling, early_stop=EarlyStop(tuple(answers), tuple(pool.workers))
                    )
                    results = [s.meta.get("reward") for s in samples]
                measured[mode] = (time.perf_counter() - started, samples, results)
            if batch == 0:
                continue  # warm-up
            pairs = {}
            for mode, (seconds, samples, results) in measured.items():
                finished = [r is not None for r in results]
                correct = [bool(r is not None and r.correct) for r in results]
                pairs[mode] = _pairs(samples, correct, finished, rollout.n)
                rows[mode].append(
                    {
                        "seconds": seconds,
                        "tokens": _decoded_tokens(samples, correct, finished, rollout.n),
                        "aborted": finished.count(False),
                        "completions": len(samples),
                        "pair_rate": float(pairs[mode][2].float().mean()),
                    }
                )
            same = all((a == b).all() for a, b in zip(pairs["early"], pairs["full"]))
            rows["early"][-1]["same_pairs"] = bool(same)
        fleet.shutdown()
        pool.shutdown()

    def mean(mode: str, key: str) -> float:
        return statistics.mean(row[key] for row in rows[mode])

    result = {
        mode: {key: round(mean(mode, key), 4) for key in ("seconds", "tokens", "aborted", "completions", "pair_rate")}
        for mode in rows
    }
    result["early"]["same_pairs_rate"] = statistics.mean(float(row["same_pairs"]) for row in rows["early"])
    result["generation_time_saved"] = round(1 - result["early"]["seconds"] / result["full"]["seconds"], 3)
    result["decoded_tokens_saved"] = round(1 - result["early"]["tokens"] / result["full"]["tokens"], 3)
    result["batches_timed"] = args.batches
    result["prompts_x_G"] = f"{per_batch} x {rollout.n}, max_tokens {rollout.max_tokens}"
    result["model"] = trainer.model_path
    result["machine"] = f"{os.cpu_count()} CPUs"
    result["command"] = " ".join(
        ["benchmarks/early_stop.py", f"--batches {args.batches}", f"--config {args.config}", *args.overrides]
    )
    print(f"{'per batch':<28}{'whole groups':>14}{'early stop':>14}")
    for key in ("seconds", "tokens", "aborted", "pair_rate"):
        print(f"{key:<28}{result['full'][key]:>14}{result['early'][key]:>14}")
    print(
        f"generation time saved {result['generation_time_saved']:.1%}, decoded tokens saved "
        f"{result['decoded_tokens_saved']:.1%}, same pairs {result['early']['same_pairs_rate']:.0%}"
    )
    print("wrote", save_result(args.name, result))


if __name__ == "__main__":
    main()
