"""`bppo sweep`: trials expanded and validated up front, tabulated by hand. The end-to-end sweep (two
trials at once, as Ray tasks) is in test_two_nodes.py."""

import json
from pathlib import Path

import pytest

from experiments.sweep import expand_trials, render_sweep, summarize_sweep
from orchestrator.config_io import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PRESET = str(ROOT / "configs/sweep_bppo_vs_grpo.yaml")


def test_the_preset_expands_to_grpo_and_three_prefix_modes():
    trials = expand_trials([PRESET], ["trainer.run_dir=/tmp/s", "sweep.grid={trainer.seed: [0, 1]}"])
    assert list(trials) == [
        f"{arm}-seed{s}" for arm in ("grpo", "bppo_tokens", "bppo_divergence", "bppo_full") for s in (0, 1)
    ]
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
    assert list(trials) == [
        "bppo-seed0",
        "bppo-seed1",
        "bppo_early_stop-seed0",
        "bppo_early_stop-seed1",
        "bppo_early_stop_prior-seed0",
        "bppo_early_stop_prior-seed1",
    ]
    assert "rollout.early_stop_groups=true" in trials["bppo_early_stop-seed1"]
    assert "algo.aborted_advantage=pass_rate" in trials["bppo_early_stop_prior-seed0"]
    assert not any(o.startswith("rollout.early_stop_groups") for o in trials["bppo-seed1"])
    with pytest.raises(ConfigError, match="sweep trial grpo_es-seed0: .*needs BPPO with selection 'shortest'"):
        expand_trials(
            [str(ROOT / "configs/sweep_early_stop.yaml")],
            ["sweep.arms={grpo_es: [algo.name=grpo, rollout.early_stop_groups=true]}", "sweep.baseline=grpo_es"],
        )


def _write_run(
    run_dir: Path, curve: list[tuple[int, float, float]], step_s: float, wait_s: float | None = None
) -> None:
    """A metrics.jsonl with evaluations (step, training seconds, accuracy on 500 problems);
    ``wait_s``: an async run's wait for the batch generated ahead."""
    run_dir.mkdir(parents=True)
    records = []
    for step in range(0, curve[-1][0] + 1):
        record = {"step": step}
        if step:
            record.update(
                {
                    "time/step": step_s,
                    "time/generate": step_s / 2,
                    "response/len_mean": 40.0,
                    "time/train_elapsed": step * step_s,
                    **({} if wait_s is None else {"time/wait_generation": wait_s}),
                }
            )
        for at, elapsed, accuracy in curve:
            if at == step:
                record.update({"eval/accuracy": accuracy, "eval/problems": 500.0, "time/train_elapsed": elapsed})
        records.append(record)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_time_to_target_is_per_pair_and_only_beyond_two_standard_errors(tmp_path):
    """Warm start 0.30 on 500 problems: SE sqrt(0.3 * 0.7 / 500) = 0.0205, so a target needs
    >= 0.30 + 2 * 0.0205 = 0.341. bppo vs grpo: the highest accuracy both reached is
    min(0.42, 0.44) = 0.42; grpo first reaches it at 100 s, bppo at 60 s: 100 / 60 = 1.667.
    collapsed vs grpo: min(0.42, 0.30) = 0.30 < 0.341: not measurable, and the row says so."""
    _write_run(tmp_path / "grpo", [(0, 0.0, 0.30), (10, 50.0, 0.36), (20, 100.0, 0.42)], step_s=5.0)
    _write_run(tmp_path / "bppo", [(0, 0.0, 0.30), (10, 30.0, 0.40), (20, 60.0, 0.44)], step_s=3.0)
    _write_run(tmp_path / "collapsed", [(0, 0.0, 0.30), (10, 50.0, 0.10), (20, 100.0, 0.02)], step_s=5.0)
    trials = {name: [] for name in ("grpo", "bppo", "collapsed")}
    summary = summarize_sweep(tmp_path, trials, {name: "ok" for name in trials}, baseline="grpo", target=None)
    bppo, collapsed, grpo = (summary["trials"][n] for n in ("bppo", "collapsed", "grpo"))
    assert bppo["target_accuracy"] == 0.42 and bppo["target_reason"] is None
    assert (bppo["time_to_target_s"], bppo["baseline_time_to_target_s"]) == (60.0, 100.0)
    assert bppo["speedup_time_to_target"] == pytest.approx(100 / 60)
    assert bppo["speedup_step"] == pytest.approx(5.0 / 3.0)
    assert collapsed["target_accuracy"] is None and collapsed["speedup_time_to_target"] is None
    assert (
        "0.300, is less than 2 standard errors above the warm start (0.300 ± 0.020 on 500" in collapsed["target_reason"]
    )
    assert "speedup_time_to_target" not in grpo
    table = render_sweep(summary)
    assert "| 0.420 | 60.0 / 100.0 | 1.67 |" in table
    assert "- collapsed: time to target not measurable: the highest accuracy every run reached, 0.300" in table
    # a configured target applies to every pair, with the same 2-SE floor
    fixed = summarize_sweep(tmp_path, trials, {name: "ok" for name in trials}, baseline="grpo", target=0.40)
    assert fixed["trials"]["bppo"]["speedup_time_to_target"] == pytest.approx(100 / 30)
    assert "collapsed never reached" not in fixed["trials"]["collapsed"]["target_reason"]
    assert "this trial never reached the target 0.400" in fixed["trials"]["collapsed"]["target_reason"]


def test_an_async_trial_is_marked_and_its_mode_change_named(tmp_path):
    _write_run(tmp_path / "grpo", [(0, 0.0, 0.30), (10, 50.0, 0.36)], step_s=5.0)
    _write_run(tmp_path / "grpo_async", [(0, 0.0, 0.30), (10, 40.0, 0.36)], step_s=4.0, wait_s=1.5)
    trials = {"grpo": [], "grpo_async": []}
    summary = summarize_sweep(tmp_path, trials, {n: "ok" for n in trials}, baseline="grpo", target=None)
    rows = summary["trials"]
    assert rows["grpo"]["mode"] == "sync" and rows["grpo_async"]["mode"] == "async"
    assert rows["grpo_async"]["speedup_step"] == pytest.approx(5.0 / 4.0)
    table = render_sweep(summary)
    assert "| grpo | ok | sync | 0.360 |" in table and "| grpo_async | ok | async | 0.360 |" in table
    assert "- grpo_async: trainer.mode async against a sync baseline: its speedups include" in table
