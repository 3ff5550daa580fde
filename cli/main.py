"""``bppo``: the command line. Every command takes ``--config FILE`` (repeatable, merged in
order) and dotted overrides (``rollout.n=8 algo.prefix.tokens=64``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from cli.args import add_config_args
from cli.data_tools import DATA_TOOLS, build_data_tool_parser
from orchestrator import console
from orchestrator.checkpoint import clear_previous_run, previous_run, resume_conflicts
from orchestrator.config import Config
from orchestrator.config_io import ConfigError, load_config, write_resolved_config
from orchestrator.ray_job import job_run_dir_problem


def cmd_config(args: argparse.Namespace, config: Config) -> int:
    """Validate and print the resolved config (optionally write it to a run directory)."""
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    if args.write:
        print(f"# written to {write_resolved_config(config, config.trainer.run_dir)}", file=sys.stderr)
    return 0


def cmd_data(args: argparse.Namespace, config: Config) -> int:
    """Load the prompt set, write it as JSONL, and verify every gold answer with the reward pool."""
    from dataclasses import asdict

    from prompts.loaders import load_prompt_set

    started = time.perf_counter()
    prompt_set = load_prompt_set(config.data)
    loaded_s = time.perf_counter() - started
    out = Path(args.out or Path(config.trainer.run_dir) / "data")
    out.mkdir(parents=True, exist_ok=True)
    for name, problems in (("train", prompt_set.train), ("test", prompt_set.test)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for problem in problems:
                # an image file's bytes are written as their size (the JSONL is for reading)
                f.write(json.dumps(asdict(problem), default=_bytes_summary) + "\n")
    print(
        f"{len(prompt_set.train)} train / {len(prompt_set.test)} test problems in {loaded_s:.1f} s "
        f"({prompt_set.skipped_rows} rows skipped) -> {out}/"
    )
    if args.verify:
        _verify_gold_answers(config, prompt_set.train[: args.verify] + prompt_set.test)
    return 0


def _bytes_summary(value):
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _verify_gold_answers(config: Config, problems: list) -> None:
    """Score each problem's worked solution (or its bare answer) with the Ray reward pool."""
    from orchestrator.ray_cluster import ray_cluster
    from rewards.pool import RewardPool

    completions = [p.solution or f"\\boxed{{{p.answer}}}" for p in problems]
    with ray_cluster(config.ray):
        pool = RewardPool(config.reward)
        started = time.perf_counter()
        results, metrics = pool.score(completions, [p.answer for p in problems])
        elapsed = time.perf_counter() - started
        pool.shutdown()
    wrong = [(p.id, p.answer, r.reason) for p, r in zip(problems, results) if not r.correct]
    print(
        f"reward pool ({config.reward.num_workers} workers): {len(problems)} gold solutions in {elapsed:.1f} s, "
        f"accuracy {metrics['reward/accuracy']:.4f}"
    )
    for row in wrong[:10]:
        print(f"  not verified: {row}")


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    """Run the RL loop; ``--resume`` continues from the run directory's latest checkpoint."""
    from orchestrator.loop import Trainer
    from orchestrator.placement import PlacementError

    resume = bool(args.resume) or config.trainer.resume == "auto"
    saved = Path(config.trainer.run_dir) / "config.yaml"
    if resume and saved.is_file():
        conflicts = resume_conflicts(load_config([str(saved)]).model_dump(mode="json"), config.model_dump(mode="json"))
        if conflicts:
            print(
                f"error: --resume with settings the checkpoint in {config.trainer.run_dir} does not fit: "
                + "; ".join(conflicts),
                file=sys.stderr,
            )
            return 2
    used = previous_run(Path(config.trainer.run_dir))
    if used and not resume:
        if not args.overwrite:
            print(
                f"error: trainer.run_dir={config.trainer.run_dir} already holds a run ({', '.join(used)}): "
                "--resume continues it, --overwrite replaces it, or choose another trainer.run_dir",
                file=sys.stderr,
            )
            return 2
        clear_previous_run(Path(config.trainer.run_dir))
    try:
        Trainer(config, resume=True if args.resume else None).run()
    except PlacementError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    """A checkpoint (ZeRO-3 included) as a Hugging Face model directory."""
    from models.export import export_checkpoint
    from models.sources import resolve_model_path

    checkpoint = Path(args.checkpoint)
    run_config = checkpoint.parent.parent / "config.yaml"
    if not args.config:  # the run's own config says which model it trained
        if not run_config.is_file():
            print(f"error: {run_config} not found: give the run's --config", file=sys.stderr)
            return 2
        config = load_config([str(run_config)], args.overrides)
    out = Path(args.out) if args.out else checkpoint / "hf"
    written = export_checkpoint(checkpoint, out, resolve_model_path(config))
    print(f"exported {checkpoint} -> {written}/ (Hugging Face format: from_pretrained, or model.path of a run)")
    return 0


def cmd_bootstrap(args: argparse.Namespace, config: Config) -> int:
    """Build and warm-start the tiny model or a packaged model (cached); print its directory."""
    from models.cache import BUILT
    from models.packaged import PACKAGED_MODELS, is_packaged
    from models.sources import resolve_model_path

    if config.model.path not in BUILT and not is_packaged(config.model.path):
        print(
            f"error: model.path={config.model.path!r}: bootstrap warm-starts the models the project builds "
            f"(model.path={' or '.join(BUILT)}) or a packaged one ({', '.join(PACKAGED_MODELS)})",
            file=sys.stderr,
        )
        return 2
    print(resolve_model_path(config))
    return 0


def cmd_compare(args: argparse.Namespace, config: Config) -> int:
    """GRPO vs BPPO under identical settings; writes report.md/json and figures to trainer.run_dir."""
    from experiments.compare import run_compare

    command = " ".join(["bppo compare", *(f"--config {c}" for c in args.config), *args.overrides])
    run_compare(args.config, args.overrides, command=command, report_only=args.report_only)
    return 0


def cmd_sweep(args: argparse.Namespace, config: Config) -> int:
    """Arms x grid, one Ray task per trial; writes sweep.md/json to trainer.run_dir."""
    from experiments.sweep import run_sweep

    command = " ".join(["bppo sweep", *(f"--config {c}" for c in args.config), *args.overrides])
    run_sweep(args.config, args.overrides, command=command)
    return 0


COMMANDS = {
    "config": (cmd_config, "validate a config and print it resolved"),
    "bootstrap": (cmd_bootstrap, "build the tiny model and warm-start it by SFT (cached by config hash)"),
    "train": (cmd_train, "run BPPO or GRPO training (Ray + vLLM + DeepSpeed)"),
    "compare": (cmd_compare, "run GRPO and BPPO with identical settings and write the speedup report"),
    "sweep": (cmd_sweep, "run a grid of trials (algorithm arms x settings) and tabulate speedups"),
    "export": (cmd_export, "write a training checkpoint (any ZeRO stage) as a Hugging Face model"),
    "data": (
        cmd_data,
        "build the prompt set, write it as JSONL, check gold answers with the reward pool; "
        "`bppo data examples`: small GSM8K / MATH / verl files; `bppo data sample`: the policy's pass rates; "
        "`bppo data score` / `bppo data curate`: complexity scores, a curated subset",
    ),
}


# Commands whose output goes under trainer.run_dir (checked before a Ray job writes it into a
# temporary directory).
WRITES_RUN_DIR = ("train", "compare", "sweep", "data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bppo", description="BPPO / GRPO post-training on Ray + vLLM + DeepSpeed.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_config_args(command)
        if name == "config":
            command.add_argument("--write", action="store_true", help="also write trainer.run_dir/config.yaml")
        if name == "train":
            command.add_argument(
                "--resume", action="store_true", help="continue from the latest complete checkpoint in trainer.run_dir"
            )
            command.add_argument(
                "--overwrite",
                action="store_true",
                help="replace the run already in trainer.run_dir (its metrics, rollouts, checkpoints, final model); "
                "without it (or --resume) a used run_dir is refused and nothing is deleted",
            )
        if name == "compare":
            command.add_argument(
                "--report-only",
                action="store_true",
                help="write the report from the runs already in trainer.run_dir, without training",
            )
        if name == "export":
            command.add_argument(
                "--checkpoint", required=True, metavar="DIR", help="a checkpoint: <run_dir>/checkpoints/step_N"
            )
            command.add_argument("--out", metavar="DIR", help="where the model goes (default: <checkpoint>/hf)")
        if name == "data":
            command.add_argument("--out", help="output directory (default: trainer.run_dir/data)")
            command.add_argument(
                "--verify",
                type=int,
                default=0,
                metavar="N",
                help="score the gold solutions of N train problems and the whole test split",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `bppo data score|curate ...` have parsers of their own: `data`'s positional overrides
    # (KEY=VALUE) leave no room for a sub-command there, and no override is a bare word.
    # Intermixed: their overrides may come after the flags too.
    tool = argv[1] if len(argv) > 1 and argv[0] == "data" and argv[1] in DATA_TOOLS else None
    args = build_data_tool_parser(tool).parse_intermixed_args(argv[2:]) if tool else build_parser().parse_args(argv)
    console.set_verbose(args.verbose)
    try:
        config = load_config(args.config, args.overrides)
        if not tool and args.command in WRITES_RUN_DIR and (problem := job_run_dir_problem(config.trainer.run_dir)):
            raise ConfigError(problem)
        handler, _ = DATA_TOOLS[tool] if tool else COMMANDS[args.command]
        return handler(args, config)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # data errors name their file, row and column
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
