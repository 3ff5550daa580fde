"""learner.losses against hand-computed values, every intermediate asserted."""

import math

import pytest
import torch

from learner.losses import (
    LossSettings,
    aggregate,
    kl_penalty,
    policy_loss,
    token_terms,
    truncated_importance_weights,
)

E03, EM05 = math.exp(0.3), math.exp(-0.5)  # 1.3498588, 0.6065307


def _case():
    # Row 0: A = +1; ratios 1, e^0.3 (clipped high at 1.2), e^-0.5 (A > 0: low clip inactive).
    # Row 1: A = -2; ratios e^0.3 (A < 0: high clip inactive), e^-0.5 (clipped low at 0.8), padding.
    logprobs = torch.tensor([[-1.0, -0.5, -2.0], [-0.2, -1.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.0, -0.8, -1.5], [-0.5, -0.5, 0.0]])
    advantages = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    return logprobs, old, advantages, mask


def test_token_terms_by_hand():
    logprobs, old, advantages, mask = _case()
    terms = token_terms(logprobs, old, advantages, mask)
    torch.testing.assert_close(terms.ratio, torch.tensor([[1.0, E03, EM05], [E03, EM05, 1.0]]))
    # pg = max(-A rho, -A clip(rho, 0.8, 1.2))
    expected_pg = torch.tensor(
        [
            [-1.0, -1.2, -EM05],  # tok1 clipped at 1.2; tok2: -0.6065 > -0.8 so unclipped
            [2 * E03, 1.6, 2.0],  # tok0: 2.6997 > 2.4 unclipped; tok1: 1.6 > 1.2131 clipped at 0.8
        ]
    )
    torch.testing.assert_close(terms.pg, expected_pg)
    assert terms.clipped.tolist() == [[False, True, False], [False, True, False]]
    assert terms.kl is None


@pytest.mark.parametrize(
    "agg_mode, expected",
    [
        # row means: (-1 - 1.2 - e^-0.5)/3 = -0.935510, (2e^0.3 + 1.6)/2 = 2.149859
        ("seq-mean-token-mean", ((-1 - 1.2 - EM05) / 3 + (2 * E03 + 1.6) / 2) / 2),
        ("token-mean", (-1 - 1.2 - EM05 + 2 * E03 + 1.6) / 5),  # 0.298637
        ("seq-mean-token-sum-norm", (-1 - 1.2 - EM05 + 2 * E03 + 1.6) / (2 * 3)),  # 0.248865
    ],
)
def test_policy_loss_aggregations(agg_mode, expected):
    logprobs, old, advantages, mask = _case()
    loss, metrics = policy_loss(logprobs, old, advantages, mask, LossSettings(agg_mode=agg_mode))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["loss/pg"].item() == pytest.approx(expected, rel=1e-6)
    assert metrics["loss/clip_frac"].item() == pytest.approx(2 / 5)
    assert metrics["loss/total"].item() == pytest.approx(expected, rel=1e-6)
    assert "loss/kl" not in metrics
    assert all(not m.requires_grad for m in metrics.values())


def test_gradient_flows_only_through_unclipped_tokens():
    logprobs, old, advantages, mask = _case()
    loss, _ = policy_loss(logprobs, old, advantages, mask, LossSettings(agg_mode="token-mean"))
    loss.backward()
    # d(-A rho)/dlogp = -A rho on unclipped tokens, 0 on clipped and masked ones; / 5 tokens.
    expected = torch.tensor([[-1.0 / 5, 0.0, -EM05 / 5], [2 * E03 / 5, 0.0, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected)


def test_asymmetric_clip_range():
    logprobs = torch.tensor([[math.log(1.25)]])
    old = torch.zeros(1, 1)
    mask = torch.ones(1, 1)
    advantages = torch.tensor([1.0])
    # clip_high 0.2: rho 1.25 is clipped to 1.2; clip_high 0.28 (DAPO): not clipped.
    assert policy_loss(logprobs, old, advantages, mask, LossSettings(clip_high=0.2))[0].item() == pytest.approx(-1.2)
    assert policy_loss(logprobs, old, advantages, mask, LossSettings(clip_high=0.28))[0].item() == pytest.approx(-1.25)


@pytest.mark.parametrize("kind, expected", [("k1", 0.5), ("k2", 0.125), ("k3", EM05 + 0.5 - 1)])
def test_kl_estimators_match_their_formulas(kind, expected):
    # d = ref - logp = -1.5 - (-1.0) = -0.5: k1 = -d, k2 = d^2/2, k3 = e^d - d - 1
    value = kl_penalty(torch.tensor([-1.0]), torch.tensor([-1.5]), kind)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_kl_estimators_elementwise_random():
    torch.manual_seed(0)
    logp, ref = torch.randn(4, 5), torch.randn(4, 5)
    d = ref - logp
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), -d)
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), d * d / 2)
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), torch.exp(d) - d - 1)
    assert (kl_penalty(logp, ref, "k3") >= 0).all()
    with pytest.raises(ValueError, match="k4"):
        kl_penalty(logp, ref, "k4")


def test_kl_term_added_with_its_coefficient():
    logprobs, old, advantages, mask = _case()
    ref = old - 0.1  # d = ref - logp
    loss, metrics = policy_loss(
        logprobs, old, advantages, mask, LossSettings(agg_mode="token-mean", kl_coef=0.1), ref_logprobs=ref
    )
    d = (ref - logprobs.detach()) * mask
    k3 = (torch.exp(d) - d - 1) * mask
    expected_kl = k3.sum().item() / 5
    assert metrics["loss/kl"].item() == pytest.approx(expected_kl, rel=1e-6)
    assert loss.item() == pytest.approx(metrics["loss/pg"].item() + 0.1 * expected_kl, rel=1e-6)
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(logprobs, old, advantages, mask, LossSettings(kl_coef=0.1))


@pytest.mark.parametrize("agg_mode", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_all_masked_rows_give_finite_zero_with_gradient(agg_mode):
    logprobs = torch.tensor([[float("-inf"), -1.0], [-2.0, float("nan")]], requires_grad=True)
    old = torch.tensor([[-1.0, float("-inf")], [0.0, -1.0]])
    ref = torch.full((2, 2), float("nan"))
    mask = torch.zeros(2, 2)
    loss, metrics = policy_loss(
        logprobs, old, torch.tensor([1.0, -1.0]), mask, LossSettings(agg_mode=agg_mode, kl_coef=0.1), ref_logprobs=ref
    )
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logprobs.grad, torch.zeros(2, 2))
    assert all(torch.isfinite(m) for m in metrics.values())


def test_masked_row_beside_a_real_row_does_not_change_the_mean():
    logprobs, old, advantages, mask = _case()
    padded = lambda t, fill: torch.cat([t, torch.full((1, 3), fill)])  # noqa: E731
    loss, _ = policy_loss(logprobs, old, advantages, mask)
    loss_with_empty, _ = policy_loss(
        padded(logprobs.detach(), 5.0), padded(old, -5.0), torch.tensor([1.0, -2.0, 3.0]), padded(mask, 0.0)
    )
    assert loss_with_empty.item() == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize("agg_mode", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_micro_batches_with_global_normalisers_sum_to_the_full_batch(agg_mode):
    torch.manual_seed(1)
    B, T = 6, 7
    logprobs = (torch.randn(B, T) * 0.3 - 1).requires_grad_()
    old = logprobs.detach() + torch.randn(B, T) * 0.2
    ref = logprobs.detach() + torch.randn(B, T) * 0.2
    advantages = torch.randn(B)
    mask = (torch.rand(B, T) > 0.3).float()
    mask[2] = 0  # an empty row must not upset the counts
    settings = LossSettings(agg_mode=agg_mode, kl_coef=0.05)
    full, full_metrics = policy_loss(logprobs, old, advantages, mask, settings, ref_logprobs=ref)
    (full_grad,) = torch.autograd.grad(full, logprobs)

    norms = dict(global_tokens=mask.sum(), global_seqs=(mask.sum(-1) > 0).sum(), max_len=T)
    total, summed_metrics = 0.0, {}
    for rows in (slice(0, 1), slice(1, 4), slice(4, 6)):  # uneven micro-batches / ranks
        part, metrics = policy_loss(
            logprobs[rows], old[rows], advantages[rows], mask[rows], settings, ref_logprobs=ref[rows], **norms
        )
        total = total + part
        for key, value in metrics.items():
            summed_metrics[key] = summed_metrics.get(key, 0.0) + value
    (micro_grad,) = torch.autograd.grad(total, logprobs)
    torch.testing.assert_close(total, full)
    torch.testing.assert_close(micro_grad, full_grad)
    for key in full_metrics:  # metrics share the normalisers, so they add up too
        torch.testing.assert_close(summed_metrics[key], full_metrics[key])


def test_aggregate_rejects_unknown_mode_and_bad_shapes():
    with pytest.raises(ValueError, match="agg_mode"):
        aggregate(torch.ones(1, 2), torch.ones(1, 2), "mean")
    with pytest.raises(ValueError, match="shape"):
        policy_loss(torch.ones(2, 3), torch.ones(2, 2), torch.ones(2), torch.ones(2, 3))


def test_dual_clip_caps_the_loss_of_negative_advantages_by_hand():
    # Row 0: A = -1, rho = e^1.5 = 4.4817: clipped surrogate max(4.4817, 0.8) = 4.4817 > c = 3 -> 3.
    #   tok1: rho = e^0.5 = 1.6487 < 3: max(1.6487, 0.8) = 1.6487, not dual-clipped.
    # Row 1: A = +1, rho = e^1.5: pg = max(-4.4817, -1.2) = -1.2 (ordinary clip, dual-clip is for A < 0).
    logprobs = torch.tensor([[1.5, 0.5], [1.5, 0.0]], requires_grad=True)
    old = torch.zeros(2, 2)
    advantages = torch.tensor([-1.0, 1.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    terms = token_terms(logprobs, old, advantages, mask, LossSettings(clip_ratio_c=3.0))
    torch.testing.assert_close(terms.pg[0], torch.tensor([3.0, math.exp(0.5)]))
    assert terms.pg[1, 0].item() == pytest.approx(-1.2)
    assert terms.dual_clipped.tolist() == [[True, False], [False, False]]
    assert terms.clipped.tolist() == [[False, False], [True, False]]
    off = token_terms(logprobs, old, advantages, mask, LossSettings(clip_ratio_c=None))
    assert off.pg[0, 0].item() == pytest.approx(math.exp(1.5))
    assert not off.dual_clipped.any()
    loss, metrics = policy_loss(logprobs, old, advantages, mask, LossSettings(agg_mode="token-mean", clip_ratio_c=3.0))
    assert loss.item() == pytest.approx((3.0 + math.exp(0.5) - 1.2) / 3)
    assert metrics["loss/dual_clip_frac"].item() == pytest.approx(1 / 3)
    loss.backward()
    # Only the unclipped tok (0, 1) carries a gradient: d(-A rho)/dlogp = rho / 3.
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, math.exp(0.5) / 3], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="clip_ratio_c must be > 1"):
        LossSettings(clip_ratio_c=1.0)


def test_log_ratio_is_clamped_so_the_ratio_stays_finite():
    # logp - old = 100 would overflow exp in fp32 (e^100 = 2.7e43 > 3.4e38 only just fits,
    # e^200 does not); the clamp gives e^20 and, for A < 0 without dual-clip, a finite loss.
    logprobs = torch.tensor([[200.0, -200.0]])
    old = torch.zeros(1, 2)
    terms = token_terms(logprobs, old, torch.tensor([-1.0]), torch.ones(1, 2), LossSettings(clip_ratio_c=None))
    torch.testing.assert_close(terms.ratio, torch.tensor([[math.exp(20.0), math.exp(-20.0)]]))
    assert torch.isfinite(terms.pg).all()


def test_k3_is_clamped_like_verl():
    # d = ref - logp = 5: e^5 - 5 - 1 = 142.4 -> 10; d = 30 -> clamped to 20 first, then 10;
    # d = -3: e^-3 + 3 - 1 = 2.0498 (inside the clamp, unchanged).
    value = kl_penalty(torch.zeros(3), torch.tensor([5.0, 30.0, -3.0]), "k3")
    torch.testing.assert_close(value, torch.tensor([10.0, 10.0, math.exp(-3.0) + 2.0]))


def test_old_to_new_kl_by_hand():
    logprobs, old, advantages, mask = _case()
    _, metrics = policy_loss(logprobs, old, advantages, mask)
    # log ratios on the 5 trained tokens: 0, 0.3, -0.5, 0.3, -0.5; k3 = e^x - 1 - x
    k3 = {0.0: 0.0, 0.3: E03 - 1.3, -0.5: EM05 - 0.5}  # 0.0498588, 0.1065307
    expected = (k3[0.0] + 2 * k3[0.3] + 2 * k3[-0.5]) / 5  # 0.0625558
    assert metrics["loss/old_new_kl"].item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.0625558, abs=1e-7)
    # at the policy that sampled (a batch's first optimizer step) it is exactly 0
    _, same = policy_loss(old.clone().requires_grad_(), old, advantages, mask)
    assert same["loss/old_new_kl"].item() == 0.0


def test_truncated_importance_weights_by_hand():
    # old / behaviour probabilities 0.5 / 0.25, 0.2 / 0.4, 0.9 / 0.3 on the trained tokens, a pad.
    old = torch.tensor([[math.log(0.5), math.log(0.2), math.log(0.9), 0.0]])
    behavior = torch.tensor([[math.log(0.25), math.log(0.4), math.log(0.3), 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    weights, cut = truncated_importance_weights(old, behavior, mask, cap=2.5)
    torch.testing.assert_close(weights, torch.tensor([[2.0, 0.5, 2.5, 1.0]]))  # 3.0 cut to 2.5; pad: 1
    assert cut.tolist() == [[False, False, True, False]]
    uncapped, never = truncated_importance_weights(old, behavior, mask, cap=None)
    torch.testing.assert_close(uncapped, torch.tensor([[2.0, 0.5, 3.0, 1.0]]))
    assert not never.any()
    with pytest.raises(ValueError, match="share one"):
        truncated_importance_weights(old, behavior[:, :3], mask, cap=2.0)
    with pytest.raises(ValueError, match="tis_cap must be > 0"):
        LossSettings(tis_cap=0.0)


def test_off_policy_batch_weights_each_tokens_policy_loss_by_hand():
    """The first optimizer step of a stale batch: logprobs = old (ratio 1), A = 1, so each token's
    clipped term is -1, weighted by w = [2, 0.5, 2.5]; token-mean over the 3 tokens."""
    old = torch.tensor([[math.log(0.5), math.log(0.2), math.log(0.9), 0.0]])
    behavior = torch.tensor([[math.log(0.25), math.log(0.4), math.log(0.3), 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    logprobs = old.clone().requires_grad_()
    settings = LossSettings(agg_mode="token-mean", tis_cap=2.5)
    loss, metrics = policy_loss(logprobs, old, torch.tensor([1.0]), mask, settings, behavior_logprobs=behavior)
    assert loss.item() == pytest.approx(-(2.0 + 0.5 + 2.5) / 3)
    assert metrics["offpolicy/is_weight_mean"].item() == pytest.approx(5.0 / 3)
    assert metrics["offpolicy/is_clip_frac"].item() == pytest.approx(1.0 / 3)
    assert metrics["offpolicy/is_weight_max"].item() == pytest.approx(3.0)  # before the cap
    loss.backward()
    # d(-w rho A) / d logprob = -w rho A = -w at rho = 1, over 3 tokens; the weights carry no gradient
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-2 / 3, -0.5 / 3, -2.5 / 3, 0.0]]))
    # on-policy (no behaviour log-probs): the same tokens unweighted, no off-policy metrics
    plain, plain_metrics = policy_loss(old.clone(), old, torch.tensor([1.0]), mask, settings)
    assert plain.item() == pytest.approx(-1.0)
    assert not any(name.startswith("offpolicy/") for name in plain_metrics)
