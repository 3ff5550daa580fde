"""The per-algorithm compositions: GRPO and BPPO train batches, and BPPO's truncation."""

import math
import subprocess
import sys

import pytest
import torch

from learner.algorithms import (
    TRAIN_BATCH_BUILDERS,
    BPPOConfig,
    GRPOConfig,
    PrefixConfig,
    algorithm_loss,
    build_train_batch,
    overlong_penalty,
    signal_groups,
)
from learner.batch import RolloutGroups
from learner.logprobs import sequence_logprobs
from learner.losses import policy_loss

PAD = 0


def _groups():
    # group 0: rewards 1 0 1 0 -> positives 0 (len 3) and 2 (len 4), negatives 1 (len 2) and 3 (len 1)
    # group 1: all correct -> no pair; group 2: 1 correct of 4
    return RolloutGroups(
        prompt_ids=[[11, 12], [13], [14, 15, 16]],
        response_ids=[
            [[5, 6, 7], [5, 8], [5, 6, 7, 9], [4]],
            [[1], [2], [3], [4]],
            [[7, 7], [8, 8, 8, 8, 8], [9], [6, 6, 6]],
        ],
        rewards=torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]]),
        correct=torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool),
    )


def test_builders_are_a_plain_dict():
    assert TRAIN_BATCH_BUILDERS.keys() == {"grpo", "bppo"}


def test_bppo_batch_by_hand():
    algo = BPPOConfig(prefix=PrefixConfig(mode="tokens", tokens=2))
    batch = build_train_batch(_groups(), algo, pad_id=PAD)
    # group 0: shortest positive = 0 ([5,6,7]), shortest negative = 3 ([4]);
    # group 2: positive = 1 ([8]*5), shortest negative = 2 ([9]). Group 1 has no pair.
    assert batch.group_index.tolist() == [0, 0, 2, 2]
    a0 = 0.5 / (math.sqrt(1 / 3) + 1e-6)  # group 0: mean 0.5, std 0.5774
    a2_pos, a2_neg = 0.75 / (0.5 + 1e-6), -0.25 / (0.5 + 1e-6)  # group 2: mean 0.25, std 0.5
    torch.testing.assert_close(batch.advantages, torch.tensor([a0, -a0, a2_pos, a2_neg]))
    # prompt + first 2 response tokens; cut to the longest kept row (3 + 2 = 5 columns)
    assert batch.input_ids.tolist() == [
        [11, 12, 5, 6, 7],  # the column after the window is inside T but not attended or trained
        [11, 12, 4, PAD, PAD],
        [14, 15, 16, 8, 8],
        [14, 15, 16, 9, PAD],
    ]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    assert batch.loss_mask.tolist() == [[0, 0, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 1, 0]]
    assert batch.num_tokens == 4 + 3 + 5 + 4
    assert signal_groups(_groups(), algo).tolist() == [True, False, True]
    assert batch.metrics["bppo/prefix_tokens"].item() == pytest.approx((2 + 1 + 2 + 1) / 4)
    # the advantage spread over the 4 trained rows [a0, -a0, a2_pos, a2_neg] (a0 = 0.866, 1.5, -0.5)
    rows = [a0, -a0, a2_pos, a2_neg]
    mean = sum(rows) / 4
    assert batch.metrics["adv/mean"].item() == pytest.approx(mean, rel=1e-5)  # 0.25: the pairs are lopsided
    assert mean == pytest.approx(0.25, rel=1e-4)
    assert batch.metrics["adv/std"].item() == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in rows) / 4), rel=1e-5)
    assert batch.metrics["adv/min"].item() == pytest.approx(-a0) and batch.metrics["adv/max"].item() == pytest.approx(
        a2_pos
    )


def test_bppo_loss_is_equation_1_over_the_pair():
    algo = BPPOConfig(prefix=PrefixConfig(mode="tokens", tokens=2), kl_coef=0.1)
    batch = build_train_batch(_groups(), algo, pad_id=PAD)
    torch.manual_seed(0)
    batch.old_logprobs = -torch.rand(batch.input_ids.shape)
    batch.ref_logprobs = -torch.rand(batch.input_ids.shape)
    logprobs = batch.old_logprobs + 0.3 * torch.randn(batch.input_ids.shape)
    loss, metrics = algorithm_loss(logprobs, batch, algo)
    # J = 1/num_prompts * sum_prompts 1/2 * sum_pair (token mean of the clipped surrogate) - beta KL
    ratio = torch.exp(logprobs - batch.old_logprobs)
    adv = batch.advantages[:, None]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    d = batch.ref_logprobs - logprobs
    kl = torch.exp(d) - d - 1
    m = batch.loss_mask
    per_row = ((-surrogate + 0.1 * kl) * m).sum(1) / m.sum(1)
    expected = sum(0.5 * (per_row[2 * p] + per_row[2 * p + 1]) for p in range(2)) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert metrics["loss/kl"].item() > 0


def test_bppo_full_and_fraction_windows():
    batch = build_train_batch(_groups(), BPPOConfig(prefix=PrefixConfig(mode="full")), pad_id=PAD)
    assert batch.loss_mask.sum(1).tolist() == [3, 1, 5, 1]
    assert batch.input_ids.shape[1] == 3 + 5
    batch = build_train_batch(_groups(), BPPOConfig(prefix=PrefixConfig(mode="fraction", fraction=0.5)), pad_id=PAD)
    assert batch.loss_mask.sum(1).tolist() == [2, 1, 3, 1]  # ceil(1.5), ceil(0.5), ceil(2.5), ceil(0.5)


def test_bppo_divergence_window_is_the_pairs_first_differing_tokens():
    algo = BPPOConfig(selection="longest", prefix=PrefixConfig(mode="divergence", tokens=2))
    batch = build_train_batch(_groups(), algo, pad_id=PAD)
    # group 0: longest positive [5,6,7,9], longest negative [5,8]: shared "5", divergence at 1,
    # so the windows are response tokens 1-2 ([6,7]) and 1 ([8]);
    # group 2: [8,8,8,8,8] vs [6,6,6] differ at 0: the first two tokens of each.
    trained = [batch.input_ids[r][batch.loss_mask[r] != 0].tolist() for r in range(4)]
    assert trained == [[6, 7], [8], [8, 8], [6, 6]]
    # cut after the last window: group 0's positive needs prompt 2 + 3 tokens, group 2's 3 + 2
    assert batch.input_ids.shape[1] == 5
    assert batch.metrics["bppo/prefix_tokens"].item() == pytest.approx((2 + 1 + 2 + 2) / 4)


def test_bppo_selection_rule_longest():
    batch = build_train_batch(_groups(), BPPOConfig(selection="longest", prefix=PrefixConfig(mode="full")), pad_id=PAD)
    assert batch.loss_mask.sum(1).tolist() == [4, 2, 5, 3]


def test_bppo_without_any_pair_gives_an_empty_batch():
    groups = _groups()
    groups.correct[:] = True
    batch = build_train_batch(groups, BPPOConfig(), pad_id=PAD)
    assert batch.input_ids.shape[0] == 0
    assert not signal_groups(groups, BPPOConfig()).any()


def test_bppo_early_stopped_groups_use_their_finished_completions():
    groups = _groups()
    # group 0 stopped after completions 0 (correct, len 3), 1 (wrong, len 2), 3 (wrong, len 1) finished;
    # group 2 after 1 (correct) and 2 (wrong); group 1 ran to the end (no pair).
    groups.finished = torch.tensor([[True, True, False, True], [True] * 4, [False, True, True, False]])
    for g, i in ((0, 2), (2, 0), (2, 3)):  # an aborted completion comes back empty, reward 0
        groups.response_ids[g][i], groups.rewards[g, i], groups.correct[g, i] = [], 0.0, False
    algo = BPPOConfig(prefix=PrefixConfig(mode="full"), aborted_advantage="finished")
    batch = build_train_batch(groups, algo, pad_id=PAD)
    # the pairs are the same as with the whole groups: (0, 3) and (1, 2)
    assert batch.group_index.tolist() == [0, 0, 2, 2]
    assert batch.loss_mask.sum(1).tolist() == [3, 1, 5, 1]
    # group 0 over (1, 0, 0): mean 1/3, Bessel var (4/9 + 1/9 + 1/9) / 2 = 1/3 -> +(2/3)/0.5774, -(1/3)/0.5774
    # group 2 over (1, 0): mean 1/2, var 1/2 -> +-0.5/0.7071
    s0, s2 = math.sqrt(1 / 3) + 1e-6, math.sqrt(1 / 2) + 1e-6
    torch.testing.assert_close(batch.advantages, torch.tensor([(2 / 3) / s0, -(1 / 3) / s0, 0.5 / s2, -0.5 / s2]))
    with pytest.raises(ValueError, match="early_stop_groups is for BPPO only"):
        build_train_batch(groups, GRPOConfig(), pad_id=PAD)
    with pytest.raises(ValueError, match="finished must be"):
        RolloutGroups(
            groups.prompt_ids,
            groups.response_ids,
            groups.rewards,
            groups.correct,
            finished=torch.ones(3, 3, dtype=torch.bool),
        )


def test_grpo_batch_keeps_every_completion_and_dapo_filter_drops_uniform_groups():
    batch = build_train_batch(_groups(), GRPOConfig(), pad_id=PAD)
    assert batch.input_ids.shape == (12, 3 + 5)
    assert batch.loss_mask.sum().item() == 3 + 2 + 4 + 1 + 4 * 1 + 2 + 5 + 1 + 3
    assert batch.advantages[4:8].eq(0).all()  # group 1: all rewards equal
    filtered = build_train_batch(_groups(), GRPOConfig(filter_groups=True), pad_id=PAD)
    assert filtered.group_index.tolist() == [0] * 4 + [2] * 4
    assert signal_groups(_groups(), GRPOConfig(filter_groups=True)).tolist() == [True, False, True]
    assert signal_groups(_groups(), GRPOConfig()).tolist() == [True, True, True]


def test_bppo_early_stop_signal_counts_finished_completions_only():
    groups = _groups()
    # group 2's only correct completion (1) was aborted: no pair among the finished ones.
    groups.finished = torch.tensor([[True] * 4, [True] * 4, [True, False, True, True]])
    assert signal_groups(groups, BPPOConfig()).tolist() == [True, False, False]


def test_bppo_random_selection_is_a_function_of_the_seed():
    algo = BPPOConfig(selection="random", prefix=PrefixConfig(mode="full"))
    picks = {
        seed: build_train_batch(_groups(), algo, pad_id=PAD, seed=seed).loss_mask.sum(1).tolist() for seed in range(20)
    }
    assert all(
        build_train_batch(_groups(), algo, pad_id=PAD, seed=s).loss_mask.sum(1).tolist() == picks[s] for s in (0, 7)
    )  # the same seed, the same pairs (a resumed run)
    # group 0 has two positives (lengths 3, 4) and two negatives (2, 1): some seed picks each
    assert {p[0] for p in picks.values()} == {3, 4} and {p[1] for p in picks.values()} == {2, 1}
    assert all(p[2:] == [5, 1] or p[2:] == [5, 2] or p[2:] == [5, 3] for p in picks.values())


def test_bppo_refuses_a_pair_whose_signs_are_reversed():
    groups = _groups()
    # a custom reward that scores group 2's incorrect completion 2 above its correct one
    groups.rewards[2] = torch.tensor([0.0, 0.5, 1.0, 0.0])
    # shortest pair of group 2: correct 1 (reward 0.5), incorrect 2 (length 1, reward 1.0)
    with pytest.raises(
        ValueError, match="group 2: the correct completion 1 has reward 0.5 and the incorrect completion 2 1"
    ):
        build_train_batch(groups, BPPOConfig(), pad_id=PAD)
    groups.rewards[2] = torch.tensor([0.5, 0.5, 0.5, 0.5])  # equal: no signal, but not reversed
    assert build_train_batch(groups, BPPOConfig(), pad_id=PAD).advantages[2:].eq(0).all()
    # equal pair off the group mean: mean 0.375, both advantages (0.5 - 0.375) / std > 0 would push
    # the incorrect completion up exactly as hard as the correct one
    groups.rewards[2] = torch.tensor([0.0, 0.5, 0.5, 0.5])
    with pytest.raises(
        ValueError, match="group 2: the correct completion 1 has reward 0.5 and the incorrect completion 2 0.5"
    ):
        build_train_batch(groups, BPPOConfig(), pad_id=PAD)


def test_overlong_penalty_is_dapos_soft_punishment():
    # L_max 10, L_cache 4: no penalty up to 6 tokens, then -(len - 6) / 4 * 0.5, -0.5 at 10
    lengths = torch.tensor([3, 6, 7, 8, 10])
    torch.testing.assert_close(
        overlong_penalty(lengths, max_tokens=10, buffer=4, penalty=0.5), torch.tensor([0.0, 0.0, -0.125, -0.25, -0.5])
    )
    assert overlong_penalty(lengths, max_tokens=10, buffer=0, penalty=0.5).eq(0).all()
    with pytest.raises(ValueError, match="overlong buffer 11"):
        overlong_penalty(lengths, max_tokens=10, buffer=11, penalty=1.0)


def test_engine_logprobs_travel_with_their_tokens():
    groups = _groups()
    groups.response_logprobs = [[[-0.1 * (i + 1)] * len(r) for i, r in enumerate(g)] for g in groups.response_ids]
    batch = build_train_batch(groups, BPPOConfig(prefix=PrefixConfig(mode="tokens", tokens=2)), pad_id=PAD)
    # row 0 = group 0 completion 0 (-0.1 each), row 1 = completion 3 (-0.4)
    torch.testing.assert_close(batch.old_logprobs[0], torch.tensor([0, 0, -0.1, -0.1, -0.1]))
    torch.testing.assert_close(batch.old_logprobs[1], torch.tensor([0, 0, -0.4, 0, 0]))


def test_truncated_forward_gives_the_prefix_logprobs_of_the_full_forward():
    """docs/design.md §3.5: cutting to prompt + n before the forward changes no kept log-prob."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(config).eval().float()
    groups = RolloutGroups(
        prompt_ids=[[3, 4, 5, 6, 7], [8, 9, 10]],
        response_ids=[
            [torch.randint(1, 64, (length,)).tolist() for length in (17, 9)],
            [torch.randint(1, 64, (length,)).tolist() for length in (12, 20)],
        ],
        rewards=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        correct=torch.tensor([[True, False], [False, True]]),
    )

    def logprobs_of(batch):
        with torch.no_grad():
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        return sequence_logprobs(logits, batch.input_ids)

    full = build_train_batch(groups, BPPOConfig(prefix=PrefixConfig(mode="full")), pad_id=PAD)
    cut = build_train_batch(groups, BPPOConfig(prefix=PrefixConfig(mode="tokens", tokens=6)), pad_id=PAD)
    assert cut.input_ids.shape[1] == 5 + 6 < full.input_ids.shape[1] == 3 + 20
    window = cut.loss_mask.bool()
    full_lp, cut_lp = logprobs_of(full)[:, : cut.input_ids.shape[1]], logprobs_of(cut)
    assert window.sum().item() == 6 * 4
    torch.testing.assert_close(cut_lp[window], full_lp[window], atol=1e-5, rtol=0)


def test_sequence_logprobs_by_hand():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    ids = torch.tensor([[2, 1, 0]])
    expected = torch.tensor([[0.0, math.log(0.25), math.log(0.1)]])
    torch.testing.assert_close(sequence_logprobs(logits, ids), expected)


@pytest.mark.slow  # a fresh interpreter
def test_pure_core_imports_no_heavy_dependency():
    code = (
        "import sys; import learner.losses, learner.selection, learner.advantages, learner.algorithms, "
        "learner.batch, learner.logprobs, rewards.verify, rewards.equivalence\n"
        "heavy = sorted(m for m in ('ray', 'vllm', 'deepspeed') if m in sys.modules)\n"
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_algorithm_loss_needs_old_and_ref_logprobs():
    batch = build_train_batch(_groups(), BPPOConfig(kl_coef=0.1), pad_id=PAD)
    with pytest.raises(ValueError, match="old_logprobs"):
        algorithm_loss(torch.zeros_like(batch.loss_mask), batch, BPPOConfig(kl_coef=0.1))
    batch.old_logprobs = torch.zeros_like(batch.loss_mask)
    with pytest.raises(ValueError, match="ref_logprobs"):
        algorithm_loss(torch.zeros_like(batch.loss_mask), batch, BPPOConfig(kl_coef=0.1))
    loss, _ = algorithm_loss(torch.zeros_like(batch.loss_mask), batch, BPPOConfig())
    direct, _ = policy_loss(torch.zeros_like(batch.loss_mask), batch.old_logprobs, batch.advantages, batch.loss_mask)
    assert loss.item() == direct.item()


def test_a_step_where_no_group_has_a_signal_gives_an_empty_batch():
    """BPPO drops groups without a pair before the learner: a step can keep none at all."""
    from orchestrator.rollout_ahead import to_rollout_groups

    groups = to_rollout_groups([], 4)
    assert groups.rewards.shape == (0, 4) and groups.correct.shape == (0, 4) and groups.finished is None
    for algo in (BPPOConfig(), GRPOConfig(filter_groups=True)):
        batch = build_train_batch(groups, algo, pad_id=PAD)
        assert batch.input_ids.shape[0] == 0
        assert signal_groups(groups, algo).shape == (0,)


def test_each_trained_row_carries_its_groups_images():
    """Vision-language groups: BPPO's pair rows and GRPO's rows get their own prompt's images
    (the tensors themselves, in row order); the BPPO prefix cuts responses, never the images."""
    from learner.batch import RowImages

    images = [RowImages(torch.full((4, 6), float(g)), torch.tensor([[1, 2, 2]])) for g in range(2)]
    groups = RolloutGroups(
        prompt_ids=[[5, 9, 9, 6], [7, 9, 9, 8]],  # 9: an image token, one per merged patch
        response_ids=[[[1, 2, 3], [1, 2]], [[3], [3, 4, 4, 4]]],
        rewards=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        correct=torch.tensor([[True, False], [False, True]]),
        images=images,
    )
    bppo = build_train_batch(groups, BPPOConfig(prefix={"mode": "tokens", "tokens": 2}), pad_id=0)
    # rows: (group 0: correct 0, incorrect 1), (group 1: correct 1, incorrect 0)
    assert bppo.group_index.tolist() == [0, 0, 1, 1]
    assert [im is images[g] for im, g in zip(bppo.images, bppo.group_index.tolist())] == [True] * 4
    assert bppo.image_inputs()["pixel_values"].shape == (16, 6)  # 4 rows x 4 patches, rows in order
    assert bppo.input_ids[:, :4].tolist() == [[5, 9, 9, 6], [5, 9, 9, 6], [7, 9, 9, 8], [7, 9, 9, 8]]
    grpo = build_train_batch(groups, GRPOConfig(), pad_id=0)
    assert [im is images[g] for im, g in zip(grpo.images, grpo.group_index.tolist())] == [True] * 4
    with pytest.raises(ValueError, match="1 image entries for 2 prompts"):
        RolloutGroups(
            prompt_ids=groups.prompt_ids,
            response_ids=groups.response_ids,
            rewards=groups.rewards,
            correct=groups.correct,
            images=images[:1],
        )
