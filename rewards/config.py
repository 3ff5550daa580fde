"""The reward's own small config: how answers are extracted, compared and scored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RewardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    timeout_s: float = Field(5.0, gt=0.0)
    """Hard wall-clock limit per completion; the checking child process is killed after it."""
    accuracy_weight: float = Field(1.0, ge=0.0)
    """Weight of the 0/1 accuracy in the scalar reward."""
    format_weight: float = Field(0.0, ge=0.0)
    """Weight of the 0/1 format check (the answer is in \\boxed{}) in the scalar reward."""
    fallback: list[Literal["answer_line", "answer_is", "last_statement", "last_number"]] = []
    """Where to look for an answer when there is no \\boxed{}/\\fbox{}, in order: answer_line
    (an 'Answer: ...' line), answer_is (the clause after the last "answer is", as instruct models
    end: "So, the answer is 21."), last_statement (the last result stated with is / = / equals:
    "so the area is 6 x 9 = 54 square units"), last_number (the last number in the text).
    Empty = \\boxed{} only."""
    rel_tol: float = Field(1e-4, ge=0.0)
    """Relative tolerance when two answers are both plain numbers (decimals vs fractions)."""
    pi_numeric: bool = False
    """Accept a decimal approximation of a symbolic answer with pi (78.54 for 25\\pi).
    Off by default: the answer to 'give it in terms of pi' is symbolic."""
    num_workers: int = Field(2, ge=1)
    """Reward worker actors scoring in parallel (each runs checks in child processes)."""
    function: str | None = None
    """Custom reward as 'package.module:function' with the signature of
    rewards.verify.score(completion, ground_truth, *, timeout_s) -> RewardResult;
    None = the built-in geometry verifier."""

    @model_validator(mode="after")
    def _some_weight(self) -> RewardConfig:
        if self.accuracy_weight == 0.0 and self.format_weight == 0.0:
            raise ValueError("accuracy_weight and format_weight are both 0: every reward would be 0")
        if self.function is not None and ":" not in self.function:
            raise ValueError(f"function must look like 'package.module:function', got {self.function!r}")
        return self
