"""learner.advantages and learner.selection by hand."""

import math

import pytest
import torch

from learner.advantages import group_advantages, informative_groups
from learner.selection import divergence_points, prefix_mask, select_pairs, truncation_length


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    # row 0: mean 0.5, Bessel std sqrt(4 * 0.25 / 3) = 0.5774 -> +-0.8660
    # row 1: mean 0.25, std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5 -> 1.5, -0.5
    # row 2: all equal -> 0 (std 0 + eps)
    s0 = math.sqrt(1 / 3)
    expected = torch.tensor(
        [
            [0.5 / (s0 + 1e-6), -0.5 / (s0 + 1e-6), -0.5 / (s0 + 1e-6), 0.5 / (s0 + 1e-6)],
            [0.75 / (0.5 + 1e-6), -0.25 / (0.5 + 1e-6), -0.25 / (0.5 + 1e-6), -0.25 / (0.5 + 1e-6)],
            [0.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(group_advantages(rewards), expected)
    # Dr.GRPO: r - mean only
    torch.testing.assert_close(
        group_advantages(rewards, norm_by_std=False),
        torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.75, -0.25, -0.25, -0.25], [0.0, 0.0, 0.0, 0.0]]),
    )


def test_group_advantages_rejects_single_sample_groups_and_bad_shapes():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.ones(3, 1))
    assert group_advantages(torch.ones(3, 1), norm_by_std=False).eq(0).all()
    with pytest.raises(ValueError, match="num_groups, G"):
        group_advantages(torch.ones(4))


def test_group_advantages_over_the_valid_completions_only():
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 9.0, 9.0]])
    valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
    # row 0 over (1, 0, 1): mean 2/3, centered (1/3, -2/3, 1/3), Bessel var (1/9 + 4/9 + 1/9) / 2 = 1/3
    # row 1 over (0, 1): mean 1/2, centered (-1/2, 1/2), var (1/4 + 1/4) / 1 = 1/2; the 9s are ignored
    s0, s1 = math.sqrt(1 / 3) + 1e-6, math.sqrt(1 / 2) + 1e-6
    expected = torch.tensor([[(1 / 3) / s0, (-2 / 3) / s0, (1 / 3) / s0, 0.0], [-0.5 / s1, 0.5 / s1, 0.0, 0.0]])
    torch.testing.assert_close(group_advantages(rewards, valid=valid), expected)
    torch.testing.assert_close(
        group_advantages(rewards, norm_by_std=False, valid=valid),
        torch.tensor([[1 / 3, -2 / 3, 1 / 3, 0.0], [-0.5, 0.5, 0.0, 0.0]]),
    )
    # all valid == no mask
    torch.testing.assert_close(
        group_advantages(rewards, valid=torch.ones(2, 4, dtype=torch.bool)), group_advantages(rewards)
    )
    with pytest.raises(ValueError, match="group 1 has 1"):
        group_advantages(rewards, valid=torch.tensor([[True, True, False, False], [True, False, False, False]]))
    with pytest.raises(ValueError, match="shape of rewards"):
        group_advantages(rewards, valid=torch.ones(2, 3, dtype=torch.bool))


def test_informative_groups_is_dapos_filter():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.3]])
    assert informative_groups(rewards).tolist() == [False, False, True, True]


def test_select_pairs_shortest_longest_and_ties():
    correct = torch.tensor(
        [
            [True, False, True, False, True],
            [False, False, False, False, False],  # no positive
            [True, True, True, True, True],  # no negative
            [False, True, False, True, False],
        ]
    )
    lengths = torch.tensor(
        [
            [9, 4, 3, 7, 3],  # positives 0(9) 2(3) 4(3): shortest tie 2,4 -> 2; negatives 1(4) 3(7)
            [1, 2, 3, 4, 5],
            [1, 2, 3, 4, 5],
            [5, 6, 5, 6, 2],  # positives 1(6) 3(6): tie -> 1 for both rules; negatives 0(5) 2(5) 4(2)
        ]
    )
    pos, neg, has = select_pairs(correct, lengths, "shortest")
    assert has.tolist() == [True, False, False, True]
    assert pos.tolist() == [2, 0, 0, 1]
    assert neg.tolist() == [1, 0, 0, 4]
    assert pos.dtype == neg.dtype == torch.long
    pos, neg, has = select_pairs(correct, lengths, "longest")
    assert pos.tolist() == [0, 0, 0, 1]
    assert neg.tolist() == [3, 0, 0, 0]  # negatives 0 and 2 tie at 5 -> 0


def test_select_pairs_never_picks_ineligible_completions():
    correct = torch.tensor([[True, False, True, False], [True, False, False, False]])
    lengths = torch.tensor([[2, 1, 5, 7], [3, 1, 1, 1]])
    eligible = torch.tensor([[False, True, True, True], [False, True, True, True]])
    pos, neg, has = select_pairs(correct, lengths, "shortest", eligible=eligible)
    # row 0: the shorter positive 0 is ineligible -> 2; negatives 1 (1), 3 (7) -> 1
    # row 1: its only positive is ineligible -> no pair
    assert (pos.tolist(), neg.tolist(), has.tolist()) == ([2, 0], [1, 0], [True, False])
    pos, neg, _ = select_pairs(correct, lengths, "longest", eligible=eligible)
    assert (pos[0].item(), neg[0].item()) == (2, 3)


def test_select_pairs_random_is_seeded_and_picks_the_right_class():
    torch.manual_seed(0)
    correct = torch.rand(200, 8) > 0.5
    lengths = torch.randint(1, 50, (200, 8))
    first = select_pairs(correct, lengths, "random", generator=torch.Generator().manual_seed(3))
    again = select_pairs(correct, lengths, "random", generator=torch.Generator().manual_seed(3))
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    pos, neg, has = first
    rows = has.nonzero().flatten()
    assert correct[rows, pos[rows]].all() and (~correct[rows, neg[rows]]).all()
    # every eligible index gets picked sometimes (not always the first)
    assert len(set(pos[rows].tolist())) == 8
    with pytest.raises(ValueError, match="rule"):
        select_pairs(correct, lengths, "median")


def test_prefix_mask_modes():
    mask = torch.tensor(
        [
            [0, 0, 1, 1, 1, 1, 1],  # 5 response tokens
            [0, 1, 1, 0, 0, 0, 0],  # 2
            [0, 0, 0, 1, 1, 1, 0],  # 3
        ]
    )
    assert prefix_mask(mask, mode="tokens", tokens=3).tolist() == [
        [0, 0, 1, 1, 1, 0, 0],
        [0, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 0],
    ]
    # ceil(0.5 * 5) = 3, ceil(0.5 * 2) = 1, ceil(0.5 * 3) = 2
    assert prefix_mask(mask, mode="fraction", fraction=0.5).tolist() == [
        [0, 0, 1, 1, 1, 0, 0],
        [0, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0],
    ]
    assert torch.equal(prefix_mask(mask, mode="full"), mask)
    assert prefix_mask(mask.float(), mode="tokens", tokens=1).dtype == torch.float32


def test_divergence_window_starts_where_the_pair_differs():
    """Our extension (not the paper's): the window of n tokens starts at the first
    differing token of the pair."""
    assert divergence_points([[1, 2, 3], [1, 2], [5], []], [[1, 2, 4], [1, 2, 9, 9], [6], [7]]).tolist() == [2, 2, 0, 0]
    mask = torch.tensor(
        [
            [0, 1, 1, 1, 1, 1],  # 5 response tokens, diverges at response index 2
            [1, 1, 1, 0, 0, 0],  # 3 response tokens, diverges at 2 -> only the last one is left
            [0, 0, 1, 1, 0, 0],  # 2 response tokens, diverges at 7 (past the end) -> clamped to the last
        ]
    )
    window = prefix_mask(mask, mode="divergence", tokens=2, start=torch.tensor([2, 2, 7]))
    assert window.tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]]
    with pytest.raises(ValueError, match="needs start"):
        prefix_mask(mask, mode="divergence", tokens=2)


def test_prefix_fraction_is_exact_where_floats_are_not():
    mask = torch.ones(1, 10)
    # 0.3 * 10 = 3.0000000000000004 in floating point: must keep 3, not 4
    assert prefix_mask(mask, mode="fraction", fraction=0.3).sum().item() == 3
    assert prefix_mask(torch.ones(1, 7), mode="fraction", fraction=0.3).sum().item() == 3  # ceil(2.1)


@pytest.mark.parametrize(
    "kwargs",
    [dict(mode="tokens"), dict(mode="tokens", tokens=0), dict(mode="fraction", fraction=1.5), dict(mode="middle")],
)
def test_prefix_mask_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        prefix_mask(torch.ones(2, 3), **kwargs)


def test_truncation_length():
    assert truncation_length(torch.tensor([[0, 1, 1, 0, 0], [1, 0, 0, 0, 0]])) == 3
    assert truncation_length(torch.zeros(2, 4)) == 0


def test_an_early_stopped_groups_advantages_from_the_pass_rate_estimate_by_hand():
    """G = 4; completions 0 (correct) and 1 (incorrect) finished, 2 and 3 were aborted.
    Over the finished pair alone: mean 0.5, Bessel std sqrt(0.5) -> +-0.7071 whatever the prompt.
    With the prompt's estimate p = 0.25: mean 0.25 * 1 + 0.75 * 0 = 0.25, variance
    4/3 * 0.25 * 0.75 * (1 - 0)^2 = 0.25, std 0.5: +1.5 for the correct one, -0.5 for the
    incorrect one -- what the full group of 1 correct in 4 would give."""
    from learner.advantages import estimated_full_group_advantages

    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    correct = torch.tensor([[True, False, False, False]])
    finished = torch.tensor([[True, True, False, False]])
    pair_only = group_advantages(rewards, valid=finished)
    assert pair_only[0, :2].tolist() == pytest.approx([0.5 / math.sqrt(0.5), -0.5 / math.sqrt(0.5)], abs=1e-5)
    estimated = estimated_full_group_advantages(rewards, correct, finished, torch.tensor([0.25]), eps=0.0)
    assert estimated[0].tolist() == pytest.approx([1.5, -0.5, 0.0, 0.0])
    # the full group it stands for, all four finished with 1 correct: the same advantages
    full = group_advantages(rewards, eps=0.0)
    assert full[0, :2].tolist() == pytest.approx([1.5, -0.5])
    # an estimate of 0 is kept at 1/G (this group had a correct one): p = 0.25 again
    assert estimated_full_group_advantages(rewards, correct, finished, torch.tensor([0.0]), eps=0.0)[0].tolist() == (
        pytest.approx([1.5, -0.5, 0.0, 0.0])
    )
    # Dr.GRPO (no std): r - mean = 0.75 and -0.25
    centred = estimated_full_group_advantages(rewards, correct, finished, torch.tensor([0.25]), norm_by_std=False)
    assert centred[0].tolist() == pytest.approx([0.75, -0.25, 0.0, 0.0])
    # shaped rewards (a format bonus of 0.1 on the correct one): r_c = 1.1, r_w = 0; p = 0.5:
    # mean 0.55, std sqrt(4/3 * 0.25) * 1.1 = 0.6351: +0.8660 / -0.8660
    shaped = estimated_full_group_advantages(
        torch.tensor([[1.1, 0.0, 0.0, 0.0]]), correct, finished, torch.tensor([0.5]), eps=0.0
    )
    assert shaped[0, :2].tolist() == pytest.approx([0.55 / (math.sqrt(1 / 3) * 1.1), -0.55 / (math.sqrt(1 / 3) * 1.1)])
    # a group without both classes has no pair: zeros
    none = estimated_full_group_advantages(
        rewards, correct, torch.tensor([[True, False, False, False]]), torch.tensor([0.25])
    )
    assert none.abs().sum() == 0


def test_bppo_uses_the_estimate_only_for_groups_early_stopping_cut_short():
    from learner.algorithms import BPPOConfig, build_train_batch
    from learner.batch import RolloutGroups

    groups = RolloutGroups(
        prompt_ids=[[7], [8]],
        response_ids=[[[1], [2, 2], [3], [4]], [[1], [2], [3, 3], [4]]],
        rewards=torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]]),
        correct=torch.tensor([[True, False, False, False], [True, False, True, False]]),
        finished=torch.tensor([[True, True, False, False], [True, True, True, True]]),
        pass_rate_prior=torch.tensor([0.25, 0.9]),
    )
    algo = BPPOConfig(aborted_advantage="pass_rate", adv_eps=1e-12)
    batch = build_train_batch(groups, algo, pad_id=0)
    # group 0 (cut short): +1.5 / -0.5 from p = 0.25; group 1 (all finished, 2 of 4): its own
    # full-group statistics, mean 0.5, Bessel std sqrt(1/3): +-0.8660, the estimate 0.9 unused
    assert batch.advantages.tolist() == pytest.approx([1.5, -0.5, 0.5 / math.sqrt(1 / 3), -0.5 / math.sqrt(1 / 3)])
    assert batch.metrics["bppo/estimated_pairs"].item() == 1.0
    plain = build_train_batch(groups, BPPOConfig(aborted_advantage="finished", adv_eps=1e-12), pad_id=0)
    assert plain.advantages[:2].tolist() == pytest.approx([0.5 / math.sqrt(0.5), -0.5 / math.sqrt(0.5)])
    with pytest.raises(ValueError, match="needs each group's pass-rate estimate"):
        build_train_batch(
            RolloutGroups(
                groups.prompt_ids, groups.response_ids, groups.rewards, groups.correct, finished=groups.finished
            ),
            algo,
            pad_id=0,
        )
