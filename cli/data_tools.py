"""``bppo data examples | sample | score | curate``: the offline prompt-data tools, each with a
parser of its own (``bppo data``'s positional overrides leave no room for a sub-command there)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cli.args import add_config_args, number
from orchestrator.config import Config


def cmd_data_sample(args: argparse.Namespace, config: Config) -> int:
    """G completions per prompt, judged -> samples.jsonl + pass_rates.json (per family x level)."""
    from prompts.tools.sample import sample_completions, write_samples
    from rollout.types import SamplingSettings

    problems = _data_split(config, args.split)[: args.problems]
    rollout = config.rollout
    sampling = SamplingSettings(
        n=rollout.n,
        temperature=rollout.temperature,
        top_p=rollout.top_p,
        max_tokens=rollout.max_tokens,
        stop=tuple(rollout.stop),
        seed=config.trainer.seed,
    )
    _set_threads(args)
    started = time.perf_counter()
    rows, summary = sample_completions(
        problems,
        _tool_model(args, config),
        template=config.data.prompt_template,
        chat_template=config.data.chat_template,
        sampling=sampling,
        reward=config.reward,
        max_model_len=rollout.max_model_len,
        seed=config.trainer.seed,
    )
    paths = write_samples(_data_out(args, config), rows, summary)
    overall = summary["all"]
    print(
        f"sampled {len(rows)} completions ({len(problems)} {args.split} problems x {rollout.n}) in "
        f"{time.perf_counter() - started:.1f} s: pass rate {overall['pass_rate']:.3f}, groups with a pair "
        f"{overall['pair_rate']:.3f}, answered {overall['answered_rate']:.3f}, length median "
        f"{overall['length_median']:g} (p90 {overall['length_p90']}) -> {paths[0]} (+ {paths[1].name})"
    )
    return 0


def cmd_data_score(args: argparse.Namespace, config: Config) -> int:
    """MagicVL-2B's complexity score per prompt -> scores.jsonl + scores_summary.json."""
    from prompts.tools.complexity import ScoreWeights
    from prompts.tools.model_stats import check_model_dir, default_device
    from prompts.tools.scores import ScoreSettings, score_problems, write_scores

    if (args.small_model is None) != (args.large_model is None):
        print("error: --small-model and --large-model go together (the task term compares the two)", file=sys.stderr)
        return 2
    if args.text_weight == 0 and (args.small_model is None or args.task_weight == 0):
        print("error: --text-weight 0 leaves no score (there is no task term to carry it)", file=sys.stderr)
        return 2
    settings = ScoreSettings(
        model=_tool_model(args, config),
        small_model=check_model_dir(args.small_model, "--small-model") if args.small_model else None,
        large_model=check_model_dir(args.large_model, "--large-model") if args.large_model else None,
        beta=args.beta,
        delta=args.delta,
        weights=ScoreWeights(text=args.text_weight, task=args.task_weight),
        batch_tokens=args.batch_tokens,
        device=default_device(),
    )
    problems = _data_split(config, args.split)
    _set_threads(args)
    started = time.perf_counter()
    rows, summary = score_problems(problems, config.data.prompt_template, config.data.chat_template, settings)
    paths = write_scores(_data_out(args, config), rows, summary)
    weights, means = summary["weights"], summary["means"]
    if summary["task_term"]:
        print(
            f"task term: {means['task']:.3f} of the problems need the larger model "
            f"(loss_small > {settings.beta} * loss_large > {settings.delta})"
        )
    else:
        print("task term left out (no --small-model/--large-model): S = S_text, weights renormalised")
    print(
        f"scored {len(rows)} {args.split} problems in {time.perf_counter() - started:.1f} s with "
        f"S = {weights['text']:g} * S_text + {weights['task']:g} * S_task; mean length {means['length']:.1f} "
        f"tokens, TTR {means['ttr']:.3f}, perplexity {means['perplexity']:.3f}, S {means['score']:.3f} "
        f"-> {paths[0]} (+ {paths[1].name})"
    )
    return 0


def cmd_data_curate(args: argparse.Namespace, config: Config) -> int:
    """Ruyi2.5's filters, clustering and max-min selection -> curated.jsonl + curate_report.json."""
    from prompts.tools.curate import CurateSettings, curate, write_curated
    from prompts.tools.model_stats import default_device

    room = config.rollout.max_model_len - config.rollout.max_tokens
    settings = CurateSettings(
        model=_tool_model(args, config),
        size=args.size,
        leaves=args.clusters,
        groups=args.groups,
        seed=args.seed,
        min_prompt_tokens=args.min_prompt_tokens,
        max_prompt_tokens=args.max_prompt_tokens if args.max_prompt_tokens is not None else room,
        near_duplicate_threshold=args.near_dup_threshold,
        drop_easiest=args.drop_easiest,
        batch_tokens=args.batch_tokens,
        device=default_device(),
    )
    problems = _data_split(config, args.split)
    _set_threads(args)
    started = time.perf_counter()
    curated, report = curate(problems, config.data.prompt_template, config.data.chat_template, settings)
    paths = write_curated(_data_out(args, config), curated, report)
    removed = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in report["removed"].items())
    pairwise, nearest = report["mean_pairwise_cosine_distance"], report["mean_nearest_neighbour_cosine_distance"]
    print(
        f"{len(problems)} {args.split} problems: removed {removed}; pool {report['pool']} in "
        f"{report['clusters']['leaves']} clusters / {report['clusters']['groups']} groups"
    )
    print(
        f"curated {len(curated)} in {time.perf_counter() - started:.1f} s; cosine distance, mean pairwise "
        f"{pairwise['curated']:.4f} (a random subset of the same size: {pairwise['random_same_size']:.4f}), "
        f"to the nearest neighbour {nearest['curated']:.4f} ({nearest['random_same_size']:.4f}) "
        f"-> {paths[0]} (+ {paths[1].name})"
    )
    return 0


def cmd_data_examples(args: argparse.Namespace, config: Config) -> int:
    """Small GSM8K, MATH and verl-parquet files from the config's synthetic problems (Geometry3K
    parquet from diagram problems), each with the ``data:`` block that reads it."""
    from prompts.loaders import load_prompt_set
    from prompts.tools.example_files import FORMATS_OF_SOURCE, write_example_files

    formats = FORMATS_OF_SOURCE.get(config.data.source.kind)
    if formats is None:
        print(
            f"error: data.source.kind={config.data.source.kind}: the examples are made from generated problems "
            "(data.source.kind=synthetic, the default: GSM8K, MATH, verl; data.source.kind=diagrams: Geometry3K)",
            file=sys.stderr,
        )
        return 2
    prompt_set = load_prompt_set(config.data)
    out = Path(args.out or Path(config.trainer.run_dir) / "data" / "examples")
    written = write_example_files(
        out, prompt_set.train, prompt_set.test, rows_per_split=(args.train, args.test), formats=formats
    )
    for fmt, (train, test, yaml_path) in written.items():
        print(f"{fmt}: {train}, {test}; read with --config {yaml_path}")
    return 0


def _set_threads(args: argparse.Namespace) -> None:
    """``--threads``; without it, a hint when the CPU is already busy. Torch's threads wait for
    each other at every op, so one preempted thread stalls them all: with a training sweep
    running beside it, the tiny model's forward pass ran at 13,900 tokens/s on 1 thread and
    4,500 on 2 (alternated in one sitting)."""
    import os

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
        return
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    if not torch.cuda.is_available() and torch.get_num_threads() > 1 and load >= cores:
        print(
            f"note: the CPU is busy (load average {load:.1f} on {cores} cores): --threads 1 may be several "
            "times faster",
            file=sys.stderr,
        )


def _data_split(config: Config, split: str) -> list:
    from prompts.loaders import load_prompt_set

    return getattr(load_prompt_set(config.data), split)


def _data_out(args: argparse.Namespace, config: Config) -> Path:
    return Path(args.out or Path(config.trainer.run_dir) / "data")


def _tool_model(args: argparse.Namespace, config: Config) -> str:
    """``--model``, checked, or the policy."""
    from prompts.tools.model_stats import check_model_dir

    return check_model_dir(args.model, "--model") if args.model else _policy_path(config)


def _policy_path(config: Config) -> str:
    """The policy's directory: model.path, or the (cached) warm-started tiny model."""
    from models.sources import resolve_model_path

    path = resolve_model_path(config)
    print(f"model: {path} (the policy; --model for another)", file=sys.stderr)
    return path


DATA_TOOLS = {
    "examples": (
        cmd_data_examples,
        "small prompt files in GSM8K (jsonl), MATH (jsonl) and verl (parquet) form from the synthetic problems, "
        "each with the data: YAML that reads it -> <out>/<format>/{train,test}.*, <out>/<format>.yaml",
    ),
    "sample": (
        cmd_data_sample,
        "G completions per prompt from the policy (vLLM, the run's sampling and template), judged by the "
        "verifier -> samples.jsonl + pass_rates.json (pass rate, BPPO pair rate, lengths per family x level)",
    ),
    "score": (
        cmd_data_score,
        "MagicVL-2B's complexity score of every prompt (length, TTR, perplexity, "
        "small/large-model task term) -> scores.jsonl + scores_summary.json",
    ),
    "curate": (
        cmd_data_curate,
        "Ruyi2.5's pipeline: length/duplicate/easy-prompt filters, clustering, greedy "
        "max-min selection -> curated.jsonl + curate_report.json",
    ),
}


def build_data_tool_parser(tool: str) -> argparse.ArgumentParser:
    """The parser of ``bppo data score`` / ``bppo data curate`` (reached through ``main``)."""
    from prompts.tools.scores import DEFAULT_BETA, DEFAULT_DELTA

    _, help_text = DATA_TOOLS[tool]
    parser = argparse.ArgumentParser(prog=f"bppo data {tool}", description=help_text)
    add_config_args(parser)
    if tool == "examples":
        parser.add_argument("--out", help="output directory (default: trainer.run_dir/data/examples)")
        parser.add_argument(
            "--train", type=number(int, minimum=1), default=48, metavar="N", help="rows per train file (default: 48)"
        )
        parser.add_argument(
            "--test", type=number(int, minimum=1), default=16, metavar="N", help="rows per test file (default: 16)"
        )
        return parser
    parser.add_argument("--split", choices=["train", "test"], default="train", help="which split (default: train)")
    parser.add_argument("--out", help="output directory (default: trainer.run_dir/data)")
    parser.add_argument(
        "--model",
        metavar="PATH",
        help="a local Hugging Face causal LM directory (default: the "
        "policy, i.e. model.path or the warm-started tiny model)",
    )
    if tool != "sample":  # sampling batches by the engine's own budget
        parser.add_argument(
            "--batch-tokens",
            type=number(int, minimum=1),
            default=8192,
            metavar="N",
            help="rows x longest row per forward pass (default: 8192)",
        )
    parser.add_argument(
        "--threads",
        type=number(int, minimum=1),
        metavar="N",
        help="torch CPU threads (default: one per core); on a CPU other work keeps busy, 1 can "
        "be several times faster, since the threads no longer wait for each other",
    )
    if tool == "sample":
        parser.add_argument(
            "--problems",
            type=number(int, minimum=1),
            default=64,
            metavar="N",
            help="the first N problems of the split (default: 64); rollout.n completions each",
        )
    if tool == "score":
        parser.add_argument("--small-model", metavar="PATH", help="M_s of the task term (with --large-model)")
        parser.add_argument("--large-model", metavar="PATH", help="M_l of the task term (with --small-model)")
        parser.add_argument(
            "--beta",
            type=number(float, above=0),
            default=DEFAULT_BETA,
            metavar="B",
            help=f"task term: loss_small > beta * loss_large > delta (default: {DEFAULT_BETA})",
        )
        parser.add_argument(
            "--delta",
            type=number(float, minimum=0),
            default=DEFAULT_DELTA,
            metavar="D",
            help=f"task term: floor on beta * loss_large, nats/token (default: {DEFAULT_DELTA})",
        )
        parser.add_argument(
            "--text-weight",
            type=number(float, minimum=0),
            default=0.5,
            metavar="W",
            help="lambda_text of S (default: 0.5)",
        )
        parser.add_argument(
            "--task-weight",
            type=number(float, minimum=0),
            default=0.5,
            metavar="W",
            help="lambda_task of S (default: 0.5; without a task term S = S_text)",
        )
    elif tool == "curate":
        parser.add_argument(
            "--size", type=number(int, minimum=1), required=True, metavar="N", help="target number of curated problems"
        )
        parser.add_argument(
            "--clusters",
            type=number(int, minimum=1),
            default=16,
            metavar="K",
            help="k-means leaf clusters (default: 16)",
        )
        parser.add_argument(
            "--groups",
            type=number(int, minimum=1),
            default=4,
            metavar="G",
            help="groups the leaf centroids are merged into, average linkage (default: 4)",
        )
        parser.add_argument(
            "--seed", type=number(int, minimum=0), default=0, metavar="S", help="k-means seed (default: 0)"
        )
        parser.add_argument(
            "--min-prompt-tokens",
            type=number(int, minimum=0),
            default=4,
            metavar="N",
            help="drop shorter prompts (default: 4)",
        )
        parser.add_argument(
            "--max-prompt-tokens",
            type=number(int, minimum=1),
            metavar="N",
            help="drop longer prompts (default: rollout.max_model_len - rollout.max_tokens)",
        )
        parser.add_argument(
            "--near-dup-threshold",
            type=number(float, above=0, maximum=1),
            default=0.8,
            metavar="J",
            help="word-3-gram Jaccard of a near duplicate (default: 0.8)",
        )
        parser.add_argument(
            "--drop-easiest",
            type=number(float, minimum=0, below=1),
            default=0.1,
            metavar="FRACTION",
            help="share of prompts dropped as easiest: lowest perplexity "
            "of the gold response under --model (default: 0.1)",
        )
    return parser
