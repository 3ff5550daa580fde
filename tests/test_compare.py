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


@pytest.mark.slow  # Ray, vLLM, DeepSpeed
def test_compare_end_to_end_writes_report_consistent_with_metrics(ray_local, tiny_model, tmp_path):
    from experiments.compare import run_compare

    overrides = [
        f"model.path={tiny_model}",
        f"trainer.run_dir={tmp_path}",
        "trainer.steps=2",
        "trainer.time_budget_s=null",
        "reward.function=tests.custom_reward:even_length_reward",
        "data.source.num_train=200",
        "data.source.num_test=30",
        "trainer.prompts_per_step=4",
        "eval.every=1",
        "wandb.mode=offline",
    ]
    run_compare([str(ROOT / "configs/compare_tiny_cpu.yaml")], overrides, command="test")
    report = json.loads((tmp_path / "report.json").read_text())
    for name in ("report.md", "accuracy_vs_time.png", "phase_times.png", "train_tokens.png", "response_length.png"):
        assert (tmp_path / name).stat().st_size > 1000 if name.endswith(".png") else (tmp_path / name).exists()
    for algo in ("grpo", "bppo"):
        metrics = [json.loads(line) for line in (tmp_path / f"{algo}-seed0" / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == [0, 1, 2]
        entry = report[algo]
        for key in (
            "final_eval_accuracy",
            "warm_start_eval_accuracy",
            "mean_step_time_s",
            "mean_learner_time_s",
            "mean_generate_time_s",
            "train_tokens_per_step",
            "mean_response_len_start",
            "mean_response_len_end",
            "time_to_target_s",
        ):
            assert key in entry, key
        assert entry["warm_start_eval_accuracy"] == metrics[0]["eval/accuracy"]
        assert entry["final_eval_accuracy"] == metrics[-1]["eval/accuracy"]
        assert entry["mean_step_time_s"] == pytest.approx(metrics[2]["time/step"])  # step 1 is warm-up
        assert entry["train_tokens_per_step"] == pytest.approx(
            (metrics[1]["train/tokens"] + metrics[2]["train/tokens"]) / 2
        )
    assert report["speedup"]["step"] == pytest.approx(
        report["grpo"]["mean_step_time_s"] / report["bppo"]["mean_step_time_s"]
    )
    assert set(report["speedup"]) >= {"step", "learner", "time_to_target"}
    assert set(report["bound"]) >= {"token_ratio", "amdahl"} and report["seeds"] == [0]
    assert 0 < report["bound"]["token_ratio"] < 1 and math.isfinite(report["bound"]["amdahl"])
    assert "BPPO vs GRPO" in (tmp_path / "report.md").read_text()
    evals = [json.loads(line) for line in (tmp_path / "grpo-seed0" / "evals.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1, 2] and all(len(e["correct"]) == 30 for e in evals)
    assert report["intervals"]["speedup/step"]["ci"] is not None  # per-item outcomes: intervals
    # --report-only: the same report again from the run directories, nothing trained
    (tmp_path / "report.json").unlink()
    run_compare([str(ROOT / "configs/compare_tiny_cpu.yaml")], overrides, command="test", report_only=True)
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_report_only_without_runs_names_what_is_missing(tmp_path):
    from experiments.compare import run_compare

    with pytest.raises(ValueError, match="no metrics.jsonl for grpo-seed0, grpo-seed1, bppo-seed0, bppo-seed1 "):
        run_compare(
            [str(ROOT / "configs/compare_tiny_cpu.yaml")],
            [f"trainer.run_dir={tmp_path}", "compare.seeds=[0,1]"],
            command="test",
            report_only=True,
        )
