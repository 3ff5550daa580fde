"""Time the synthetic geometry generator for 10,000 train + 500 test problems.

    .venv/bin/python benchmarks/synthetic_data.py

Prints the numbers and writes benchmarks/results/synthetic_data.json.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prompts.synthetic import generate  # noqa: E402
from rewards.verify import score  # noqa: E402


def main() -> None:
    started = time.perf_counter()
    train, test = generate(10_000, 500, seed=0)
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    verified = sum(score(p.solution, p.answer).correct for p in train + test)
    verify_s = time.perf_counter() - started
    report = {
        "train": len(train),
        "test": len(test),
        "generate_s": round(generate_s, 3),
        "gold_solutions_correct": verified,
        "verify_s": round(verify_s, 2),
        "families": dict(Counter(p.meta["family"] for p in train).most_common()),
        "levels": dict(sorted(Counter(p.meta["level"] for p in train).items())),
    }
    out = save_result("synthetic_data", report)
    print(
        f"generated {len(train)} train + {len(test)} test in {generate_s:.2f} s; "
        f"{verified}/{len(train) + len(test)} gold solutions score correct ({verify_s:.1f} s in-process)"
    )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
