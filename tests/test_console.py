"""The console: which worker lines reach the terminal, the time-budget progress bar, step warnings."""

import io

import pytest

from orchestrator.console import TrainingProgress, WorkerLogRouter, matters, step_warnings

VLLM_NOISE = [
    "(Worker pid=23466) WARNING 11-25 03:23:18 [layerwise.py:266] RotaryEmbedding: Failed to load weights",
    "INFO 11-25 03:23:18 [block_pool.py:861] Successfully reset prefix cache",
    "[2026-11-25 03:14:12,001] [INFO] [config.py:1000:print] DeepSpeedEngine configuration:",
    "(EngineCore pid=23454) INFO 11-25 03:13:56 [multiproc_executor.py:153] DP group leader: node_rank=0",
    "  error_on_nan: false",
]
MATTERS = [
    "ERROR 11-25 03:23:18 [core.py:10] EngineCore failed to start",
    "(EngineCore pid=23454) ERROR 11-25 03:23:18 [core.py:10] EngineCore encountered a fatal error",
    "ray.exceptions.RayActorError: The actor died unexpectedly",
    "bppo WARNING [rewards.pool] reward function tests.f failed (timeout): 5.0 s",
    "Traceback (most recent call last):",
    "RuntimeError: NCCL error",
]


def test_only_errors_tracebacks_and_project_warnings_matter():
    assert not any(matters(line) for line in VLLM_NOISE)
    assert all(matters(line) for line in MATTERS)


@pytest.mark.parametrize("verbose", [False, True])
def test_router_writes_everything_to_the_file_and_what_matters_to_the_terminal(tmp_path, verbose):
    router, terminal = WorkerLogRouter(), io.StringIO()
    router.terminal = terminal
    router.open(tmp_path / "run" / "worker.log", verbose=verbose)
    router({"lines": VLLM_NOISE + MATTERS, "pid": 7, "actor_name": "RolloutEngine"})
    router.close()
    written = (tmp_path / "run" / "worker.log").read_text().splitlines()
    assert written == [f"(RolloutEngine pid=7) {line}" for line in VLLM_NOISE + MATTERS]
    shown = terminal.getvalue().splitlines()
    assert shown == (written if verbose else written[len(VLLM_NOISE) :])
    # with no run log open (nothing to keep it), everything reaches the terminal: nothing is lost
    terminal.truncate(0), terminal.seek(0)
    router({"lines": VLLM_NOISE[:1], "pid": 8, "task_name": "trial"})
    assert terminal.getvalue() == f"(trial pid=8) {VLLM_NOISE[0]}\n"


def _step(step_s: float, **extra) -> dict:
    return {"time/step": step_s, "reward/mean": 0.25, "reward/accuracy": 0.5, **extra}


def test_budget_bar_counts_training_seconds_and_stops_at_the_budget(capsys):
    progress = TrainingProgress("GRPO", steps=100_000, budget_s=10.0, step=0, train_elapsed=0.0)
    progress.update(1, _step(4.0))
    assert progress.bar.n == 4.0 and progress.bar.total == 10.0
    progress.update(2, _step(4.0, **{"eval/accuracy": 0.375}))
    progress.update(3, _step(4.0))  # 12 s of training: the bar stops at the budget
    assert progress.bar.n == 10.0
    progress.bar.refresh()
    rendered = capsys.readouterr().err.split("\r")[-1]
    progress.close()
    assert "GRPO: 100%" in rendered and "10/10 s of training" in rendered
    assert "step=3" in rendered and "eval=0.375" in rendered and "step_s=4.00" in rendered
    assert "100000" not in rendered  # the step bound is not the bound shown


def test_step_bar_without_a_budget_and_resume_offsets():
    progress = TrainingProgress("BPPO", steps=60, budget_s=None, step=20, train_elapsed=50.0)
    progress.update(21, _step(1.0))
    assert progress.bar.n == 21 and progress.bar.total == 60
    progress.close()
    resumed = TrainingProgress("BPPO", steps=10, budget_s=100.0, step=5, train_elapsed=40.0)
    assert resumed.bar.n == 40.0
    resumed.close()


def test_step_warnings_name_the_step_and_what_happened():
    assert step_warnings(3, _step(1.0), 1.0) == []
    assert step_warnings(4, _step(1.0, **{"learner/skipped_nonfinite": 1.0}), 1.0) == [
        "warning: step 4: non-finite loss or gradient, the update was skipped"
    ]
    assert step_warnings(5, _step(1.0, **{"learner/skipped_empty": 1.0}), 1.0) == [
        "warning: step 5: no group carried a learning signal, nothing was trained"
    ]
    drift = _step(1.0, **{"sync/logprob_max_diff": 2.5})
    assert step_warnings(6, drift, 1.0) == [
        "warning: step 6: learner and engine log-probs differ by up to 2.5 (> trainer.parity_warn_above = 1): "
        "check the weight sync and sampling"
    ]
    assert step_warnings(6, drift, None) == [] and step_warnings(6, drift, 3.0) == []
