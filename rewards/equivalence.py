"""Is an extracted answer equal to the gold answer? Geometry-aware, never evaluates text.

Deciders, cheapest first:
1. multiple choice: the gold is a letter A-E; the answer's one letter decides;
2. plain numbers (``rewards.numbers``): exact rationals; a tolerance only for a decimal
   that approximates a value with no finite decimal form;
3. lists: several ``\\boxed{}`` or a comma list against a set ``\\{..\\}``/bare list
   (any order) or a tuple ``(..)`` (in order), element by element with 1-2;
4. math-verify on the LaTeX of both sides (its LaTeX parser builds sympy objects from a
   grammar; its expression parser, which calls ``eval``, is never used).
``fast_match`` runs 1-3 and is linear in the (at most ``MAX_ANSWER_CHARS``) text, so the
caller runs it in-process; only 4 can be slow, which is why ``rewards.verify`` runs
``answers_match`` in a child process with a deadline.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from fractions import Fraction

from rewards.normalize import UnparsableAnswer, normalize_answer
from rewards.numbers import Number, approximates, numbers_match, parse_number

__all__ = [
    "MAX_ANSWER_CHARS",
    "UnparsableAnswer",
    "answers_match",
    "choice_letter",
    "fast_match",
    "normalize_answer",
    "parse_number",
]

# Long answers are not geometry answers; refusing them early keeps sympy away from
# megabyte inputs (they score as parse errors, not as slow timeouts).
MAX_ANSWER_CHARS = 500
MAX_ELEMENTS = 20

_CHOICE_GOLD = re.compile(r"^\(?([A-E])\)?\.?$")
# The answer's letter: alone, or followed by ')' '.' ':' and the option's text.
_CHOICE_ANSWER = re.compile(r"^\(?([A-Ea-e])(?:\)|\.|:|$)")
_OTHER_LETTER = re.compile(r"(?<![A-Za-z\\])\(?[A-E]\)?(?![A-Za-z])")

Parts = Sequence[str]


def choice_letter(gold: str) -> str | None:
    """The letter of a multiple-choice gold answer (``C``, ``(C)``, ``C.``), else None."""
    m = _CHOICE_GOLD.match(normalize_answer(gold))
    return m.group(1) if m else None


def _choice_match(answer: str, letter: str) -> bool:
    """``C``, ``(C)``, ``C.``, ``C) 45``; never a hedge like ``C or D`` / ``(C), (D)``."""
    norm = normalize_answer(answer)
    m = _CHOICE_ANSWER.match(norm)
    if not m or m.group(1).upper() != letter:
        return False
    return _OTHER_LETTER.search(norm[m.end() :]) is None


def split_list(text: str) -> tuple[str, list[str], str]:
    """A normalised answer as (opening, top-level elements, closing): ``\\{1,2\\}`` ->
    ('\\{', ['1', '2'], '\\}'); ``(1,2]`` -> ('(', ['1', '2'], ']'); ``1,2`` -> ('', ['1', '2'], '');
    anything without a top-level comma -> ('', [text], ''). One pass over the text."""
    opening, closing, inner = "", "", text
    for o, c in (("\\{", "\\}"), ("(", ")"), ("(", "]"), ("[", "]"), ("[", ")"), ("{", "}")):
        if text.startswith(o) and text.endswith(c) and len(text) >= len(o) + len(c) and _encloses(text, len(o)):
            opening, closing, inner = o, c, text[len(o) : len(text) - len(c)]
            break
    if opening == "{":  # a TeX group {1,2,3} prints as the bare list 1,2,3
        opening = closing = ""
    elements, depth, start, i = [], 0, 0, 0
    while i < len(inner):
        char = inner[i]
        if char == "\\" and i + 1 < len(inner) and inner[i + 1] in "{}":
            depth += 1 if inner[i + 1] == "{" else -1
            i += 2
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char in ",;" and depth == 0:
            elements.append(inner[start:i])
            start = i + 1
        i += 1
    elements.append(inner[start:])
    if len(elements) == 1 and opening not in ("\\{",):
        return "", [text], ""  # a parenthesised single value is just a value
    return opening, elements, closing


def _encloses(text: str, start: int) -> bool:
    """The bracket opening ``text`` closes only at its end (``(1)+(2)`` is not enclosed)."""
    depth = 1
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            depth += 1 if text[i + 1] == "{" else -1
            i += 2
        else:
            depth += 1 if char in "([{" else -1 if char in ")]}" else 0
            i += 1
        if depth == 0 and i < len(text):
            return False
    return True


def _number(text: str) -> Number | None:
    return parse_number(text)


def _element_fast(answer: str, gold: str, rel_tol: float) -> bool | None:
    """One normalised element against another: True/False when the cheap deciders know."""
    if answer == gold:
        return True
    answer_num, gold_num = _number(answer), _number(gold)
    if answer_num is not None and gold_num is not None:
        return numbers_match(answer_num, gold_num, rel_tol)
    answer_list, gold_list = split_list(answer), split_list(gold)
    if len(answer_list[1]) > 1 or len(gold_list[1]) > 1:
        if (answer_num is not None and len(gold_list[1]) > 1) or (gold_num is not None and len(answer_list[1]) > 1):
            return False  # a list is never one number (and the other way round)
        if (answer_list[0], answer_list[2]) == (gold_list[0], gold_list[2]) or _both_sets(answer_list, gold_list):
            return _lists_match(answer_list, gold_list, lambda a, g: _element_fast(a, g, rel_tol))
    return None


def _both_sets(a: tuple[str, list[str], str], b: tuple[str, list[str], str]) -> bool:
    return a[0] in ("", "\\{") and b[0] in ("", "\\{")


def _lists_match(answer, gold, element_match) -> bool | None:
    """Same length; sets (``\\{..\\}`` or bare lists) in any order, tuples/intervals in order."""
    (_, a_items, _), (_, g_items, _) = answer, gold
    if len(a_items) != len(g_items):
        return False
    if len(g_items) > MAX_ELEMENTS:
        return None
    if not _both_sets(answer, gold):
        verdicts = [element_match(a, g) for a, g in zip(a_items, g_items)]
        return False if False in verdicts else None if None in verdicts else True
    unused = list(g_items)
    undecided = False
    for a in a_items:
        for j, g in enumerate(unused):
            verdict = element_match(a, g)
            if verdict:
                del unused[j]
                break
            undecided |= verdict is None
        else:
            if not undecided:
                return False
            return None
    return True


def _several_boxes(parts: Parts, gold: str, element_match) -> bool | None:
    """Several final ``\\boxed{}``: a set of solutions or the coordinates of a pair. They match
    a set/bare-list gold in any order and a tuple gold ``(..)`` in order; against a single
    gold (a hedge: ``\\boxed{2} or \\boxed{3}``) or an interval they are wrong."""
    gold_list = split_list(normalize_answer(gold))
    if len(gold_list[1]) < 2 or gold_list[0] == "[" or gold_list[2] == "]":
        return False
    answers = [normalize_answer(p) for p in parts]
    kind = "" if gold_list[0] in ("", "\\{") else "("
    return _lists_match((kind, answers, ""), gold_list, element_match)


def fast_match(answer: str | Parts, gold: str, *, rel_tol: float = 1e-4) -> bool | None:
    """The cheap deciders (choice letters, identical text, numbers, lists of numbers);
    None = undecided. Linear-time string work on at most ``MAX_ANSWER_CHARS`` characters:
    safe to run in the calling process without a timeout."""
    parts = _parts(answer)
    letter = choice_letter(gold)
    if letter is not None:
        return len(parts) == 1 and _choice_match(parts[0], letter)
    if len(parts) > 1:
        return _several_boxes(parts, gold, lambda a, g: _element_fast(a, g, rel_tol))
    return _element_fast(normalize_answer(parts[0]), normalize_answer(gold), rel_tol)


def answers_match(answer: str | Parts, gold: str, *, rel_tol: float = 1e-4, pi_numeric: bool = False) -> bool:
    """True when ``answer`` (as extracted from a completion: one string, or the contents
    of several final boxes) equals ``gold``.

    Raises ``UnparsableAnswer`` when neither the fast paths nor math-verify can read a side.
    May be slow on hostile input: run it under a hard timeout (``rewards.verify`` does).
    """
    decided = fast_match(answer, gold, rel_tol=rel_tol)
    if decided is not None:
        return decided
    parts = _parts(answer)

    def element_match(a: str, g: str) -> bool:
        fast = _element_fast(a, g, rel_tol)
        return fast if fast is not None else _math_verify_match(a, g, rel_tol=rel_tol, pi_numeric=pi_numeric)

    if len(parts) > 1:
        return bool(_several_boxes(parts, gold, element_match))
    return _math_verify_match(
        normalize_answer(parts[0], keep_spaces=True),
        normalize_answer(gold, keep_spaces=True),
        rel_tol=rel_tol,
        pi_numeric=pi_numeric,
    )


def _parts(answer: str | Parts) -> list[str]:
    parts = [answer] if isinstance(answer, str) else list(answer)
    if not parts or sum(len(p) for p in parts) > MAX_ANSWER_CHARS:
        raise UnparsableAnswer(f"answer longer than {MAX_ANSWER_CHARS} characters")
    return parts


def _math_verify_match(answer: str, gold: str, *, rel_tol: float, pi_numeric: bool) -> bool:
    import sympy
    from math_verify import LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # Timeouts are disabled here on purpose: math-verify's own use signal.alarm, which
    # fails off the main thread (verl PR 5635); the caller's child process is the timeout.
    config = [LatexExtractionConfig()]
    gold_parsed = parse(f"\\boxed{{{gold}}}", extraction_config=config, parsing_timeout=None)
    if not gold_parsed:
        raise UnparsableAnswer(f"gold answer {gold!r} does not parse")
    answer_num = _number(answer.replace(" ", ""))
    if pi_numeric and answer_num is not None and answer_num.places is not None and not answer_num.percent:
        gold_expr = gold_parsed[0]
        if isinstance(gold_expr, sympy.Basic) and gold_expr.has(sympy.pi):
            value = gold_expr.evalf(30)
            if value.is_number and value.is_real:
                return approximates(answer_num.value, Fraction(str(value)), answer_num.places, rel_tol)
    answer_parsed = parse(f"\\boxed{{{answer}}}", extraction_config=config, parsing_timeout=None)
    if not answer_parsed:
        raise UnparsableAnswer(f"answer {answer!r} does not parse")
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))
