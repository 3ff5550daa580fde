"""Time ``bppo data score`` and ``bppo data curate`` on 10,000 synthetic prompts.

    .venv/bin/python benchmarks/data_tools.py [--problems 10000] [--size 2000]

Models: the warm-started tiny model of configs/tiny_cpu.yaml (it must be cached: run
``bppo bootstrap --config configs/tiny_cpu.yaml`` first) is the policy, the perplexity model
and the large model; the small model is a copy of it with only its first 2 of 4 blocks.
That pair costs nothing to make and is a genuinely weaker model of the same family and
tokenizer, so the task term's passes are timed at their real cost; what it says about the
prompts is not meaningful (a model cut in half without retraining is worse everywhere, not
specifically on harder prompts). Give two trained models of different sizes for that.

The prompts are all 13 synthetic families (tiny_cpu.yaml's mix has too few distinct
questions for 10,000). Each command runs once per thread setting (``--threads``: 1, then
torch's default of one per core), in this process, through ``cli.main.main`` (the data tools: ``cli.data_tools``) as on the
command line; its time includes loading the prompt set and the models. Prints and writes
benchmarks/results/data_tools.json, with the load average, since other work on the machine
changes these times several-fold.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = str(ROOT / "configs" / "tiny_cpu.yaml")


def timed(argv: list[str]) -> tuple[float, str]:
    """(seconds, stdout) of one ``bppo`` command run in this process."""
    from cli.main import main

    stdout = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        code = main(argv)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"bppo {' '.join(argv)} exited with {code}")
    print(stdout.getvalue(), end="")
    return seconds, stdout.getvalue()


def _load_average() -> list[float]:
    """1, 5 and 15-minute load averages: other work changes these timings several-fold."""
    return [round(v, 2) for v in os.getloadavg()]


def main() -> None:
    import torch

    from models.sources import warm_model_dir
    from orchestrator.config_io import load_config
    from prompts.tools.model_stats import first_blocks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=2_000, help="bppo data curate --size")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 0],
        help="torch threads per run, 0 = the default (one per core); each setting runs both commands",
    )
    options = parser.parse_args()
    policy = warm_model_dir(load_config([CONFIG], []))
    if not (policy / "bootstrap.json").exists():
        raise SystemExit(f"{policy} is not built: run `bppo bootstrap --config {CONFIG}` first")
    overrides = ["data.source.mix=[]", f"data.source.num_train={options.problems}", "data.source.test_buckets=20"]
    default_threads, runs, load_before = torch.get_num_threads(), [], _load_average()
    with tempfile.TemporaryDirectory() as scratch:
        small = first_blocks(str(policy), 2, Path(scratch) / "small")
        commands = {
            "score": [
                "data",
                "score",
                "--config",
                CONFIG,
                *overrides,
                "--model",
                str(policy),
                "--small-model",
                small,
                "--large-model",
                str(policy),
            ],
            "curate": [
                "data",
                "curate",
                "--config",
                CONFIG,
                *overrides,
                "--model",
                str(policy),
                "--size",
                str(options.size),
            ],
        }
        shown = {str(policy): "POLICY", small: "SMALL", CONFIG: "configs/tiny_cpu.yaml"}  # not temp/cache paths
        for argv in commands.values():  # thread settings alternate within a command: same conditions
            for threads in options.threads:
                flags = ["--threads", str(threads)] if threads else []
                torch.set_num_threads(default_threads)
                seconds, _ = timed([*argv, *flags, "--out", str(Path(scratch) / f"out{threads}")])
                runs.append(
                    {
                        "command": "bppo " + " ".join(shown.get(a, a) for a in [*argv, *flags]),
                        "threads": threads or default_threads,
                        "seconds": round(seconds, 1),
                        "load_average": _load_average(),
                    }
                )
        outs = [Path(scratch) / f"out{threads}" for threads in options.threads]
        summary = json.loads((outs[0] / "scores_summary.json").read_text())
        report = json.loads((outs[0] / "curate_report.json").read_text())
        identical = {
            name: len({(out / name).read_bytes() for out in outs}) == 1
            for name in ("scores.jsonl", "scores_summary.json", "curated.jsonl", "curate_report.json")
        }
    result = {
        "problems": options.problems,
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "policy": str(policy),
        "small_model": "SMALL: the policy's first 2 of 4 blocks",
        "runs": runs,
        "outputs_identical_across_thread_settings": identical,
        "score": {"forward_passes": 2, "means": summary["means"]},
        "curate": {
            "removed": report["removed"],
            "pool": report["pool"],
            "selected": report["selected"],
            "mean_pairwise_cosine_distance": report["mean_pairwise_cosine_distance"],
            "mean_nearest_neighbour_cosine_distance": report["mean_nearest_neighbour_cosine_distance"],
        },
    }
    path = save_result("data_tools", result)
    for run in runs:
        print(f"{run['seconds']:7.1f} s  {run['threads']} thread(s)  {run['command']}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
