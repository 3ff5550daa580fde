"""A prompt-set row, whatever its source, and how it becomes prompt text."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PROMPT_TEMPLATE = (
    "{question}{choices}\nPlease reason step by step, and put your final answer within \\boxed{}."
)


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str  # gold answer, LaTeX or plain text, as rewards.verify.score expects
    choices: tuple[str, ...] | None = None  # multiple-choice options; the answer is then a letter
    solution: str | None = None  # worked solution, for warm-start SFT
    meta: dict = field(default_factory=dict)


def format_prompt(problem: Problem, template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """Fill ``{question}`` and ``{choices}`` by plain replacement (LaTeX braces stay intact)."""
    choices = ""
    if problem.choices:
        letters = "ABCDEFGHIJ"
        choices = "\n" + " ".join(f"({letters[i]}) {c}" for i, c in enumerate(problem.choices))
    return template.replace("{question}", problem.question).replace("{choices}", choices)
