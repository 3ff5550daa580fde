"""Does an interleaved comparison survive a noisy machine? The demo compare, idle and beside a burner.

    .venv/bin/python benchmarks/compare_under_load.py [--config configs/compare_tiny_cpu.yaml] [overrides...]

Runs `bppo compare` twice with the same config: once on the idle machine, once while a second
process spins one core flat out (the kind of neighbour a shared machine has). The arms take their
training steps in turn (compare.schedule: interleaved), so the burner slows both arms alike and
the *ratios* -- BPPO's step and learner-phase speedups over GRPO -- should move little even
though every absolute time grows. (Interleaving spreads a slow spell over both arms; a neighbour
that stays would still slow the learner's OpenMP regions far more than generation, were it not
for learner.cpu_threads: auto, which drops the learner to the threads the free cores can carry.) Writes benchmarks/results/compare_under_load.json: both
runs' speedups, their step times, and the relative change of each speedup (the claim: within 15%).
Run it on an otherwise idle machine; it takes about twice the demo's time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
BURN = "while True:\n    pass\n"  # one core, pure Python: no OpenMP, no sleeping


def _compare(config: str, run_dir: Path, overrides: list[str]) -> dict:
    bppo = Path(sys.executable).parent / "bppo"
    command = [str(bppo), "compare", "--config", config, f"trainer.run_dir={run_dir}", *overrides]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, timeout=3600)
    return _read(run_dir, " ".join(command[1:]), wall_s=round(time.perf_counter() - started, 1))


def _read(run_dir: Path, command: str, *, wall_s: float | None) -> dict:
    report = json.loads((ROOT / run_dir / "report.json").read_text())
    return {
        "command": command,
        "wall_s": wall_s,
        "speedup": report["speedup"],
        "grpo_step_s": report["grpo"]["mean_step_time_s"],
        "bppo_step_s": report["bppo"]["mean_step_time_s"],
        "grpo_learner_s": report["grpo"]["mean_learner_time_s"],
        "bppo_learner_s": report["bppo"]["mean_learner_time_s"],
        "steps": {algo: [seed["steps"] for seed in report[algo]["per_seed"].values()] for algo in ("grpo", "bppo")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/compare_tiny_cpu.yaml")
    parser.add_argument("--run-dir", default="runs/compare_under_load")
    parser.add_argument(
        "--reuse-idle",
        action="store_true",
        help="take the idle run already in <run-dir>/idle (same session, same code paths) instead of running it",
    )
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    root = Path(args.run_dir)
    result = {"config": args.config, "overrides": args.overrides, "reused_idle": args.reuse_idle}
    if args.reuse_idle:
        result["idle"] = _read(root / "idle", "(reused)", wall_s=None)
    else:
        result["idle"] = _compare(args.config, root / "idle", args.overrides)
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        result["burner"] = _compare(args.config, root / "burner", args.overrides)
    finally:
        burner.kill()
        burner.wait(timeout=30)
    result["relative_change"] = {
        name: (result["burner"]["speedup"][name] / result["idle"]["speedup"][name] - 1)
        if result["idle"]["speedup"].get(name) and result["burner"]["speedup"].get(name)
        else None
        for name in ("step", "learner")
    }
    result["slowdown"] = {
        arm: result["burner"][f"{arm}_step_s"] / result["idle"][f"{arm}_step_s"] for arm in ("grpo", "bppo")
    }
    print(json.dumps(result, indent=2))
    print(f"wrote {save_result('compare_under_load', result)}")


if __name__ == "__main__":
    main()
