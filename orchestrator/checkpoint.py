"""Atomic checkpoints: written to ``step_N.tmp``, renamed to ``step_N`` only when complete.

A checkpoint holds the DeepSpeed learner state (weights, optimizer, LR schedule, each
rank's RNG) under ``learner/``, the trainer's own state (step, policy version, wandb run id,
training seconds) in ``trainer_state.json`` and the prompt scheduler's (its order's position,
every prompt's pass rate per visit) in ``scheduler_state.json``; in async mode the batch
already generated for the next step in ``rollout_ahead.json``. A directory
without the ``.tmp`` suffix is complete by construction; a crash mid-write leaves only a
``.tmp`` that the next save or resume ignores.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

STATE_FILE = "trainer_state.json"
SCHEDULER_FILE = "scheduler_state.json"
AHEAD_FILE = "rollout_ahead.json"


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save_checkpoint(
    run_dir: Path,
    step: int,
    learner,
    trainer_state: dict,
    *,
    keep: int,
    scheduler_state: dict | None = None,
    rollout_ahead: dict | None = None,
) -> Path:
    final = checkpoints_dir(run_dir) / f"step_{step:06d}"
    staging = final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    learner.save_checkpoint(str(staging / "learner"), {"step": step})
    (staging / STATE_FILE).write_text(json.dumps(trainer_state, indent=1))
    if scheduler_state is not None:  # one line: a pass rate per visit of every prompt
        (staging / SCHEDULER_FILE).write_text(json.dumps(scheduler_state))
    if rollout_ahead is not None:  # async: the next step's batch, generated while this one trained
        (staging / AHEAD_FILE).write_text(json.dumps(rollout_ahead))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    for old in complete_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith("step_") and not p.name.endswith(".tmp") and (p / STATE_FILE).exists()
    ]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step_")))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def load_trainer_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


def load_rollout_ahead(checkpoint: Path) -> dict | None:
    """The batch an async run generated for the step after the checkpoint; None when there is
    none (a sync run, or an async run saved with no batch in flight)."""
    path = checkpoint / AHEAD_FILE
    return json.loads(path.read_text()) if path.exists() else None


def load_scheduler_state(checkpoint: Path) -> dict | None:
    """None for a checkpoint written before the scheduler existed (its trainer state holds the
    uniform order's position under ``stream``)."""
    path = checkpoint / SCHEDULER_FILE
    return json.loads(path.read_text()) if path.exists() else None


# What a training run leaves in its run_dir (config.yaml and worker.log are rewritten by any run)
RUN_OUTPUTS = ("metrics.jsonl", "evals.jsonl", "rollouts.jsonl", "checkpoints", "final")


def previous_run(run_dir: Path) -> list[str]:
    """The outputs of an earlier run in ``run_dir`` (empty: unused), so that a new run started
    there without --resume can refuse instead of silently replacing them."""
    return [
        name
        for name in RUN_OUTPUTS
        if (run_dir / name).is_file() or ((run_dir / name).is_dir() and any((run_dir / name).iterdir()))
    ]


def clear_previous_run(run_dir: Path) -> None:
    """--overwrite: remove an earlier run's outputs, so that the directory holds one run."""
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# What a checkpoint assumes: resuming with another value would load state into a different
# model, algorithm, sharding or prompt set (the prompt order's position indexes the data)
RESUME_FIXED = (
    "model.path",
    "algo.name",
    "learner.world_size",
    "learner.zero_stage",
    "data.source",
    "data.prompt_template",
    "data.chat_template",
    "trainer.seed",
    "trainer.mode",  # an async checkpoint holds the batch generated ahead, which sync would drop
)


def resume_conflicts(saved: dict, current: dict) -> list[str]:
    """``key: saved -> current`` for each key in ``RESUME_FIXED`` the two resolved configs
    (``config.model_dump(mode="json")``) disagree on."""

    def get(config: dict, key: str):
        for part in key.split("."):
            config = config.get(part) if isinstance(config, dict) else None
        return config

    return [
        f"{key}: {get(saved, key)!r} -> {get(current, key)!r}"
        for key in RESUME_FIXED
        if get(saved, key) != get(current, key)
    ]
