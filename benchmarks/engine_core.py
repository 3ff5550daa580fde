"""vLLM's engine core in its own process (the default, GPU topology) vs inside the engine actor.

    .venv/bin/python benchmarks/engine_core.py [--repeats 6]

One ``RolloutEngine`` per mode, each in a fresh process (the mode is a process-wide vLLM
setting), on the tiny CPU preset's model (configs/tiny_cpu.yaml: the warm-started model when
it is cached, else the randomly initialised one) and its batch: 16 prompts x G=8, up to 160
new tokens, T=1. Measures start-up, the median of ``--repeats`` generate calls (after one
warm-up call; same seeds, so the same tokens every time) and the median weight update
through vLLM's weight-transfer API (gloo) from a learner stand-in in this process. Prints
and writes benchmarks/results/engine_core.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory
from tiny_batch import tiny_preset_batch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(separate_process: bool, repeats: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from rollout.engine import RolloutEngine
    from rollout.types import SamplingSettings

    config, model_path, prompts = tiny_preset_batch()
    sampling = SamplingSettings(n=config.rollout.n, temperature=1.0, max_tokens=config.rollout.max_tokens, seed=1)

    started = time.perf_counter()
    engine = RolloutEngine(
        model_path, max_model_len=config.rollout.max_model_len, seed=0, engine_core_process=separate_process
    )
    start_s = time.perf_counter() - started
    engine.generate(prompts, sampling)  # warm-up
    generate_s, tokens = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        samples = engine.generate(prompts, sampling)
        generate_s.append(time.perf_counter() - started)
        tokens = sum(len(s.response_ids) for s in samples)
    sync_s = _sync_times(engine, AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32), repeats)
    engine.close()
    return {
        "start_s": round(start_s, 2),
        "generate_s": round(statistics.median(generate_s), 3),
        "generate_s_all": [round(s, 3) for s in generate_s],
        "tokens": tokens,
        "tokens_per_s": round(tokens / statistics.median(generate_s), 1),
        "sync_s": round(statistics.median(sync_s), 4),
    }


class _InProcessClient:
    """The four weight-transfer calls on an engine living in this process."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def init_weight_transfer_engine(self, init_info):
        self.engine.weight_transfer("init_weight_transfer_engine", {"init_info": init_info})

    def start_weight_update(self):
        self.engine.weight_transfer("start_weight_update")

    def update_weights(self, update_info):
        self.engine.weight_transfer("update_weights", {"update_info": update_info})

    def finish_weight_update(self, weight_version=None):
        self.engine.weight_transfer("finish_weight_update")


def _sync_times(engine, model, repeats: int) -> list[float]:
    """Full weight updates over gloo (trainer rank 0 = this process)."""
    from vllm.distributed.weight_transfer.base import ModuleSource
    from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

    from learner.worker import free_port
    from weight_sync.transfer import trainer_init_info

    init = trainer_init_info(
        "gloo",
        rank=0,
        master_address="127.0.0.1",
        master_port=free_port(),
        world_size=2,
        bucket_bytes=512 * 2**20,
        timeout_s=120,
    )
    transfer = WeightTransferTrainerFactory.trainer_init(
        init, client=_InProcessClient(engine), source=ModuleSource(model)
    )
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        transfer.send_weights()
        times.append(time.perf_counter() - started)
    transfer.shutdown()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--child", choices=["separate", "in_actor"])
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(measure(args.child == "separate", args.repeats)), flush=True)
        return
    results = {}
    for mode in ("separate", "in_actor"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode or not lines:
            sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
        results[mode] = json.loads(lines[-1].removeprefix("RESULT "))
    sep, inp = results["separate"], results["in_actor"]
    results["generate_ratio_separate_over_in_actor"] = round(sep["generate_s"] / inp["generate_s"], 3)
    results["machine"] = f"{os.cpu_count()} CPUs"
    results["command"] = f"benchmarks/engine_core.py --repeats {args.repeats}"
    print(f"{'':<22}{'separate process':>18}{'in actor':>12}")
    for key in ("start_s", "generate_s", "tokens_per_s", "sync_s"):
        print(f"{key:<22}{sep[key]:>18}{inp[key]:>12}")
    print("generate_s per call:", sep["generate_s_all"], inp["generate_s_all"])
    print(f"-> {save_result('engine_core', results)}")


if __name__ == "__main__":
    main()
