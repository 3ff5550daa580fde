"""A generated problem before it becomes a ``Problem``: question, exact answer, solution steps,
and the worked solutions written from them for the warm start's SFT."""

from __future__ import annotations

from dataclasses import dataclass

import sympy


@dataclass(frozen=True)
class Draft:
    question: str
    answer: sympy.Expr
    givens: tuple[str, ...]  # restated in verbose solutions
    steps: tuple[str, ...]  # the reasoning, one short sentence each
    check: str = ""  # the result verified another way; drafts that have one get an elaborate solution


def worked_solutions(draft: Draft, answer: str) -> dict[str, str]:
    """The worked solutions the warm start's SFT draws from: concise (the steps), verbose
    (givens restated, a redundant check) and, for drafts with a real check, elaborate: numbered
    steps, the rule in words, the result verified another way -- about twice the verbose length,
    so a warm-started model keeps a spread of lengths for RL to move."""
    final = f"The answer is \\boxed{{{answer}}}."
    solutions = {
        "concise": " ".join(draft.steps) + " " + final,
        "verbose": (
            "We are given: "
            + "; ".join(draft.givens)
            + ". "
            + " ".join(draft.steps)
            + f" Checking the computation once more gives {answer} again. "
            + final
        ),
    }
    if draft.check:
        numbered = "\n".join(f"Step {i}: {step}" for i, step in enumerate(draft.steps, start=1))
        solutions["elaborate"] = (
            f"Let's work through this carefully. The problem gives us {' and '.join(draft.givens)}.\n"
            f"{numbered}\n"
            f"Let me check this result another way. {draft.check}\n"
            "The check agrees, so the result stands.\n" + final
        )
    return solutions
