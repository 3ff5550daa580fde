"""`bppo compare` end to end with a short budget, and the report's arithmetic by hand."""

import json
import math
from pathlib import Path

import pytest

from experiments.report import amdahl_bound, build_report, summarize_run, time_to_target, token_ratio_bound

ROOT = Path(__file__).resolve().parents[1]


def _records(step_s: float, gen_s: float, learner_s: float, tokens: float, accs: list[float], lens: list[float]):
    records = [{"step": 0, "eval/accuracy": accs[0], "eval/problems": 100.0}]
    for step in range(1, len(accs)):
        records.append(
            {
                "step": step,
                "time/step": step_s,
                "time/generate": gen_s,
                "time/update": learner_s,
                "time/train_elapsed": step * step_s,
                "train/tokens": tokens,
                "response/len_mean": lens[step - 1],
                "response/prompt_len_mean": 20.0,
                "eval/accuracy": accs[step],
                "eval/problems": 100.0,
            }
        )
    return records


def test_report_numbers_by_hand():
    grpo = _records(2.0, 1.0, 1.0, 1000.0, [0.2, 0.3, 0.4, 0.5], [60.0, 50.0, 40.0])
    bppo = _records(1.25, 1.0, 0.25, 100.0, [0.2, 0.25, 0.35, 0.45], [60.0, 60.0, 60.0])
    report = build_report({"grpo": {0: grpo}, "bppo": {0: bppo}}, group_size=8, window=40.0)
    # target = the lower of the two best accuracies = 0.45; GRPO gets there at step 3 (6 s),
    # BPPO at step 3 (3.75 s)
    # warm start 0.2 on 100 problems: SE 0.04, so a target must be >= 0.28; 0.45 is, and both reach it
    assert report["target_accuracy"] == 0.45 and report["target_reason"] is None
    assert report["warm_start"] == {"accuracy": 0.2, "standard_error": pytest.approx(0.04), "problems": 100}
    assert report["grpo"]["steps_to_target"] == 3 and report["speedup"]["steps_to_target"] == 1.0
    assert report["intervals"] is None  # no per-item evaluations given
    assert report["grpo"]["time_to_target_s"] == 6.0 and report["bppo"]["time_to_target_s"] == 3.75
    # per-step means skip step 1 (warm-up), which here changes nothing
    assert report["speedup"]["step"] == pytest.approx(2.0 / 1.25)
    assert report["speedup"]["learner"] == pytest.approx(4.0)
    assert report["speedup"]["time_to_target"] == pytest.approx(6.0 / 3.75)
    assert report["speedup"]["train_tokens"] == pytest.approx(10.0)
    # rho = (2/8) (20 + 40) / (20 + 60), with L = GRPO's starting length (first step: 60)
    assert report["bound"]["token_ratio"] == pytest.approx(0.25 * 60 / 80)
    assert report["bound"]["generate_share_grpo"] == pytest.approx(0.5)
    assert report["bound"]["amdahl"] == pytest.approx(1 / (0.5 + 0.5 * 0.1875))
    assert report["bound"]["pair_rate"] is None and report["bound"]["token_ratio_at_pair_rate"] == pytest.approx(0.1875)
    assert report["grpo"]["warm_start_eval_accuracy"] == 0.2 and report["grpo"]["final_eval_accuracy"] == 0.5
    assert report["response_length_change"]["grpo"] == pytest.approx(40.0 / 60.0)
    assert time_to_target([{"train_elapsed_s": 1.0, "accuracy": 0.1}], 0.5) is None
    assert amdahl_bound(0.0, 0.25) == 4.0 and token_ratio_bound(2, 0.0, 10.0, 10.0) == 1.0
    assert summarize_run(grpo)["mean_response_len_start"] == 60.0


def test_gpu_projection_by_hand_and_in_the_report():
    from experiments.report_text import render_markdown

    grpo = _records(2.0, 1.0, 1.0, 1000.0, [0.2, 0.3, 0.4, 0.5], [60.0, 50.0, 40.0])
    bppo = _records(1.0, 0.8, 0.2, 100.0, [0.2, 0.3, 0.4, 0.5], [60.0, 60.0, 60.0])
    for record in bppo[1:]:  # early stopping: 600 decoded tokens a step, 25% of completions aborted
        record["rollout/decoded_tokens"], record["rollout/aborted_rate"] = 600.0, 0.25
    report = build_report({"grpo": {0: grpo}, "bppo": {0: bppo}}, group_size=8, window=40.0)
    projection = report["projection"]
    # r_gen = 0.8 / 1.0; r_rest = (1.0 - 0.8) / (2.0 - 1.0); here g = 1.0 / 2.0
    assert projection["r_gen"] == pytest.approx(0.8) and projection["r_rest"] == pytest.approx(0.2)
    assert projection["generate_share_here"] == pytest.approx(0.5)
    rows = {round(r["generate_share"], 2): r for r in projection["rows"]}
    assert rows[0.5]["measured"] and rows[0.5]["step_speedup"] == pytest.approx(1 / (0.4 + 0.1))  # = 2.0 measured
    assert rows[0.5]["step_speedup"] == pytest.approx(report["speedup"]["step"])  # S(g here) is the step speedup
    # g = 0.9: 1 / (0.9 * 0.8 + 0.1 * 0.2) = 1 / 0.74; the learner's 5x saving fades as generation dominates
    assert rows[0.9]["step_speedup"] == pytest.approx(1 / 0.74)
    # both reach 0.5 at step 3: steps ratio 1, so time to target follows the step
    assert rows[0.9]["time_to_target_speedup"] == pytest.approx(1 / 0.74)
    # one step off policy: max(g, 1 - g) / max(g r_gen, (1 - g) r_rest); generation is BPPO's longer
    # phase at both shares, so only r_gen counts: 0.5 / max(0.4, 0.1) and 0.9 / max(0.72, 0.02)
    assert rows[0.5]["async_step_speedup"] == pytest.approx(1.25)
    assert rows[0.9]["async_step_speedup"] == pytest.approx(1.25)
    assert report["bppo"]["decoded_tokens_per_step"] == 600.0 and report["grpo"]["decoded_tokens_per_step"] is None
    assert report["bppo"]["aborted_rate"] == 0.25
    text = render_markdown(report, command="bppo compare")
    assert "## Beyond this machine (a projection, not a measurement)" in text
    assert "| 0.90 | 1.35× | 1.35× | 1.25× |" in text and "| 0.50 (measured here) | 2.00× | 2.00× | 1.25× |" in text
    assert "| tokens decoded per step (aborted tails included) | n/a | 600 |" in text


def _async(records: list[dict], wait_s: float) -> list[dict]:
    """trainer.mode async: the step waited ``wait_s`` for the batch generated during the last one."""
    for record in records[1:]:
        record["time/wait_generation"] = wait_s
    return records


def test_async_arms_use_the_bound_one_step_off_policy():
    from experiments.report_text import render_markdown

    # GRPO: generation 3.0 s overlaps the previous update; its own work (update 1.0) then a 2.0 s
    # wait: a 3.0 s step. BPPO: generation 2.4 (early stopping), 0.2 of work, 2.2 of waiting.
    grpo = _async(_records(3.0, 3.0, 1.0, 1000.0, [0.2, 0.3, 0.4, 0.5], [60.0, 50.0, 40.0]), 2.0)
    bppo = _async(_records(2.4, 2.4, 0.2, 100.0, [0.2, 0.3, 0.4, 0.5], [60.0, 60.0, 60.0]), 2.2)
    report = build_report({"grpo": {0: grpo}, "bppo": {0: bppo}}, group_size=8, window=40.0)
    assert report["mode"] == "async" and report["grpo"]["per_seed"][0]["mode"] == "async"
    # the rest of a step is step - wait: 3.0 - 2.0 and 2.4 - 2.2
    assert report["grpo"]["mean_rest_time_s"] == pytest.approx(1.0)
    assert report["bppo"]["mean_rest_time_s"] == pytest.approx(0.2)
    # g = generation / (generation + rest) = 3 / 4; rho = (2/8) (20 + 40) / (20 + 60) = 0.1875
    bound = report["bound"]
    assert bound["generate_share_grpo"] == pytest.approx(0.75) and bound["token_ratio"] == pytest.approx(0.1875)
    # generation is GRPO's longer phase: shrinking the rest cannot shorten a step,
    # max(0.75, 0.25) / max(0.75, 0.25 * 0.1875) = 1 (synchronously it would be 1 / (0.75 + 0.046875))
    assert bound["amdahl"] == pytest.approx(1.0)
    assert amdahl_bound(0.75, 0.1875) == pytest.approx(1 / 0.796875)
    assert amdahl_bound(0.25, 0.5, overlapped=True) == pytest.approx(0.75 / 0.375)  # update the longer phase
    # what BPPO gained here is early stopping's shorter generation: 3.0 / 2.4
    assert report["speedup"]["step"] == pytest.approx(1.25)
    projection = report["projection"]
    assert projection["r_gen"] == pytest.approx(0.8) and projection["r_rest"] == pytest.approx(0.2)
    rows = {round(r["generate_share"], 2): r for r in projection["rows"]}
    # at the measured g = 0.75 the async formula gives the measured step speedup: 0.75 / max(0.6, 0.05)
    assert rows[0.75]["measured"] and rows[0.75]["async_step_speedup"] == pytest.approx(1.25)
    text = render_markdown(report, command="bppo compare trainer.mode=async")
    assert "Training: both arms one step off policy (`trainer.mode: async`)" in text
    assert "bound one step off policy, max(g, 1 − g) / max(g, (1 − g)ρ), 1.00×" in text
    # a synchronous GRPO against an async BPPO is not a comparison the report makes
    with pytest.raises(ValueError, match="mix synchronous and async"):
        build_report(
            {"grpo": {0: grpo[:1] + _records(3.0, 3.0, 1.0, 1000.0, [0.2, 0.3], [60.0])[1:]}, "bppo": {0: bppo}},
            group_size=8,
            window=40.0,
        )


def test_compare_refuses_arms_in_different_modes(tmp_path):
    from experiments.compare import run_compare
    from orchestrator.config_io import ConfigError

    with pytest.raises(
        ConfigError, match=r"trainer.mode differs between the arms .*compare.bppo=\['trainer.mode=async'\]"
    ):
        run_compare(
            [str(ROOT / "configs/compare_tiny_cpu.yaml")],
            [f"trainer.run_dir={tmp_path}", "compare.bppo=[trainer.mode=async]"],
            command="test",
            report_only=True,
        )
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.slow  # reads the session's end-to-end runs (Ray, vLLM engines, DeepSpeed)
def test_the_report_of_real_runs_is_consistent_with_their_metrics(e2e_runs):
    """`bppo compare --report-only` on the real BPPO and GRPO runs the end-to-end tests made (named
    as compare names its arms): every figure is the arithmetic of their metrics.jsonl and evals.jsonl."""
    from experiments.compare import run_compare

    root = e2e_runs["root"]
    preset, overrides = [str(ROOT / "configs/compare_tiny_cpu.yaml")], [f"trainer.run_dir={root}"]
    run_compare(preset, overrides, command="test", report_only=True)
    report = json.loads((root / "report.json").read_text())
    for name in ("report.md", "accuracy_vs_time.png", "phase_times.png", "train_tokens.png", "response_length.png"):
        assert (root / name).stat().st_size > 1000 if name.endswith(".png") else (root / name).exists()
    for algo in ("grpo", "bppo"):
        metrics = [json.loads(line) for line in (root / f"{algo}-seed0" / "metrics.jsonl").read_text().splitlines()]
        steps = [m for m in metrics if m["step"] > 0]
        timed = [m for m in steps if m["step"] > 1]  # step 1 is warm-up
        assert len(steps) == (4 if algo == "bppo" else 3) and len(timed) >= 2
        entry = report[algo]
        assert entry["warm_start_eval_accuracy"] == metrics[0]["eval/accuracy"]
        assert entry["final_eval_accuracy"] == metrics[-1]["eval/accuracy"]
        assert entry["mean_step_time_s"] == pytest.approx(sum(m["time/step"] for m in timed) / len(timed))
        assert entry["train_tokens_per_step"] == pytest.approx(sum(m["train/tokens"] for m in steps) / len(steps))
        assert entry["time_to_target_s"] is None or entry["time_to_target_s"] > 0
    assert report["speedup"]["step"] == pytest.approx(
        report["grpo"]["mean_step_time_s"] / report["bppo"]["mean_step_time_s"]
    )
    assert report["speedup"]["train_tokens"] == pytest.approx(
        report["grpo"]["train_tokens_per_step"] / report["bppo"]["train_tokens_per_step"]
    )
    assert set(report["bound"]) >= {"token_ratio", "amdahl"} and report["seeds"] == [0]
    assert 0 < report["bound"]["token_ratio"] < 1 and math.isfinite(report["bound"]["amdahl"])
    assert "BPPO vs GRPO" in (root / "report.md").read_text()
    evals = [json.loads(line) for line in (root / "grpo-seed0" / "evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 2, 3] and all(len(e["correct"]) == 40 for e in evals)
    assert report["intervals"]["speedup/step"]["ci"] is not None  # per-item outcomes: intervals
    # the report is a function of the run directories: made again, it is the same
    (root / "report.json").unlink()
    run_compare(preset, overrides, command="test", report_only=True)
    assert json.loads((root / "report.json").read_text()) == report


@pytest.mark.slow  # Ray, vLLM engines, DeepSpeed
def test_interleaved_arms_take_steps_in_turn_side_by_side(ray_local, tiny_model, tmp_path, monkeypatch):
    """compare.schedule: interleaved: both arms' actors are up at once (each in half the cluster)
    and the arms train step by step in turn; each run is complete and the report is made."""
    from experiments.compare import run_compare
    from orchestrator.loop import Trainer

    order = []
    original = Trainer.train_step

    def recording(self, step):
        order.append((self.config.algo.name, step))
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", recording)
    overrides = [
        f"model.path={tiny_model}",
        f"trainer.run_dir={tmp_path}",
        "trainer.steps=2",
        "trainer.time_budget_s=null",
        "reward.function=tests.custom_reward:even_length_reward",
        "data.source.num_train=200",
        "data.source.num_test=20",
        "trainer.prompts_per_step=4",
        "eval.every=2",
        "rollout.engine_core_process=false",  # the alternation, not the process boundary, is under test
    ]
    run_compare([str(ROOT / "configs/compare_tiny_cpu.yaml")], overrides, command="test")
    assert order == [("grpo", 1), ("bppo", 1), ("grpo", 2), ("bppo", 2)]
    for algo in ("grpo", "bppo"):
        resolved = (tmp_path / f"{algo}-seed0" / "config.yaml").read_text()
        assert "share: 0.5" in resolved  # each arm placed in half of the cluster
        metrics = [json.loads(line) for line in (tmp_path / f"{algo}-seed0" / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == [0, 1, 2]
        assert all(m["sync/policy_version"] == m["step"] for m in metrics if m["step"])
        assert (tmp_path / f"{algo}-seed0" / "final" / "model.safetensors").exists()
    assert json.loads((tmp_path / "report.json").read_text())["seeds"] == [0]


@pytest.mark.slow  # Ray, vLLM engines, DeepSpeed
def test_async_arms_interleave_without_generating_into_each_others_turn(ray_local, tiny_model, tmp_path, monkeypatch):
    """BPPO-async against GRPO-async: each arm's step generates its next batch while it trains and
    ends with that generation finished, so nothing of one arm runs during the other's turn; the
    report uses the bound one step off policy."""
    from experiments.compare import run_compare
    from orchestrator.loop import Trainer

    turns = []
    original = Trainer.train_step

    def recording(self, step):
        metrics = original(self, step)
        ahead = self.ahead.finished()  # the next batch, generated during this step
        turns.append((self.config.algo.name, step, self.ahead.generating, ahead and ahead.step))
        return metrics

    monkeypatch.setattr(Trainer, "train_step", recording)
    overrides = [
        f"model.path={tiny_model}",
        f"trainer.run_dir={tmp_path}",
        "trainer.mode=async",
        "trainer.steps=3",
        "reward.function=tests.custom_reward:even_length_reward",  # a random model has pairs: every step trains
        "trainer.time_budget_s=null",
        "data.source.num_train=200",
        "data.source.num_test=20",
        "trainer.prompts_per_step=4",
        "eval.every=3",
        "rollout.engine_core_process=false",
    ]
    run_compare([str(ROOT / "configs/compare_tiny_cpu.yaml")], overrides, command="test")
    # no arm's step returns with its engines still generating; steps 1-2 leave the next batch
    # generated, step 3 (the last) launches none
    assert turns == [
        ("grpo", 1, False, 2),
        ("bppo", 1, False, 2),
        ("grpo", 2, False, 3),
        ("bppo", 2, False, 3),
        ("grpo", 3, False, None),
        ("bppo", 3, False, None),
    ]
    for algo in ("grpo", "bppo"):
        metrics = [json.loads(line) for line in (tmp_path / f"{algo}-seed0" / "metrics.jsonl").read_text().splitlines()]
        steps = [m for m in metrics if m["step"]]
        assert [m["sync/policy_version"] for m in steps] == [1.0, 2.0, 3.0], steps
        assert [m["rollout/staleness_max"] for m in steps] == [0.0, 1.0, 1.0]
        assert all("time/wait_generation" in m for m in metrics if m["step"])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mode"] == "async" and report["grpo"]["mean_rest_time_s"] > 0
    assert "Training: both arms one step off policy" in (tmp_path / "report.md").read_text()


def test_report_only_without_runs_names_what_is_missing(tmp_path):
    from experiments.compare import run_compare

    with pytest.raises(ValueError, match="no metrics.jsonl for grpo-seed0, grpo-seed1, bppo-seed0, bppo-seed1 "):
        run_compare(
            [str(ROOT / "configs/compare_tiny_cpu.yaml")],
            [f"trainer.run_dir={tmp_path}", "compare.seeds=[0,1]"],
            command="test",
            report_only=True,
        )
