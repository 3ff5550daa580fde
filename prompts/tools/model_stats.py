"""Batched forward passes of a Hugging Face causal LM over (prompt, response) pairs.

One pass gives both numbers the data tools need:

- the autoregressive loss of the response given the prompt (mean NLL per response token;
  its exp is the perplexity), for ``bppo data score`` and the easy-prompt filter;
- the mean of the last hidden state (the states the LM head reads) over the prompt tokens,
  the prompt's embedding for ``bppo data curate``. Attention is causal, so the prompt
  positions' states are the same with or without the response after them: no second pass.

Any causal LM directory works (the tiny model, a Qwen checkpoint on a GPU); nothing is
downloaded (``local_files_only``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

DEFAULT_BATCH_TOKENS = 8192


def check_model_dir(path: str, flag: str) -> str:
    """``path`` if it is a local Hugging Face model directory, else a ValueError naming ``flag``."""
    if not (Path(path) / "config.json").is_file():
        raise ValueError(f"{flag} {path}: not a local Hugging Face model directory (no config.json there)")
    return path


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(path: str, device: str):
    """(model in eval mode on ``device``, tokenizer). float32 on CPU; the checkpoint's own dtype
    on a GPU (bf16 for Qwen), where float32 would double the memory for no ranking benefit."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    dtype = torch.float32 if device == "cpu" else "auto"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    return model.to(device).eval(), tokenizer


def encode_pairs(tokenizer, prompts: list[str], responses: list[str]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) per pair. Encoded separately and joined, with a space before
    the response, exactly as the warm start's SFT examples are (``bootstrap.sft_examples``),
    so the policy is scored on the token sequences it was trained on and the prompt/response
    boundary is a token boundary. No EOS: the score is of the response x itself."""
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer([" " + r for r in responses], add_special_tokens=False)["input_ids"]
    return list(zip(prompt_ids, response_ids))


def fit_to_context(prompt: list[int], response: list[int], max_len: int | None) -> tuple[list[int], list[int]]:
    """The pair cut to ``max_len`` tokens: the response's end first (keeping >= 1 token), then
    the prompt's start. Unchanged when it fits (the synthetic and MATH prompts always do)."""
    if max_len is None or len(prompt) + len(response) <= max_len:
        return prompt, response
    response = response[: max(1, max_len - len(prompt))]
    return prompt[len(prompt) + len(response) - max_len :], response


def plan_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Row indices in batches of similar length (little padding): sorted by (length, index) and
    filled while rows x longest row <= ``batch_tokens``; a longer row gets a batch to itself."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        if batches and (len(batches[-1]) + 1) * lengths[index] <= batch_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def response_mean_nll(logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the response tokens per row: the autoregressive loss.

    ``logits`` [B, T, V], ``input_ids`` [B, T], ``response_mask`` [B, T] (1 on response
    tokens). Token t is predicted by the logits at t - 1, so the first position never counts.
    """
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [B, T-1, V]
    token_logprobs = logprobs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
    mask = response_mask[:, 1:].to(token_logprobs.dtype)
    return -(token_logprobs * mask).sum(1) / mask.sum(1)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, T, H] over the positions where ``mask`` [B, T] is 1: [B, H]."""
    weights = mask.to(hidden.dtype)[..., None]
    return (hidden * weights).sum(1) / weights.sum(1)


@dataclass(frozen=True)
class PairStats:
    losses: list[float]
    """Mean NLL per response token, per pair (the autoregressive loss; exp = perplexity)."""
    embeddings: torch.Tensor | None
    """[N, H] float32 on CPU: mean last hidden state over each prompt's tokens (None unless asked)."""
    truncated: int
    """Pairs cut to fit the model's context (``fit_to_context``)."""


def pair_stats(
    model,
    pairs: list[tuple[list[int], list[int]]],
    *,
    pad_id: int,
    embeddings: bool = False,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    desc: str = "forward",
) -> PairStats:
    """Response losses (and prompt embeddings) of every pair, batched by length, in input order."""
    max_len = getattr(model.config, "max_position_embeddings", None)
    fitted = [fit_to_context(p, r, max_len) for p, r in pairs]
    if any(not p for p, _ in fitted):
        raise ValueError("a prompt has no tokens: a response needs at least one token before it")
    lengths = [len(p) + len(r) for p, r in fitted]
    losses = [0.0] * len(fitted)
    pooled: torch.Tensor | None = None  # [N, H], made at the first batch (H = the head's input width)
    captured: dict[str, torch.Tensor] = {}
    # The LM head's input is the last hidden state after the final norm, whatever the model
    # family calls it; a hook reads it from the very forward that makes the logits.
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: captured.__setitem__("hidden", args[0])
    )
    device = next(model.parameters()).device
    batches = plan_batches(lengths, batch_tokens)
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc=desc, unit="batch", file=sys.stderr, dynamic_ncols=True):
                input_ids, attention_mask, prompt_mask = _pad([fitted[i] for i in batch], pad_id)
                logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
                response_mask = attention_mask - prompt_mask
                batch_losses = response_mean_nll(logits, input_ids.to(device), response_mask.to(device)).cpu()
                for row, index in enumerate(batch):
                    losses[index] = float(batch_losses[row])
                if embeddings:
                    means = masked_mean(captured["hidden"].float(), prompt_mask.to(device)).cpu()  # [B, H]
                    if pooled is None:
                        pooled = torch.zeros(len(fitted), means.shape[1])
                    pooled[batch] = means
    finally:
        hook.remove()
    truncated = sum(len(p) + len(r) != len(fp) + len(fr) for (p, r), (fp, fr) in zip(pairs, fitted))
    return PairStats(losses, pooled, truncated)


def _pad(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and prompt mask, each [B, T]. Right padding keeps
    every real token at its natural position id."""
    width = max(len(p) + len(r) for p, r in pairs)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), width), dtype=torch.long)
    prompt_mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (prompt, response) in enumerate(pairs):
        ids = prompt + response
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        prompt_mask[row, : len(prompt)] = 1
    return input_ids, attention_mask, prompt_mask


def pad_token_id(tokenizer) -> int:
    """The tokenizer's pad id, else its EOS id, else 0 (padded positions are masked anyway)."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def first_blocks(model_dir: str, layers: int, out: Path) -> str:
    """A copy of ``model_dir`` keeping only its first ``layers`` transformer blocks: a cheap,
    weaker "small model" for the task term when no second trained model is at hand (its verdicts
    then say how much the later blocks add, not what a smaller trained model could do)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    model.config.layer_types = model.config.layer_types[:layers]
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return str(out)
