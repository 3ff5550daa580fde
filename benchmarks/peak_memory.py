"""Wall time and peak memory of a command and everything it starts (Ray workers included).

    .venv/bin/python benchmarks/peak_memory.py --name demo -- make demo

Samples the summed RSS of the command's whole process tree every 0.25 s (a local Ray
cluster, its raylet and every actor are descendants of the driver), prints the peak and
writes benchmarks/results/peak_memory_<name>.json.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import psutil
from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent


def tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT)
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        peak = max(peak, tree_rss(root))
        time.sleep(0.25)
    result = {
        "command": " ".join(command),
        "returncode": process.returncode,
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_rss_gb": round(peak / 2**30, 2),
    }
    out = save_result(f"peak_memory_{args.name}", result)
    print(
        f"{result['command']}: exit {process.returncode}, {result['wall_s']} s, peak RSS {result['peak_rss_gb']} GB -> {out}"
    )


if __name__ == "__main__":
    main()
