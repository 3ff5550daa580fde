"""The end-to-end runs several test modules read (made once per session, on the real stack): see
``e2e_runs``. The reward is a stand-in (even character count) so that a randomly initialised model
already has correct and incorrect samples in every group."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.config_io import load_config

ROOT = Path(__file__).resolve().parents[1]
PRESET = str(ROOT / "configs" / "tiny_cpu.yaml")


def overrides(run_dir: Path, model: str, **extra) -> list[str]:
    settings = {
        "model.path": model,
        "trainer.run_dir": str(run_dir),
        "reward.function": "tests.custom_reward:even_length_reward",
        "data.source.num_train": 400,
        "data.source.num_test": 40,
        "trainer.prompts_per_step": 8,
        "trainer.parity_every": 1,
        "eval.every": 2,
        "trainer.save_every": 2,
        "rollout.num_engines": 2,
        "learner.world_size": 2,
        "learner.zero_stage": 3,
        # a fixed thread count: the resume tests compare a killed-and-resumed run with the
        # uninterrupted one sample for sample, and a count tuned by timing (the default) could
        # differ between them at an update and split a reduction differently
        "learner.cpu_threads": os.cpu_count() or 1,
        **extra,
    }
    return [f"{k}={v}" for k, v in settings.items()]


def records(run_dir: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def _train(run_dir: Path, model: str, kill_engine_at: int | None = None, **extra) -> list[dict]:
    from orchestrator.loop import Trainer

    class EngineKilled(Trainer):
        """Kills engine 1 before step ``kill_engine_at`` and waits until Ray has restarted it:
        the step's first call then reaches a fresh engine holding the initial weights."""

        def train_step(self, step: int):
            if step == kill_engine_at:
                import ray

                engine, before = self.fleet.engines[1], ray.get(self.fleet.engines[1].identity.remote())
                ray.kill(engine, no_restart=False)
                while _identity_or_none(engine) in (None, before):
                    time.sleep(0.5)
            return super().train_step(step)

    EngineKilled(load_config([PRESET], overrides(run_dir, model, **extra))).run()
    return records(run_dir)


def _identity_or_none(engine):
    import ray

    try:
        return ray.get(engine.identity.remote(), timeout=120)
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
        return None


# The BPPO run and the killed one draw prompts with the target scheduler: equal prompts after the
# resume then also show its statistics came back exactly from the checkpoint.
TARGET_SCHED = {"sched.kind": "target", "sched.pool_by": "[family,level]", "sched.cooldown_steps": 4}


@pytest.fixture(scope="session")
def e2e_runs(ray_local, tiny_model, tmp_path_factory):
    """BPPO (4 steps, an engine killed before step 3) and GRPO (3 steps, 2 mini-batches x 2 epochs)
    as `bppo compare` names its arms (`<algo>-seed0`), so the compare test reports on them; and BPPO
    with early-stopped groups."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "bppo": _train(root / "bppo-seed0", tiny_model, kill_engine_at=3, **{"trainer.steps": 4, **TARGET_SCHED}),
        # verl-style: 2 mini-batches of 4 groups, 2 epochs = 4 optimizer steps per batch, at an LR
        # that moves the tiny policy past the clip range within them
        "grpo": _train(
            root / "grpo-seed0",
            tiny_model,
            **{
                "trainer.steps": 3,
                "algo.name": "grpo",
                "learner.mini_batch_size": 4,
                "learner.epochs": 2,
                "learner.lr": 3e-3,
                "eval.pass_k": 4,
            },
        ),
        # stop strings on digits: a random model's completions then end at varied lengths;
        # oversampling: 12 prompts in one call for 8 groups with a pair
        "bppo_early_stop": _train(
            root / "bppo_early_stop",
            tiny_model,
            **{
                "trainer.steps": 2,
                "rollout.early_stop_groups": True,
                "rollout.stop": ["0", "1", "2", "3", "4"],
                "trainer.gen_prompts_per_step": 12,
            },
        ),
        "root": root,
    }


def train_until_killed(run_dir: Path, settings: list[str], *, checkpoint_step: int, timeout_s: float = 400):
    """``bppo train`` in a child process (its own wandb service, as a fresh launch has), SIGKILLed
    with its whole process group (driver, Ray cluster, engines, learner) once the checkpoint of
    ``checkpoint_step`` exists. Returns the checkpoint and what the child wrote to its terminal."""
    command = [sys.executable, "-m", "cli.main", "train", "--config", PRESET, *settings]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env["PYTHONPATH"] = str(ROOT)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    checkpoint = run_dir / "checkpoints" / f"step_{checkpoint_step:06d}"
    deadline = time.monotonic() + timeout_s
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), process.stderr.read()[-3000:] if process.poll() is not None else "timed out"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return checkpoint, process.stderr.read()
