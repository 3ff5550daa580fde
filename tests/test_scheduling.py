"""Prompt scheduling: per-prompt statistics, the four schedulers, their configs and resume.

Every number below is worked out by hand in the comments; draws that depend on a random
generator are checked by their frequency against the weights, with binomial tolerances."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from learner.batch import RolloutGroups
from orchestrator.config_io import ConfigError, load_config
from prompts.scheduling import build_scheduler
from prompts.scheduling.config import CurriculumSched, SkipSched, TargetSched, UniformSched
from prompts.scheduling.schedulers import (
    CurriculumScheduler,
    Scheduler,
    SkipScheduler,
    TargetScheduler,
    complexity_scores,
    plateaued,
    score_bins,
    stage_pools,
)
from prompts.scheduling.stats import PromptStats, pool_indices
from prompts.stream import PromptStream

# ---- statistics ----------------------------------------------------------------------------


def test_estimates_shrink_each_prompt_towards_its_pools_recent_pass_rate():
    stats = PromptStats([0, 0, 1], prior_visits=1.0, pool_decay=0.9)
    assert stats.estimates().tolist() == [0.5, 0.5, 0.5]  # nothing seen: 0.5 everywhere
    stats.record(0, 1.0, step=1)  # pool 0: 1.0; run: 1.0
    stats.record(2, 0.0, step=1)  # pool 1: 0.0; run: 0.9 * 1.0 + 0.1 * 0.0 = 0.9
    stats.record(0, 0.5, step=2)  # pool 0: 0.9 * 1.0 + 0.1 * 0.5 = 0.95; run: 0.9 * 0.9 + 0.1 * 0.5 = 0.86
    assert stats.pool_rate == pytest.approx([0.95, 0.0])
    assert stats.overall_rate == pytest.approx(0.86)
    # prompt 0: (1 * 0.95 + 1.0 + 0.5) / (1 + 2) = 0.81667; prompt 1 (unseen): its pool, 0.95;
    # prompt 2: (1 * 0.0 + 0.0) / 2 = 0.0
    assert stats.estimates().tolist() == pytest.approx([2.45 / 3, 0.95, 0.0])
    assert stats.visits(0) == 2 and stats.last_step == [2, -1, 1]
    assert stats.seen_fraction() == pytest.approx(2 / 3) and stats.total_visits() == 3

    short = PromptStats([0, 0, 1], memory=1)  # only the last visit counts: (0.95 + 0.5) / 2 = 0.725
    for index, rate, step in ((0, 1.0, 1), (2, 0.0, 1), (0, 0.5, 2)):
        short.record(index, rate, step)
    assert short.estimates()[0] == pytest.approx(0.725)


def test_a_pool_without_groups_takes_the_runs_rate():
    stats = PromptStats([0, 1], pool_decay=0.5)
    stats.record(0, 0.25, step=1)
    assert stats.estimates().tolist() == [pytest.approx((0.25 + 0.25) / 2), 0.25]


def test_pools_are_numbered_by_first_appearance_and_a_missing_key_is_named():
    metas = [
        {"family": "a", "level": 1},
        {"family": "b", "level": 1},
        {"family": "a", "level": 1},
        {"family": "a", "level": 2},
    ]
    assert pool_indices(metas, ["family", "level"]) == [0, 1, 0, 2]
    assert pool_indices(metas, ["level"]) == [0, 0, 0, 1]
    assert pool_indices(metas, []) == [0, 0, 0, 0]
    with pytest.raises(ValueError, match=r"training prompt 1 has no meta key 'level' \(its meta keys: family\)"):
        pool_indices([{"family": "a", "level": 1}, {"family": "b"}], ["family", "level"])


def test_pass_rate_counts_finished_completions_only():
    groups = RolloutGroups(
        prompt_ids=[[1]] * 3,
        response_ids=[[[2]] * 4] * 3,
        rewards=torch.zeros(3, 4),
        correct=torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]).bool(),
        finished=torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]).bool(),
    )
    # 2 of 4; 1 of the 2 finished; none finished: no rate
    assert groups.pass_rates() == [0.5, 0.5, None]


def test_state_round_trips_through_json_and_rejects_another_training_set():
    stats = PromptStats([0, 1, 0])
    stats.record(1, 0.375, step=3)
    restored = PromptStats([0, 1, 0])
    restored.load_state(json.loads(json.dumps(stats.state())))
    assert restored.state() == stats.state()
    assert restored.estimates().tolist() == stats.estimates().tolist()
    with pytest.raises(ValueError, match="cover 3 prompts in 2 pools, this run has 4 in 2"):
        PromptStats([0, 1, 0, 0]).load_state(stats.state())


# ---- uniform -------------------------------------------------------------------------------


def test_uniform_is_the_seeded_epoch_order():
    scheduler = Scheduler(PromptStats([0] * 5), seed=7)
    reference = PromptStream(5, 7)
    assert scheduler.take(3, step=1, round_=0) + scheduler.take(4, step=2, round_=0) == reference.take(7)
    assert scheduler.epoch == 1.0


# ---- skip (GRESO) --------------------------------------------------------------------------


def _skip(num_prompts=10, **settings) -> SkipScheduler:
    return SkipScheduler(PromptStats([0] * num_prompts, pool_decay=0.5), 0, SkipSched(**settings))


def test_zero_variance_odds_from_the_record_or_the_pool():
    scheduler = _skip(window=2, use_pool=True)
    assert scheduler.zero_variance_odds(5) == {"easy": 0.0, "hard": 0.0}  # nothing seen yet: never skip
    # the pool's groups, in order: all correct, all correct, mixed, all wrong, all wrong
    for index, rate, step in ((0, 1.0, 1), (0, 1.0, 2), (1, 0.5, 1), (1, 0.0, 2), (2, 0.0, 1)):
        scheduler.stats.record(index, rate, step)
    assert scheduler.zero_variance_odds(0) == {"easy": 1.0, "hard": 0.0}  # both visits all correct
    assert scheduler.zero_variance_odds(1) == {"easy": 0.0, "hard": 0.0}  # mixed record
    assert scheduler.zero_variance_odds(2) == {"easy": 0.0, "hard": 0.0}  # 1 visit < window: no call
    # never seen: the pool's moving shares (decay 0.5): easy 1, 1, 0.5, 0.25, 0.125;
    # hard 0, 0, 0, 0.5, 0.75
    assert scheduler.zero_variance_odds(5) == pytest.approx({"easy": 0.125, "hard": 0.75})
    assert _skip(use_pool=False).zero_variance_odds(5) == {"easy": 0.0, "hard": 0.0}  # GRESO exactly


def test_skip_passes_over_prompts_marked_easy_or_hard_before_generating():
    scheduler = _skip(use_pool=False, explore_init=0.001, min_explore=0.001)
    order = PromptStream(10, 0).take(10)
    marked = set(order[:4])  # the first four in the order: two all correct, two all wrong
    for n, index in enumerate(order[:4]):
        scheduler.stats.record(index, 1.0 if n % 2 else 0.0, step=1)
    chosen = scheduler.take(5, step=2, round_=0)
    assert chosen == order[4:9]  # the marked ones are skipped (each kept with probability 0.001)
    assert not marked & set(chosen)
    assert scheduler.end_step(2)["sched/skipped"] == 4.0


def test_the_exploration_floor_keeps_a_marked_prompt_in_play():
    """Every prompt all correct at its last visit, explore pinned at 0.2: over 2,000 candidates
    each is kept with probability 0.2 (binomial SE 0.009; the bound is 4 SE)."""
    scheduler = _skip(num_prompts=100, use_pool=False, explore_init=0.2, min_explore=0.2, explore_step=1e-9)
    for index in range(100):
        scheduler.stats.record(index, 1.0, step=0)
    taken = sum(len(scheduler.take(1, step=s, round_=0)) for s in range(1, 401))
    skipped = scheduler.end_step(400)["sched/skipped"]
    assert taken == 400
    assert taken / (taken + skipped) == pytest.approx(0.2, abs=0.036)


def test_a_take_never_loops_forever_when_every_prompt_is_skippable():
    scheduler = _skip(num_prompts=6, use_pool=False, explore_init=0.001, min_explore=0.001)
    for index in range(6):
        scheduler.stats.record(index, 0.0, step=0)
    assert len(set(scheduler.take(4, step=1, round_=0))) == 4


def test_the_controller_moves_each_exploration_probability_towards_its_target():
    scheduler = _skip(explore_init=0.5, min_explore=0.05, explore_step=0.1, target_easy=0.2, target_hard=0.2)
    # 4 groups: 2 all correct (easy share 0.5 > 0.2: explore easy less), none all wrong (0 <= 0.2: more)
    scheduler.observe([0, 1, 2, 3], [1.0, 1.0, 0.5, 0.25], step=1)
    metrics = scheduler.end_step(1)
    assert metrics["sched/explore_easy"] == pytest.approx(0.4)
    assert metrics["sched/explore_hard"] == pytest.approx(0.6)
    for step in range(2, 12):  # bounded: easy stops at the floor, hard at 1
        scheduler.observe([0, 1], [1.0, 1.0], step=step)
        scheduler.end_step(step)
    assert scheduler.explore == {"easy": 0.05, "hard": 1.0}


# ---- target --------------------------------------------------------------------------------


def _target(pass_rates, **settings) -> TargetScheduler:
    stats = PromptStats(list(range(len(pass_rates))), prior_visits=1e-9)  # an estimate = its own last rate
    for index, rate in enumerate(pass_rates):
        stats.record(index, rate, step=-100)
    return TargetScheduler(stats, 0, TargetSched(**settings))


def test_target_weights_fall_off_around_the_target_pass_rate():
    scheduler = _target([0.5, 0.2, 0.95], target=0.5, width=0.15, min_weight=0.02)
    # exp(-0.5 * 0^2) = 1; exp(-0.5 * 2^2) = 0.13534; exp(-0.5 * 3^2) = 0.01111 -> the floor 0.02
    assert scheduler.weights().tolist() == pytest.approx([1.0, math.exp(-2.0), 0.02], rel=1e-6)


def test_target_draws_in_proportion_to_the_weights():
    """One prompt per step from three (no cooldown): frequencies 1 / 1.15534 = 0.8655,
    0.13534 / 1.15534 = 0.1171, 0.02 / 1.15534 = 0.0173 (SE at 4,000 draws <= 0.0054)."""
    scheduler = _target([0.5, 0.2, 0.95], target=0.5, width=0.15, min_weight=0.02, cooldown_steps=0)
    counts = [0, 0, 0]
    for step in range(4000):
        counts[scheduler.take(1, step=step, round_=0)[0]] += 1
        scheduler.end_step(step)
    total = 1.0 + math.exp(-2.0) + 0.02
    assert [c / 4000 for c in counts] == pytest.approx([1 / total, math.exp(-2.0) / total, 0.02 / total], abs=0.02)


def test_target_never_repeats_a_prompt_within_a_step_or_its_cooldown():
    scheduler = _target([0.5] * 10, cooldown_steps=2)
    first = scheduler.take(3, step=1, round_=0) + scheduler.take(3, step=1, round_=1)
    assert len(set(first)) == 6  # two rounds of one step: six different prompts
    scheduler.observe(first, [0.5] * 6, step=1)
    scheduler.end_step(1)
    second = scheduler.take(4, step=2, round_=0)
    assert set(second) == set(range(10)) - set(first)  # the only four not drawn within 2 steps
    scheduler.observe(second, [0.5] * 4, step=2)
    scheduler.end_step(2)
    # everything was drawn within 2 steps: a small set lets cooled-down prompts back in
    assert len(set(scheduler.take(5, step=3, round_=0))) == 5
    with pytest.raises(ValueError, match="11 prompts wanted this round, only 5 of the 10"):
        scheduler.take(11, step=3, round_=1)


# ---- curriculum ----------------------------------------------------------------------------


def test_stage_pools_are_quantile_bins_that_keep_ties_together():
    # sorted scores 1 1 2 2 3 3: bins floor(3 * lower / 6) = 0, 0, 1, 1, 2, 2
    assert stage_pools([1, 2, 1, 2, 3, 3], 3) == [[0, 2], [1, 3], [4, 5]]
    assert stage_pools([1, 2, 1, 2, 3, 3], 3, cumulative=True) == [[0, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    # three tied at the bottom, one above: floor(3 * 0 / 4) = 0 and floor(3 * 3 / 4) = 2: bin 1 is empty
    assert stage_pools([1, 1, 1, 2], 3) == [[0, 1, 2], [3]]
    assert stage_pools([5, 4], 1) == [[0, 1]]


def test_plateau_means_the_recent_mean_stopped_beating_the_best():
    # windows of 2: 0.15 0.25 0.3 0.3 0.3; best before the last two 0.3; last two 0.3 < 0.3 + 0.02
    assert plateaued([0.1, 0.2, 0.3, 0.3, 0.3, 0.3], patience=2, min_delta=0.02)
    # windows 0.15 0.25 0.35: 0.35 >= 0.15 + 0.02 -> still improving
    assert not plateaued([0.1, 0.2, 0.3, 0.4], patience=2, min_delta=0.02)
    assert not plateaued([0.3, 0.3, 0.3], patience=2, min_delta=0.02)  # fewer than 2 * patience steps


def _curriculum(scores, **settings) -> CurriculumScheduler:
    return CurriculumScheduler(PromptStats([0] * len(scores)), 0, CurriculumSched(**settings), scores)


def test_curriculum_trains_each_stage_in_turn_for_stage_steps():
    scheduler = _curriculum([1, 2, 1, 2, 1, 2], stages=2, stage_steps=2)
    seen = []
    for step in range(1, 6):
        chosen = scheduler.take(2, step=step, round_=0)
        scheduler.observe(chosen, [0.5, 0.5], step)
        seen.append((scheduler.end_step(step)["sched/stage"], set(chosen)))
    assert [stage for stage, _ in seen] == [0, 0, 1, 1, 1]  # the last stage runs to the end
    assert all(chosen <= {0, 2, 4} for stage, chosen in seen if stage == 0)
    assert all(chosen <= {1, 3, 5} for stage, chosen in seen if stage == 1)


def test_curriculum_moves_on_early_when_the_stage_plateaus():
    scheduler = _curriculum([1, 2, 1, 2], stages=2, stage_steps=100, advance="plateau", patience=2, min_delta=0.02)
    for step, rate in enumerate([0.2, 0.4, 0.4, 0.4], start=1):
        scheduler.observe(scheduler.take(1, step=step, round_=0), [rate], step)
        stage = scheduler.end_step(step)["sched/stage"]
    # windows 0.3 0.4 0.4: best before the last two 0.3, last two 0.4 >= 0.32 -> not yet
    assert stage == 0 and scheduler.stage == 0
    scheduler.observe(scheduler.take(1, step=5, round_=0), [0.4], 5)
    scheduler.end_step(5)  # windows 0.3 0.4 0.4 0.4: best before 0.4, last two 0.4 < 0.42 -> advance
    assert scheduler.stage == 1


def test_complexity_from_meta_names_the_bad_problem():
    problems = [SimpleNamespace(id="a", meta={"level": 2}), SimpleNamespace(id="b", meta={"level": "hard"})]
    assert complexity_scores("meta:level", problems[:1]) == [2.0]
    with pytest.raises(ValueError, match=r"training problem 1 \(b\) has meta\['level'\]='hard', not a number"):
        complexity_scores("meta:level", problems)


def test_score_bins_cut_each_pool_into_quantile_bins():
    # pool 0 = prompts 0-3, scores 3 1 2 2: sorted 1 (rank 0), 2, 2 (ranks 1-2, one below them),
    # 3 (three below): bins floor(2 * below / 4) = 0, 0, 0, 1 -> prompt 0 alone in bin 1.
    # pool 1 = prompts 4-5, scores 5 4: 4 -> bin 0, 5 (one below) -> floor(2 * 1 / 2) = 1.
    # (pool, bin) by first appearance: (0,1)=0 (0,0)=1 (1,1)=2 (1,0)=3
    assert score_bins([0, 0, 0, 0, 1, 1], [3, 1, 2, 2, 5, 4], 2) == [0, 1, 1, 1, 2, 3]
    assert score_bins([0, 0, 1], [1, 2, 3], 1) == [0, 0, 1]  # one bin: the pools unchanged


def test_pooled_schedulers_read_a_score_column_and_bin_each_pool(tmp_path):
    problems = [SimpleNamespace(id=f"p{i}", meta={"family": "ab"[i % 2]}) for i in range(6)]
    # perplexities: family a (p0 p2 p4) 1.5 1.1 1.9, family b (p1 p3 p5) 1.2 1.0 1.3
    rows = [{"id": f"p{i}", "score": 0.5, "perplexity": ppl} for i, ppl in enumerate([1.5, 1.2, 1.1, 1.0, 1.9, 1.3])]
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps(row) + "\n" for row in rows))
    sched = SkipSched(pool_by=["family"], pool_scores=str(scores), score_field="perplexity", pool_score_bins=2)
    # family a: 1.1 (0 below) -> bin 0, 1.5 (1 below) -> floor(2/3) = 0, 1.9 (2 below) -> floor(4/3) = 1;
    # family b: 1.0 -> 0, 1.2 -> 0, 1.3 -> 1. Pairs in prompt order: (a,0) (b,0) (a,0) (b,0) (a,1) (b,1)
    assert build_scheduler(sched, problems, seed=0).stats.pool_of.tolist() == [0, 1, 0, 1, 2, 3]
    assert complexity_scores(str(scores), problems, field="perplexity")[:2] == [1.5, 1.2]
    with pytest.raises(
        ValueError, match=r"row 1: 'ttr' must be a finite number, got None \(its columns: id, score, perplexity\)"
    ):
        build_scheduler(SkipSched(pool_scores=str(scores), score_field="ttr"), problems, seed=0)
    with pytest.raises(
        ValueError, match=r"sched.pool_scores=meta:level: training problem 0 \(p0\) has meta\['level'\]=None"
    ):
        build_scheduler(TargetSched(pool_scores="meta:level"), problems, seed=0)


# ---- resume and config ---------------------------------------------------------------------


def _outcome(index: int, step: int) -> float:
    return ((index * 7 + step * 3) % 5) / 4  # 0, 0.25, ..., 1: a fixed, varied record


def _run(scheduler, steps) -> list[list[int]]:
    taken = []
    for step in steps:
        chosen = scheduler.take(4, step, 0) + scheduler.take(2, step, 1)
        scheduler.observe(chosen, [_outcome(i, step) for i in chosen], step)
        scheduler.end_step(step)
        taken.append(chosen)
    return taken


@pytest.mark.parametrize(
    "sched",
    [
        UniformSched(),
        SkipSched(pool_by=["family"]),
        TargetSched(pool_by=["family"], cooldown_steps=2),
        CurriculumSched(stages=3, stage_steps=2),
    ],
)
def test_a_restored_scheduler_continues_exactly_as_the_uninterrupted_one(sched):
    problems = [SimpleNamespace(id=f"p{i}", meta={"family": "ab"[i % 2], "level": 1 + i % 3}) for i in range(30)]
    uninterrupted = build_scheduler(sched, problems, seed=3)
    _run(uninterrupted, range(1, 5))
    saved = json.loads(json.dumps(uninterrupted.state()))  # as the checkpoint writes it
    resumed = build_scheduler(sched, problems, seed=3)
    resumed.load_state(saved)
    assert resumed.state() == uninterrupted.state()
    assert _run(resumed, range(5, 9)) == _run(uninterrupted, range(5, 9))
    assert json.dumps(resumed.state()) == json.dumps(uninterrupted.state())


def test_config_selects_a_scheduler_by_kind_and_names_bad_keys():
    assert isinstance(load_config([], []).sched, UniformSched)
    config = load_config([], ["sched.kind=target", "sched.target=0.4", "sched.pool_by=[family,level]"])
    assert isinstance(config.sched, TargetSched) and config.sched.pool_by == ["family", "level"]
    with pytest.raises(ConfigError, match="sched.uniform.target: unknown key|sched.target: unknown key"):
        load_config([], ["sched.target=0.4"])  # no kind: uniform, which has no target
    with pytest.raises(ConfigError, match="sched.min_explore=0.6 is above sched.explore_init=0.5"):
        load_config([], ["sched.kind=skip", "sched.min_explore=0.6"])
    with pytest.raises(ConfigError, match="sched"):
        load_config([], ["sched.kind=greso"])
