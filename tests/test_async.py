"""trainer.mode async on the real stack (Ray, a vLLM engine in its own process, DeepSpeed, gloo
weight transfer), the tiny model: BPPO and GRPO each 4 steps one step off policy, the engine and
the learner on disjoint cores; then a BPPO run killed with SIGKILL after its step-2 checkpoint
and resumed, which must continue exactly as the uninterrupted run did."""

import pytest

from orchestrator.config_io import load_config
from tests.e2e_runs import PRESET, overrides, records, train_until_killed

ASYNC = {
    "trainer.mode": "async",
    "trainer.steps": 4,
    "rollout.num_engines": 1,  # 2 cores: one for the engine, one for the learner
    "learner.world_size": 1,
    "learner.zero_stage": 0,
    "learner.lr": 3e-3,  # moves the tiny policy a visible distance per step: weights != 1
}


def _settings(run_dir, model, **extra) -> list[str]:
    return overrides(run_dir, model, **{**ASYNC, **extra})


@pytest.fixture(scope="module")
def async_runs(ray_local, tiny_model, tmp_path_factory):
    from orchestrator.loop import Trainer

    root = tmp_path_factory.mktemp("async")
    runs = {}
    for algo in ("bppo", "grpo"):
        Trainer(load_config([PRESET], _settings(root / algo, tiny_model, **{"algo.name": algo}))).run()
        runs[algo] = records(root / algo)
    runs["root"] = root
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["bppo", "grpo"])
def test_async_steps_are_one_version_behind_and_corrected(async_runs, algo):
    steps = [r for r in async_runs[algo] if r["step"] > 0]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    # step 1 generated its own batch (on-policy, parity checked); every later batch was generated
    # while the previous step trained, by the weights one update behind
    assert (steps[0]["rollout/staleness_max"], steps[0]["sync/logprob_max_diff"] < 1e-4) == (0.0, True)
    assert all(r["rollout/staleness"] == r["rollout/staleness_max"] == 1.0 for r in steps[1:])
    assert all(r["rollout/stale_groups_dropped"] == 0.0 for r in steps)
    assert [r["sync/policy_version"] for r in steps] == [1, 2, 3, 4]
    assert "offpolicy/is_weight_mean" not in steps[0]
    for r in steps[1:]:
        assert "sync/logprob_max_diff" not in r  # the weights differ by an update: no parity check
        # the truncated importance weights are in the loss, and the policy moved: not all 1
        assert 0 < r["offpolicy/is_weight_mean"] and r["offpolicy/is_weight_max"] > 1.0
        assert 0 <= r["offpolicy/is_clip_frac"] <= 1
        assert r["time/wait_generation"] >= 0
    assert max(abs(r["offpolicy/is_weight_mean"] - 1.0) for r in steps[1:]) > 1e-3


@pytest.mark.slow
def test_async_run_killed_and_resumed_continues_identically(async_runs, tiny_model):
    """The step-2 checkpoint holds batch 3 (generated while step 2 trained); the resumed run
    trains on it, then generates batch 4 with the same weights and seeds as the original."""
    run_dir = async_runs["root"] / "killed"
    checkpoint, _ = train_until_killed(run_dir, _settings(run_dir, tiny_model), checkpoint_step=2)
    assert (checkpoint / "rollout_ahead.json").exists()

    from orchestrator.loop import Trainer

    Trainer(load_config([PRESET], _settings(run_dir, tiny_model)), resume=True).run()
    resumed, reference = records(run_dir), async_runs["bppo"]
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    resumed_rollouts = records(run_dir, "rollouts.jsonl")
    reference_rollouts = records(async_runs["root"] / "bppo", "rollouts.jsonl")
    assert [r["step"] for r in resumed_rollouts] == [1, 2, 3, 4]
    for got, want in zip(resumed_rollouts, reference_rollouts):
        assert got["problem_ids"] == want["problem_ids"], got["step"]
        assert got["rewards"] == want["rewards"] and got["lengths"] == want["lengths"], got["step"]
    for step in (3, 4):
        assert resumed[step]["loss/pg"] == pytest.approx(reference[step]["loss/pg"], abs=1e-5)
        assert resumed[step]["offpolicy/is_weight_mean"] == pytest.approx(
            reference[step]["offpolicy/is_weight_mean"], abs=1e-5
        )
