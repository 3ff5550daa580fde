"""How much generation could a scheduler save on this data? An upper bound from a finished run.

    .venv/bin/python benchmarks/scheduling_headroom.py --run runs/sweep_scheduling/uniform-namebppo-seed0 \
        --scores runs/scores_tiny_cpu/scores.jsonl --field perplexity --pool-by family level --bins 4

A scheduler that decides before generation can only tell prompts apart by what it knows of
them: their pool (``--pool-by`` meta keys) and, with ``--scores``, a quantile bin of a
per-prompt score inside the pool (what ``sched.pool_scores`` does). This script takes the
groups a run generated in the uniform order and asks, per predictor: if a scheduler knew each
bin's shares of useful groups (both a correct and an incorrect answer) exactly, measured on
these same groups (in-sample: optimistic), and generated only for the bins above a threshold,
what share of the prompts would it keep, what share of its groups would be useful, and by how
much would the generated tokens per useful group fall? Generated tokens stand in for
generation seconds (decode time grows with them; the run's own seconds are per step, not per
group). It also gives, per pool, how well the score ranks the all-wrong groups (AUC: 0.5 is
chance) and the expected result of skip's rule (skip with probability zero-variance share x
(1 - min_explore)).

Prints a table and writes benchmarks/results/<--name>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)


def load_groups(run_dir: Path) -> list[dict]:
    """One row per generated group: problem id, correct answers, answers judged, tokens generated."""
    groups = []
    with open(run_dir / "rollouts.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            for problem_id, rewards, lengths in zip(record["problem_ids"], record["rewards"], record["lengths"]):
                judged = [reward for reward in rewards if reward is not None]
                groups.append(
                    {
                        "id": problem_id,
                        "correct": sum(reward >= 1.0 for reward in judged),
                        "judged": len(judged),
                        "tokens": sum(lengths),
                    }
                )
    return groups


def is_useful(group: dict) -> bool:
    return 0 < group["correct"] < group["judged"]


def auc(positives: list[float], negatives: list[float]) -> float | None:
    """P(a positive's score > a negative's), ties counted half; None without both kinds."""
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def headroom(groups: list[dict], bin_of: dict[str, int], min_explore: float) -> dict:
    """The threshold rule's kept share, useful rate and tokens per useful group, per threshold."""
    by_bin = defaultdict(list)
    for group in groups:
        by_bin[bin_of[group["id"]]].append(group)
    useful_share = {b: sum(map(is_useful, members)) / len(members) for b, members in by_bin.items()}
    zero_share = {b: 1.0 - share for b, share in useful_share.items()}
    base_tokens = sum(g["tokens"] for g in groups) / max(1, sum(map(is_useful, groups)))
    rows = []
    for threshold in THRESHOLDS:
        kept = [g for g in groups if useful_share[bin_of[g["id"]]] >= threshold]
        useful = sum(map(is_useful, kept))
        tokens = sum(g["tokens"] for g in kept) / useful if useful else None  # None: no bin that good
        rows.append(
            {
                "threshold": threshold,
                "kept_share": len(kept) / len(groups),
                "useful_rate": useful / len(kept) if kept else None,
                "tokens_per_useful": tokens,
                "cut": base_tokens / tokens if tokens else None,
            }
        )
    # skip's rule in expectation: keep a group with probability 1 - zero_share * (1 - min_explore)
    keep = [1.0 - zero_share[bin_of[g["id"]]] * (1.0 - min_explore) for g in groups]
    kept_useful = sum(k for k, g in zip(keep, groups) if is_useful(g))
    skip_rule = {
        "kept_share": sum(keep) / len(groups),
        "useful_rate": kept_useful / sum(keep),
        "cut": base_tokens / (sum(k * g["tokens"] for k, g in zip(keep, groups)) / kept_useful),
    }
    return {"bins": len(by_bin), "thresholds": rows, "skip_rule": skip_rule}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a run directory (rollouts.jsonl, config.yaml)")
    parser.add_argument("--scores", help="a `bppo data score` scores.jsonl (default: pools only)")
    parser.add_argument("--field", default="score", help="its column (default: score)")
    parser.add_argument("--pool-by", nargs="*", default=["family", "level"], help="meta keys of the pools")
    parser.add_argument("--bins", type=int, default=4, help="quantile bins of the score per pool")
    parser.add_argument("--min-explore", type=float, default=0.05, help="skip's exploration floor")
    parser.add_argument("--name", default="scheduling_headroom", help="result file name")
    args = parser.parse_args()

    from orchestrator.config_io import load_config
    from prompts.loaders import load_prompt_set
    from prompts.scheduling.schedulers import complexity_scores, score_bins
    from prompts.scheduling.stats import pool_indices

    config = load_config([str(args.run / "config.yaml")], [])
    problems = load_prompt_set(config.data).train
    groups = load_groups(args.run)
    pools = pool_indices([p.meta for p in problems], args.pool_by)
    predictors = {"pools": dict(zip((p.id for p in problems), pools))}
    auc_by_pool = {}
    if args.scores:
        scores = complexity_scores(args.scores, problems, field=args.field, key="--scores")
        predictors[f"pools x {args.bins} {args.field} bins"] = dict(
            zip((p.id for p in problems), score_bins(pools, scores, args.bins))
        )
        score_of = {p.id: s for p, s in zip(problems, scores)}
        pool_name = {p.id: ":".join(str(p.meta[k]) for k in args.pool_by) for p in problems}
        members = defaultdict(list)
        for group in groups:
            members[pool_name[group["id"]]].append(group)
        for name, pool_groups in sorted(members.items()):
            value = auc(
                [score_of[g["id"]] for g in pool_groups if g["correct"] == 0],
                [score_of[g["id"]] for g in pool_groups if g["correct"] > 0],
            )
            auc_by_pool[name] = {"groups": len(pool_groups), "auc_all_wrong": value}

    useful = sum(map(is_useful, groups))
    # the ceiling: foresight of every group's outcome, generating only the useful ones
    foresight_tokens = sum(g["tokens"] for g in groups if is_useful(g)) / useful
    result = {
        "run": str(args.run),
        "groups": len(groups),
        "useful_rate": useful / len(groups),
        "all_wrong_rate": sum(g["correct"] == 0 for g in groups) / len(groups),
        "all_correct_rate": sum(g["correct"] == g["judged"] for g in groups) / len(groups),
        "tokens_per_useful": sum(g["tokens"] for g in groups) / useful,
        "foresight_cut": sum(g["tokens"] for g in groups) / useful / foresight_tokens,
        "auc_by_pool": auc_by_pool,
        "predictors": {name: headroom(groups, bin_of, args.min_explore) for name, bin_of in predictors.items()},
    }

    print(
        f"{args.run}: {len(groups)} groups, useful {result['useful_rate']:.3f}, all wrong "
        f"{result['all_wrong_rate']:.3f}, all correct {result['all_correct_rate']:.3f}, "
        f"{result['tokens_per_useful']:.0f} generated tokens per useful group; foresight of every group's "
        f"outcome would cut that {result['foresight_cut']:.2f}x"
    )
    for name, value in auc_by_pool.items():
        shown = "n/a" if value["auc_all_wrong"] is None else f"{value['auc_all_wrong']:.2f}"
        print(f"  {name}: {value['groups']} groups, AUC of {args.field} for all-wrong {shown}")
    for name, found in result["predictors"].items():
        print(f"predictor {name} ({found['bins']} bins seen; in-sample, so an upper bound):")
        print("  keep bins with useful share >= | kept | useful rate | tokens / useful | cut")
        for row in found["thresholds"]:
            if row["tokens_per_useful"] is None:
                print(f"  {row['threshold']:.1f} | 0.00 | no bin that good")
                continue
            print(
                f"  {row['threshold']:.1f} | {row['kept_share']:.2f} | {row['useful_rate']:.3f} | "
                f"{row['tokens_per_useful']:.0f} | {row['cut']:.2f}x"
            )
        rule = found["skip_rule"]
        print(
            f"  skip's rule at min_explore {args.min_explore}: kept {rule['kept_share']:.2f}, useful rate "
            f"{rule['useful_rate']:.3f}, cut {rule['cut']:.2f}x"
        )
    print(f"-> {save_result(args.name, result)}")


if __name__ == "__main__":
    main()
