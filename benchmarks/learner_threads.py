"""What a busy core does to the learner's threads, and what its thread tuner reads.

    .venv/bin/python benchmarks/learner_threads.py [--config configs/tiny_cpu.yaml] [--rows 128 --length 90]

For the config's model (warm-started when cached): a forward + backward over ``rows x length``
random tokens with every core's worth of threads and with one, on the idle machine and beside a
pure-Python process spinning one core, ``--repeats`` times each, alternating. Per run: wall
seconds, the process's CPU time per thread per wall second, and the share of the threads' time
spent waiting for a CPU (``learner.cpu_threads.run_queue_wait``: what ``learner.cpu_threads:
auto`` reads before it tries fewer threads). Writes benchmarks/results/learner_threads_<name>.json.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from results_io import save_result  # benchmarks/ is the script's own directory
from tiny_batch import ROOT  # also puts the repository on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny_cpu.yaml")
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--length", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--name", default="tiny")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from learner.cpu_threads import run_queue_wait
    from models.sources import resolve_model_path
    from orchestrator.config_io import load_config

    config = load_config([str(ROOT / args.config)], [])
    model_path = resolve_model_path(config, log=lambda *a, **k: None)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    torch.manual_seed(0)
    input_ids = torch.randint(0, model.config.vocab_size, (args.rows, args.length))
    cores = os.cpu_count() or 1

    def update(threads: int) -> dict:
        torch.set_num_threads(threads)
        model.zero_grad(set_to_none=True)
        wall, cpu, waited = time.perf_counter(), time.process_time(), run_queue_wait()
        model(input_ids=input_ids).logits.float().log_softmax(-1).mean().backward()
        wall = time.perf_counter() - wall
        waiting = None if waited is None else (run_queue_wait() - waited) / (wall * threads)
        cpu_share = (time.process_time() - cpu) / (wall * threads)
        return {"wall_s": round(wall, 3), "cpu_share": round(cpu_share, 3), "waiting": waiting and round(waiting, 4)}

    update(cores)  # warm-up: allocation, first-call kernels
    runs: dict[str, list[dict]] = {}
    for load in ("idle", "burner"):
        burner = subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"]) if load == "burner" else None
        try:
            time.sleep(0.5)
            for _ in range(args.repeats):
                for threads in sorted({cores, 1}, reverse=True):
                    runs.setdefault(f"{load}, {threads} threads", []).append(update(threads))
        finally:
            if burner:
                burner.kill()
                burner.wait(timeout=30)
    result = {
        "config": args.config,
        "model": str(model_path),
        "tokens": args.rows * args.length,
        "cores": cores,
        "runs": runs,
    }
    print(json.dumps(result, indent=2))
    print(f"wrote {save_result(f'learner_threads_{args.name}', result)}")


if __name__ == "__main__":
    main()
