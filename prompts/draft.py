"""A generated problem before it becomes a ``Problem``: question, exact answer, solution steps."""

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
