"""Read a rollout engine's state from inside its Ray actor, for tests only (``__ray_call__`` runs a
function on the actor's instance), so the production engine carries no test-only methods."""

from __future__ import annotations

import ray
import torch


def _stamped_version(engine) -> int:
    return engine.policy_version


def _prompt_logprobs(engine, sequences: list[list[int]]) -> list[list[float]]:
    """Log-prob of every token of each sequence given the ones before it (0 for the first), under
    the engine's current weights (vLLM's prompt log-probs)."""
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=1.0)
    outputs = engine.llm.generate([{"prompt_token_ids": s} for s in sequences], params, use_tqdm=False)
    return [
        [0.0] + [step[token].logprob for step, token in zip(out.prompt_logprobs[1:], seq[1:])]
        for seq, out in zip(sequences, outputs)
    ]


def engine_versions(fleet) -> list[int]:
    """The policy version each engine of ``fleet`` has stamped."""
    return ray.get([e.__ray_call__.remote(_stamped_version) for e in fleet.engines], timeout=60)


def engine_logprobs(fleet, sequence: list[int]) -> list[torch.Tensor]:
    """``sequence``'s per-token log-probs under each engine of ``fleet``."""
    refs = [e.__ray_call__.remote(_prompt_logprobs, [sequence]) for e in fleet.engines]
    return [torch.tensor(scores[0]) for scores in ray.get(refs, timeout=120)]
