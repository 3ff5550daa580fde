"""The training step's orchestration (``Trainer.train_step``: rounds, refills, what is kept, what
reaches the learner and the engines) in the fast tier: the actors are in-process stand-ins with the
same methods, so the decisions are tested without Ray; the real actors run in test_train_e2e."""

from pathlib import Path

import pytest
import torch

from orchestrator.config_io import load_config
from rewards.verify import RewardResult
from rollout.types import Sample

ROOT = Path(__file__).resolve().parents[1]
G = 4


class ScriptedFleet:
    """Engines that answer each prompt's G samples right or wrong as ``script`` says, one list of
    per-group patterns per generate call."""

    def __init__(self, answers: dict[tuple[int, ...], str], script: list[list[str]]) -> None:
        self.answers, self.script = answers, list(script)
        self.policy_version, self.restarts, self.calls, self.logprobs_asked = 0, 0, [], []

    def generate(self, prompts, sampling, early_stop=None, images=None):
        patterns = self.script.pop(0)
        assert len(patterns) == len(prompts) and sampling.n == G and early_stop is None
        assert images is None  # text prompts: no images go to the engines
        self.calls.append((len(prompts), sampling.seed))
        self.logprobs_asked.append(sampling.logprobs)
        samples = []
        for index, (prompt, pattern) in enumerate(zip(prompts, patterns)):
            gold = self.answers[tuple(prompt)]
            for k, mark in enumerate(pattern):
                # a right answer, or a wrong one that is longer by k tokens (pairs differ in length)
                text = f"\\boxed{{{gold}}}" if mark == "+" else f"\\boxed{{wrong{'!' * k}}}"
                samples.append(
                    Sample(
                        prompt_index=index,
                        prompt_ids=list(prompt),
                        response_ids=[7] * (3 + k),
                        response_logprobs=[-1.0] * (3 + k) if sampling.logprobs else None,
                        finish_reason="stop",
                        policy_version=self.policy_version,
                        text=text,
                    )
                )
        return samples


class ExactRewards:
    workers = ()

    def score(self, texts, answers):
        results = [
            RewardResult(text == f"\\boxed{{{gold}}}", float(text == f"\\boxed{{{gold}}}"), True, text, "correct")
            for text, gold in zip(texts, answers)
        ]
        return results, {}


class RecordingLearner:
    def __init__(self) -> None:
        self.batches = []

    def optimizer_steps(self, batch) -> int:
        return 1

    def logprobs(self, batch, which="policy"):
        return torch.where(batch.loss_mask != 0, -1.0, 0.0)  # what the engine reported: parity 0

    def train(self, batch):
        self.batches.append(batch)
        return {"learner/skipped_nonfinite": 0.0, "loss/pg": 0.0}


class CountingSync:
    def __init__(self, fleet) -> None:
        self.fleet, self.pushes = fleet, 0

    def push(self):
        self.pushes += 1
        self.fleet.policy_version += 1
        return self.fleet.policy_version


def _trainer(tmp_path, tiny_model, script, **overrides):
    from orchestrator.loop import Trainer

    settings = {
        "model.path": tiny_model,
        "trainer.run_dir": str(tmp_path),
        "rollout.n": G,
        "trainer.prompts_per_step": 2,
        "data.source.num_train": 50,
        "data.source.num_test": 10,
        **overrides,
    }
    trainer = Trainer(load_config([str(ROOT / "configs/tiny_cpu.yaml")], [f"{k}={v}" for k, v in settings.items()]))
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    answers = {tuple(ids): p.answer for ids, p in zip(trainer.train_prompts, trainer.train_set)}
    trainer.fleet = ScriptedFleet(answers, script)
    trainer.rewards, trainer.learner = ExactRewards(), RecordingLearner()
    trainer.weight_sync = CountingSync(trainer.fleet)
    return trainer


def test_a_refill_round_completes_the_batch_and_the_surplus_group_is_discarded(tmp_path, tiny_model):
    """Round 0: one group all right (no pair), one mixed: 1 of 2 pairs. Round 1 (a refill): two
    mixed groups; the first completes the batch, the second is discarded (DAPO's rule)."""
    script = [["++++", "+-+-"], ["-+--", "++-+"]]
    trainer = _trainer(tmp_path, tiny_model, script, **{"algo.refill_rounds": 1})
    metrics = trainer.train_step(1)
    assert trainer.fleet.calls == [(2, trainer._seed(1, 0)), (2, trainer._seed(1, 1))]  # a new seed per round
    assert metrics["rollout/rounds"] == 2.0 and metrics["bppo/pair_rate"] == 0.5
    assert (metrics["rollout/groups"], metrics["rollout/useful_groups"], metrics["rollout/sampled_groups"]) == (2, 3, 4)
    # the learner got the two pairs: shortest right + shortest wrong of each kept group
    (batch,) = trainer.learner.batches
    assert batch.input_ids.shape[0] == 4 and batch.group_index.tolist() == [0, 0, 1, 1]
    assert (batch.advantages[0::2] > 0).all() and (batch.advantages[1::2] < 0).all()
    assert trainer.weight_sync.pushes == 1 and metrics["sync/policy_version"] == 1.0
    assert metrics["sync/logprob_max_diff"] == 0.0
    import json

    (record,) = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert record["trained"] == [False, True, True, False]
    assert record["rewards"][0] == [1.0] * G and record["rewards"][3] == [1.0, 1.0, 0.0, 1.0]


def test_a_step_without_any_pair_skips_the_learner_and_keeps_the_weights(tmp_path, tiny_model):
    trainer = _trainer(tmp_path, tiny_model, [["++++", "----"]])
    metrics = trainer.train_step(1)
    assert metrics["learner/skipped_empty"] == 1.0 and metrics["rollout/groups"] == 0.0
    assert trainer.learner.batches == [] and trainer.weight_sync.pushes == 0
    assert metrics["sync/policy_version"] == 0.0  # nothing trained: the engines keep version 0


@pytest.mark.parametrize("old_logprobs, asked", [("learner", [True, False, True]), ("engine", [True, True, True])])
def test_the_engine_returns_log_probs_only_on_steps_that_read_them(tmp_path, tiny_model, old_logprobs, asked):
    """trainer.parity_every 2: steps 1 and 3 check parity, step 2 reads no engine log-prob (the
    learner's own forward is the old policy) unless learner.old_logprobs is engine."""
    settings = {"trainer.parity_every": 2, "learner.old_logprobs": old_logprobs}
    trainer = _trainer(tmp_path, tiny_model, [["+-++", "+---"]] * 3, **settings)
    metrics = [trainer.train_step(step) for step in (1, 2, 3)]
    assert trainer.fleet.logprobs_asked == asked
    assert ["sync/logprob_max_diff" in m for m in metrics] == [True, False, True]
    assert metrics[0]["sync/logprob_max_diff"] == 0.0 and metrics[2]["sync/logprob_max_diff"] == 0.0
    # what the loss saw as the old policy: the engine's -1.0 per token, or the update's own forward
    second = trainer.learner.batches[1]
    if old_logprobs == "engine":
        assert (second.old_logprobs[second.loss_mask != 0] == -1.0).all()
    else:
        assert second.old_logprobs is None


@pytest.mark.parametrize("refill_rounds, rounds", [(0, 1), (2, 3)])
def test_refills_stop_at_the_configured_rounds(tmp_path, tiny_model, refill_rounds, rounds):
    script = [["++++", "+-++"]] * rounds  # one pair per round: the batch of 2 fills in round 2
    trainer = _trainer(tmp_path, tiny_model, script, **{"algo.refill_rounds": refill_rounds})
    metrics = trainer.train_step(1)
    assert metrics["rollout/rounds"] == float(min(rounds, 2)) and len(trainer.fleet.calls) == min(rounds, 2)
    assert metrics["rollout/groups"] == float(min(rounds, 2))


def _async_trainer(tmp_path, tiny_model, script, **overrides):
    """The scripted trainer in trainer.mode async: the next batch generated in the background thread."""
    from orchestrator.rollout_ahead import RolloutAhead

    trainer = _trainer(tmp_path, tiny_model, script, **{"trainer.mode": "async", "trainer.steps": 3, **overrides})
    trainer.ahead = RolloutAhead(trainer.collect, timeout_s=60)
    return trainer


def test_async_steps_train_each_batch_one_version_behind_and_correct_for_it(tmp_path, tiny_model):
    """Step 1 generates inline (nothing was generated ahead) and sets step 2's batch going before it
    trains; the push waits for it. So step 2's samples carry version 0 and train on version 1:
    staleness 1, the engine's log-probs go to the loss as the behaviour policy's, no parity
    check (the weights differ by an update, not by rounding). Step 3 is the last: nothing more
    is generated."""
    script = [["+-++", "-+--"]] * 3
    trainer = _async_trainer(tmp_path, tiny_model, script)
    try:
        first = trainer.train_step(1)
        # both calls happened by the end of step 1 (step 2's before the push): versions 0 and 0
        assert [seed for _, seed in trainer.fleet.calls] == [trainer._seed(1, 0), trainer._seed(2, 0)]
        assert trainer.weight_sync.pushes == 1
        assert (first["rollout/staleness"], first["rollout/staleness_max"]) == (0.0, 0.0)
        assert first["sync/logprob_max_diff"] == 0.0  # on-policy: the parity check runs
        assert trainer.learner.batches[0].behavior_logprobs is None
        second = trainer.train_step(2)
        assert (second["rollout/staleness"], second["rollout/staleness_max"]) == (1.0, 1.0)
        assert "sync/logprob_max_diff" not in second
        behind = trainer.learner.batches[1]
        torch.testing.assert_close(behind.behavior_logprobs, torch.where(behind.loss_mask != 0, -1.0, 0.0))
        assert second["rollout/stale_groups_dropped"] == 0.0 and second["time/wait_generation"] >= 0
        third = trainer.train_step(3)
        assert len(trainer.fleet.calls) == 3 and third["rollout/staleness"] == 1.0  # no step 4 generated
        assert trainer.ahead.finished() is None
    finally:
        trainer.ahead.close()


def test_async_drops_groups_older_than_the_bound_and_says_so(tmp_path, tiny_model):
    """A push that moves the engines two versions (as catching up a restarted engine could) leaves
    step 2's batch 2 versions behind: with max_staleness 1 its groups are not trained on."""
    trainer = _async_trainer(tmp_path, tiny_model, [["+-++", "-+--"]] * 2, **{"trainer.steps": 2})
    original = trainer.weight_sync.push

    def push_twice():
        original()
        return original()

    trainer.weight_sync.push = push_twice
    try:
        trainer.train_step(1)
        second = trainer.train_step(2)
    finally:
        trainer.ahead.close()
    assert second["rollout/staleness_max"] == 2.0 and second["rollout/stale_groups_dropped"] == 2.0
    assert second["learner/skipped_empty"] == 1.0 and second["rollout/groups"] == 0.0
    assert len(trainer.learner.batches) == 1  # step 1's only
    import json

    records = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert [r["trained"] for r in records] == [[True, True], [False, False]]


def test_a_batch_generated_ahead_survives_a_checkpoint_exactly(tmp_path, tiny_model):
    import json

    from orchestrator.rollout_ahead import Rollout

    trainer = _async_trainer(tmp_path, tiny_model, [["+-++", "-+--"]] * 2)
    try:
        trainer.train_step(1)
        ahead = trainer.ahead.finished()
    finally:
        trainer.ahead.close()
    assert ahead.step == 2 and [trained for _, _, trained in ahead.sampled] == [True, True]
    restored = Rollout.from_json(json.loads(json.dumps(ahead.to_json())))
    assert restored == ahead  # samples, rewards, metrics, phase times and pass-rate estimates, exactly
    assert len(ahead.pass_rate_priors) == 2 and all(0.0 <= p <= 1.0 for p in ahead.pass_rate_priors)
    assert ahead.kept_priors() == ahead.pass_rate_priors  # both groups trained
