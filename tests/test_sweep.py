"""`bppo sweep`: trials expanded and validated up front, run as Ray tasks, tabulated."""

import json
from pathlib import Path

import pytest

from orchestrator.config_io import ConfigError
from orchestrator.sweep import expand_trials

ROOT = Path(__file__).resolve().parents[1]
PRESET = str(ROOT / "configs/sweep_bppo_vs_grpo.yaml")


def test_the_preset_expands_to_grpo_and_three_prefix_modes():
    trials = expand_trials([PRESET], ["trainer.run_dir=/tmp/s", "sweep.grid={trainer.seed: [0, 1]}"])
    assert list(trials) == [f"{arm}-seed{s}" for arm in ("grpo", "bppo_tokens", "bppo_divergence", "bppo_full")
                            for s in (0, 1)]
    assert "algo.prefix.mode=divergence" in trials["bppo_divergence-seed1"]
    assert "trainer.seed=1" in trials["bppo_divergence-seed1"]
    assert "trainer.run_dir=/tmp/s/grpo-seed0" in trials["grpo-seed0"]


def test_a_bad_trial_fails_before_anything_runs():
    with pytest.raises(ConfigError, match="sweep trial grpo-n1: rollout.n=1: group-relative"):
        expand_trials([PRESET], ["sweep.grid={rollout.n: [1]}"])
    with pytest.raises(ConfigError, match="sweep.baseline='nope'"):
        expand_trials([PRESET], ["sweep.baseline=nope"])


def test_the_early_stop_preset_pairs_bppo_with_and_without_it():
    trials = expand_trials([str(ROOT / "configs/sweep_early_stop.yaml")], ["trainer.run_dir=/tmp/s"])
    assert list(trials) == ["bppo-seed0", "bppo-seed1", "bppo_early_stop-seed0", "bppo_early_stop-seed1"]
    assert "rollout.early_stop_groups=true" in trials["bppo_early_stop-seed1"]
    assert not any(o.startswith("rollout.early_stop_groups") for o in trials["bppo-seed1"])
    with pytest.raises(ConfigError, match="sweep trial grpo_es-seed0: .*needs BPPO with selection 'shortest'"):
        expand_trials([str(ROOT / "configs/sweep_early_stop.yaml")], [
            "sweep.arms={grpo_es: [algo.name=grpo, rollout.early_stop_groups=true]}", "sweep.baseline=grpo_es"])


def test_two_trial_sweep_end_to_end(ray_local, tiny_model, tmp_path):
    from orchestrator.sweep import run_sweep

    overrides = [
        f"model.path={tiny_model}", f"trainer.run_dir={tmp_path}", "trainer.steps=2", "trainer.time_budget_s=null",
        "reward.function=tests.custom_reward:even_length_reward", "data.source.num_train=200",
        "data.source.num_test=20", "trainer.prompts_per_step=4", "eval.every=1", "wandb.mode=offline",
        "sweep.arms={grpo: [algo.name=grpo], bppo_tokens: [algo.name=bppo, algo.prefix.mode=tokens]}",
        "sweep.grid={}",
    ]
    run_sweep([PRESET], overrides, command="test")
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert set(summary["trials"]) == {"grpo", "bppo_tokens"}
    for name, row in summary["trials"].items():
        assert row["status"] == "ok", row
        metrics = [json.loads(l) for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        assert row["final_eval_accuracy"] == metrics[-1]["eval/accuracy"]
        assert row["steps"] == 2
    bppo, grpo = summary["trials"]["bppo_tokens"], summary["trials"]["grpo"]
    assert bppo["speedup_step"] == pytest.approx(grpo["mean_step_time_s"] / bppo["mean_step_time_s"])
    assert grpo["speedup_step"] == pytest.approx(1.0)
    table = (tmp_path / "sweep.md").read_text()
    assert "| bppo_tokens | ok |" in table and "| grpo | ok |" in table
