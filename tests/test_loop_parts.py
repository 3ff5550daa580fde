"""The loop's small pure parts: micro-batch plan, prompt order, checkpoints, placement, LR, metrics."""

import json
import math
import random

import pytest
import torch

from learner.batch import TrainBatch, pad_rows
from learner.packing import plan_micro_batches
from learner.worker import lr_lambda
from orchestrator.checkpoint import complete_checkpoints, latest_checkpoint, load_trainer_state, save_checkpoint
from orchestrator.config import Config
from orchestrator.metrics import truncate_jsonl, wandb_mode
from orchestrator.placement import PlacementError, plan_placement
from prompts.stream import PromptStream


def _padded(rows, lengths):
    return len(rows) * max((lengths[r] for r in rows), default=0)


def test_plan_keeps_padded_size_within_budget_with_equal_counts_per_rank():
    lengths = [10, 9, 8, 7, 6, 5, 4, 3]  # 52 tokens
    plan = plan_micro_batches(lengths, world_size=2, token_budget=14)
    assert [len(rank) for rank in plan] == [len(plan[0])] * 2
    flat = sorted(r for rank in plan for micro in rank for r in micro)
    assert flat == list(range(8))  # every row exactly once
    for rank in plan:
        for micro in rank:
            assert micro == sorted(micro) and _padded(micro, lengths) <= 14
    assert plan_micro_batches([5, 5], 1, 100) == [[[0, 1]]]
    assert plan_micro_batches([50, 1], 1, 10) == [[[0], [1]]]  # an over-long row goes alone
    # More ranks than rows: the idle rank still gets one (empty) micro-batch.
    assert plan_micro_batches([3], 2, 10) == [[[0]], [[]]]
    assert plan_micro_batches([], 2, 10) == [[[]], [[]]]
    with pytest.raises(ValueError, match="world_size"):
        plan_micro_batches([1], 0, 10)


def test_hand_checked_plan():
    # Longest first at budget 10: {6}, {5, 4} (2 rows x 5 = 10), {3}: 3 micro-batches -> 2 per
    # rank, 4 slots. Every budget below 10 leaves each row alone (4 fit the slots), so the
    # smallest is 1: singletons, heaviest first to the lighter rank: 6->r0, 5->r1, 4->r1
    # (5 < 6), 3->r0. (The token plan made {6, 3}: 2 rows x 6 = 12 padded > 10.)
    assert plan_micro_batches([6, 5, 4, 3], 2, 10) == [[[0], [3]], [[1], [2]]]
    # Similar lengths together: {10, 9} (2 x 10 = 20) and {3, 3, 2, 2} (4 x 3 = 12); no
    # smaller budget fits 2 micro-batches (at 19: {10}, {9, 3}, {3, 2, 2}). A token plan
    # put a short row with the 10 (3 rows x 10 = 30 padded for 15 tokens).
    assert plan_micro_batches([10, 2, 9, 3, 2, 3], 1, 20) == [[[0, 2], [1, 3, 4, 5]]]
    # One micro-batch {4, 4, 4, 4} -> 1 per rank, 3 slots; budget 8 packs 2 ({4, 4} twice),
    # 7 packs 4: so 8, and the spare slot takes half of the heaviest (8 -> 4 + 4).
    assert plan_micro_batches([4, 4, 4, 4], 3, 16) == [[[2, 3]], [[0]], [[1]]]


def test_plan_pads_a_long_tailed_batch_by_a_few_percent():
    # A GRPO step under gpu_base.yaml: 512 rows, prompt 60-200 tokens, lognormal responses
    # (median 350, capped at 2048), 4 ranks, 16,384 padded tokens per micro-batch.
    rng = random.Random(0)
    lengths = [rng.randint(60, 200) + min(2048, int(rng.lognormvariate(math.log(350), 0.8))) for _ in range(512)]
    assert sum(lengths) == 308_315 and max(lengths) == 2_148
    plan = plan_micro_batches(lengths, world_size=4, token_budget=16_384)
    # Packed at the full budget it takes 21 micro-batches, the fewest possible: 6 per rank.
    assert [len(rank) for rank in plan] == [6] * 4
    sizes = [_padded(micro, lengths) for rank in plan for micro in rank]
    assert max(sizes) <= 16_384
    # The token plan padded this batch to 3.0x its tokens (5 micro-batches per rank, the
    # worst 55,848 padded tokens, 3.4x the budget); now 5% of padding.
    assert sum(sizes) / sum(lengths) == pytest.approx(1.050, abs=1e-3)
    loads = [sum(_padded(micro, lengths) for micro in rank) for rank in plan]
    assert max(loads) / min(loads) < 1.01  # ranks balanced to 1%


def test_select_cuts_to_the_longest_row_and_empty_selection_is_inert():
    input_ids, attention_mask, loss_mask, _ = pad_rows([[1, 2], [3]], [[4, 5, 6], [7]], pad_id=0)
    batch = TrainBatch(input_ids, attention_mask, loss_mask, torch.tensor([1.0, -1.0]), torch.tensor([0, 1]))
    second = batch.select([1])
    assert second.input_ids.tolist() == [[3, 7]] and second.advantages.tolist() == [-1.0]
    inert = batch.select([])
    assert inert.input_ids.shape == (1, 1) and inert.loss_mask.sum() == 0 and inert.advantages.tolist() == [0.0]


def test_prompt_stream_is_seeded_covers_each_epoch_and_restores():
    stream = PromptStream(5, seed=3)
    first = stream.take(3) + stream.take(2)
    assert sorted(first) == [0, 1, 2, 3, 4]  # one epoch = each prompt once
    crossing = stream.take(4)
    assert stream.state() == {"epoch": 1, "index": 4}
    again = PromptStream(5, seed=3)
    assert again.take(5) == first and again.take(4) == crossing
    restored = PromptStream.restore(5, 3, {"epoch": 1, "index": 4})
    assert restored.take(1) == PromptStream(5, seed=3).take(10)[9:]
    assert PromptStream(5, seed=4).take(5) != first


class _FakeLearner:
    def save_checkpoint(self, directory, client_state):
        import pathlib

        pathlib.Path(directory).mkdir(parents=True)
        (pathlib.Path(directory) / "weights").write_text(json.dumps(client_state))


def test_checkpoints_are_atomic_pruned_and_partial_ones_ignored(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, _FakeLearner(), {"step": step}, keep=2)
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_000004", "step_000006"]
    (tmp_path / "checkpoints" / "step_000008.tmp").mkdir()  # a save killed half-way
    assert latest_checkpoint(tmp_path).name == "step_000006"
    assert load_trainer_state(latest_checkpoint(tmp_path)) == {"step": 6}
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_placement_fits_or_fails_in_one_line():
    config = Config()  # 1 engine, 1 learner rank, reward.num_workers reward workers
    cpu = plan_placement(config, {"CPU": 2.0})
    actors = 1 + 1 + config.reward.num_workers
    assert not cpu.on_gpu and cpu.engine["CPU"] == math.floor(2 / actors * 1000) / 1000
    assert cpu.engine["CPU"] * actors <= 2.0
    big = Config(learner={"world_size": 3})
    with pytest.raises(PlacementError, match="learner.world_size=3 needs 3 CPUs"):
        plan_placement(big, {"CPU": 2.0})
    gpu = Config(rollout={"num_engines": 2, "tensor_parallel_size": 2}, learner={"world_size": 4})
    with pytest.raises(PlacementError, match="= 8 GPUs, but the Ray cluster has 4"):
        plan_placement(gpu, {"CPU": 64, "GPU": 4})
    fits = plan_placement(gpu, {"CPU": 64, "GPU": 8})
    # An engine actor holds its TP GPUs itself: vLLM starts its TP workers inside it.
    assert fits.on_gpu and fits.learner_rank == {"CPU": 1, "GPU": 1} and fits.engine == {"CPU": 1, "GPU": 2}


def test_lr_schedule_warmup_then_constant_or_cosine():
    constant = lr_lambda(2, 10, "constant")
    assert [constant(s) for s in range(4)] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    cosine = lr_lambda(0, 10, "cosine")
    assert cosine(0) == 1.0 and cosine(5) == pytest.approx(0.5) and cosine(10) == pytest.approx(0.0)


def test_metrics_jsonl_truncation_and_wandb_mode(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "x": s}) + "\n" for s in range(5)))
    truncate_jsonl(path, 2)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [0, 1, 2]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("online") == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert wandb_mode("auto") == "online"


def test_eval_outcomes_are_kept_per_problem_and_cut_back_on_resume(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from orchestrator.evaluation import AnswerQuality
    from orchestrator.metrics import MetricsSink

    quality = AnswerQuality(
        correct=[True, False, False, True], lengths=[10, 20, 30, 40], clipped=[False, False, True, False]
    )
    assert quality.metrics() == {"accuracy": 0.5, "len_mean": 25.0, "clip_rate": 0.25, "problems": 4.0}
    monkeypatch.setenv("WANDB_MODE", "disabled")
    off = SimpleNamespace(mode="disabled")
    sink = MetricsSink(tmp_path, wandb_config=off, run_config={}, name="t")
    for step in (0, 10, 20):
        sink.log_eval(step, step * 1.5, quality.correct)
    records = [json.loads(line) for line in (tmp_path / "evals.jsonl").read_text().splitlines()]
    assert records[1] == {"step": 10, "train_elapsed_s": 15.0, "correct": "1001"}
    MetricsSink(tmp_path, wandb_config=off, run_config={}, name="t", resume_step=10)  # resumed at step 10
    assert [json.loads(line)["step"] for line in (tmp_path / "evals.jsonl").read_text().splitlines()] == [0, 10]
    MetricsSink(tmp_path, wandb_config=off, run_config={}, name="t")  # a fresh run starts empty
    assert not (tmp_path / "evals.jsonl").exists()


def test_eval_accuracy_by_source_by_hand():
    from orchestrator.evaluation import MAX_SOURCES, accuracy_by_source, source_of
    from prompts.problems import Problem

    correct = [True, False, True, True, False]
    sources = ["openai/gsm8k", "openai/gsm8k", "geo3k", None, "geo3k"]
    # gsm8k 1 of 2, geo3k 1 of 2; the problem without a source is left out
    assert accuracy_by_source(correct, sources) == {"geo3k": 0.5, "openai/gsm8k": 0.5}
    assert accuracy_by_source(correct, ["x"] * 5) == {}  # one source: eval/accuracy says it all
    many = [f"s{i}" for i in range(MAX_SOURCES + 1)]
    assert accuracy_by_source([True] * len(many), many) == {}
    verl = Problem(id="a", question="q", answer="1", meta={"data_source": "openai/gsm8k", "family": "x"})
    synthetic = Problem(id="b", question="q", answer="1", meta={"family": "rectangle", "level": 0})
    assert (source_of(verl), source_of(synthetic), source_of(Problem(id="c", question="q", answer="1"))) == (
        "openai/gsm8k",
        "rectangle",
        None,
    )


@pytest.mark.slow  # wandb starts its service process
def test_two_open_sinks_log_into_two_wandb_runs(tmp_path, monkeypatch):
    """An interleaved compare holds both arms' sinks open in one process: each arm must get its
    own wandb run (wandb's default reinit hands the second init the first's run)."""
    from types import SimpleNamespace

    from orchestrator.metrics import MetricsSink

    monkeypatch.delenv("WANDB_MODE", raising=False)
    offline = SimpleNamespace(mode="offline", project="p", group=None, tags=[])
    sinks = {}
    for arm in ("grpo", "bppo"):
        (tmp_path / arm).mkdir()
        sinks[arm] = MetricsSink(tmp_path / arm, wandb_config=offline, run_config={"arm": arm}, name=arm)
    try:
        assert sinks["grpo"].run_id != sinks["bppo"].run_id
        assert sinks["grpo"].run.name == "grpo" and sinks["bppo"].run.name == "bppo"
        sinks["grpo"].log(1, {"x": 1.0})
        sinks["bppo"].log(1, {"x": 2.0})
    finally:
        for sink in sinks.values():
            sink.close()
    for arm in ("grpo", "bppo"):
        assert len(list((tmp_path / arm / "wandb").glob("offline-run-*"))) == 1


def test_pass_at_k_by_hand():
    from orchestrator.evaluation import pass_at_k

    # 3 problems x 4 samples: right 2, 0 and 1 times -> pass@4 = 2/3 (problems 1 and 3),
    # mean@4 = 3/12
    correct = [[True, False, True, False], [False] * 4, [False, False, False, True]]
    assert pass_at_k(correct) == {"pass@4": pytest.approx(2 / 3), "mean@4": 0.25}
    assert pass_at_k([[True], [False]]) == {"pass@1": 0.5, "mean@1": 0.5}  # k = 1: both are accuracy
    with pytest.raises(ValueError, match=r"sizes \[1, 2\]"):
        pass_at_k([[True], [True, False]])
    with pytest.raises(ValueError, match=r"sizes \[0\]"):
        pass_at_k([[]])
