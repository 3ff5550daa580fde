"""What asking vLLM for the sampled tokens' log-probs costs: the same generate call with and without.

    .venv/bin/python benchmarks/engine_logprobs.py [--repeats 6]

One ``RolloutEngine`` (engine core in its own process) on the tiny CPU preset's model
(configs/tiny_cpu.yaml: the warm-started model when it is cached, else the randomly initialised
one) and its batch: 16 prompts x G=8, up to 160 new tokens, T=1, the same seeds every call, so
both arms decode the same tokens. The arms alternate call by call after one warm-up call each
(a slow spell of the machine lands on both). The training loop asks only on steps that read
them (parity checks, learner.old_logprobs: engine, async's off-policy correction). Prints and
writes benchmarks/results/engine_logprobs.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from results_io import save_result  # benchmarks/ is the script's own directory
from tiny_batch import tiny_preset_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()

    from rollout.engine import RolloutEngine
    from rollout.types import SamplingSettings

    config, model_path, prompts = tiny_preset_batch()
    asked = SamplingSettings(n=config.rollout.n, temperature=1.0, max_tokens=config.rollout.max_tokens, seed=1)
    arms = {"with_logprobs": asked, "without": replace(asked, logprobs=False)}
    engine = RolloutEngine(model_path, max_model_len=config.rollout.max_model_len, seed=0)
    try:
        for sampling in arms.values():  # warm-up
            engine.generate(prompts, sampling)
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        tokens: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, sampling in arms.items():
                started = time.perf_counter()
                samples = engine.generate(prompts, sampling)
                seconds[name].append(time.perf_counter() - started)
                tokens[name] = sum(len(s.response_ids) for s in samples)
    finally:
        engine.close()
    if tokens["with_logprobs"] != tokens["without"]:
        raise SystemExit(f"the arms decoded different token counts: {tokens}")
    result = {"model": str(model_path), "prompts": len(prompts), "n": asked.n, "repeats": args.repeats}
    for name in arms:
        median = statistics.median(seconds[name])
        result[name] = {
            "generate_s": round(median, 3),
            "generate_s_all": [round(s, 3) for s in seconds[name]],
            "tokens": tokens[name],
            "tokens_per_s": round(tokens[name] / median, 1),
        }
        print(f"{name}: {tokens[name]} tokens in {median:.3f} s (median) = {tokens[name] / median:.0f} tokens/s")
    result["speedup_without"] = round(result["with_logprobs"]["generate_s"] / result["without"]["generate_s"], 3)
    print(f"without / with: {result['speedup_without']:.3f}x faster -> {save_result('engine_logprobs', result)}")


if __name__ == "__main__":
    main()
