"""Reward scoring throughput with the Ray worker pool, and worst-case latency.

2,000 realistic completions (worked solutions of synthetic geometry problems: half as
generated, a fifth rewritten into an equivalent form that needs the symbolic checker,
a quarter with a wrong answer, the rest without a boxed answer) are scored by the pool
on a local Ray cluster; then each hostile completion of the test suite is scored alone
to measure the worst-case latency against the timeout.

    .venv/bin/python benchmarks/reward_throughput.py [--workers 2] [--n 2000]

Prints the numbers and writes benchmarks/results/reward_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from orchestrator.config import RayConfig  # noqa: E402
from orchestrator.ray_cluster import ray_cluster  # noqa: E402
from prompts.synthetic import generate  # noqa: E402
from rewards.config import RewardConfig  # noqa: E402
from rewards.pool import RewardPool  # noqa: E402
from rewards.sandbox import warm_up  # noqa: E402
from rewards.verify import score  # noqa: E402
from tests.test_rewards_hostile import HOSTILE  # noqa: E402


def realistic_completions(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    rng = random.Random(seed)
    train, _ = generate(n, 1, seed=seed)
    completions, truths, kinds = [], [], []
    for problem in train:
        solution = problem.solution if rng.random() < 0.5 else problem.meta["verbose_solution"]
        boxed = f"\\boxed{{{problem.answer}}}"
        roll = rng.random()
        if roll < 0.5:
            kind, text = "as generated", solution
        elif roll < 0.7:  # an equivalent form only the symbolic checker can confirm
            kind, text = (
                "equivalent form",
                solution.replace(boxed, f"\\boxed{{\\frac{{2 \\cdot ({problem.answer})}}{{2}}}}"),
            )
        elif roll < 0.95:
            other = rng.choice(train).answer
            kind, text = "wrong answer", solution.replace(boxed, f"\\boxed{{{other}}}")
        else:
            kind, text = "no box", solution.replace(boxed, problem.answer)
        completions.append(text)
        truths.append(problem.answer)
        kinds.append(kind)
    return completions, truths, kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()

    completions, truths, kinds = realistic_completions(args.n)
    config = RewardConfig(num_workers=args.workers, timeout_s=args.timeout)
    with ray_cluster(RayConfig(num_cpus=os.cpu_count())):
        pool = RewardPool(config)
        pool.score(completions[:50], truths[:50])  # warm the workers' checker processes
        started = time.perf_counter()
        results, metrics = pool.score(completions, truths)
        elapsed = time.perf_counter() - started
        pool.shutdown()
    by_kind = {
        k: sum(r.correct for r, kk in zip(results, kinds) if kk == k) / max(kinds.count(k), 1) for k in set(kinds)
    }

    warm_up()  # as a reward worker does at start: no check waits for a checker's imports
    latencies = {}
    for name, text in HOSTILE.items():
        t0 = time.perf_counter()
        result = score(text, "3", timeout_s=args.timeout)
        latencies[name] = (time.perf_counter() - t0, result.reason)
    in_process = []
    for text, truth in zip(completions[:300], truths[:300]):
        t0 = time.perf_counter()
        score(text, truth, timeout_s=args.timeout)
        in_process.append(time.perf_counter() - t0)

    worst_name, (worst_s, worst_reason) = max(latencies.items(), key=lambda kv: kv[1][0])
    report = {
        "completions": args.n,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "pool_seconds": round(elapsed, 3),
        "pool_completions_per_s": round(args.n / elapsed, 1),
        "accuracy_by_kind": {k: round(v, 4) for k, v in sorted(by_kind.items())},
        "reward_metrics": {k: round(v, 4) for k, v in metrics.items()},
        "single_call_latency_ms": {
            "p50": round(1000 * statistics.median(in_process), 2),
            "p99": round(1000 * sorted(in_process)[int(0.99 * len(in_process)) - 1], 2),
        },
        "timeout_s": args.timeout,
        "hostile_worst_case_s": round(worst_s, 3),
        "hostile_worst_case": worst_name,
        "hostile_worst_case_reason": worst_reason,
        "hostile_latency_s": {k: [round(v[0], 3), v[1]] for k, v in latencies.items()},
    }
    out = save_result("reward_throughput", report)
    print(
        f"pool: {args.n} completions in {elapsed:.2f} s = {report['pool_completions_per_s']} completions/s "
        f"({args.workers} workers, {os.cpu_count()} CPUs)"
    )
    print(f"accuracy by kind: {report['accuracy_by_kind']}")
    print(
        f"single call p50 {report['single_call_latency_ms']['p50']} ms, p99 {report['single_call_latency_ms']['p99']} ms"
    )
    print(f"worst hostile case: {worst_name!r} {worst_s:.2f} s ({worst_reason}) with timeout {args.timeout} s")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
