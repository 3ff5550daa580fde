"""Is an extracted answer equal to the gold answer? Geometry-aware, never evaluates text.

Three deciders, cheapest first:
1. multiple choice: the gold is a letter A-E; the answer's letter decides;
2. plain numbers: both sides parse as integers, decimals or fractions (a strict regex
   parser, no ``eval``); equal within a relative tolerance;
3. math-verify on the LaTeX of both sides (its LaTeX parser builds sympy objects from a
   grammar; its expression parser, which calls ``eval``, is never used).
Only the third can be slow, which is why ``rewards.verify`` runs this in a child process.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction

# Long answers are not geometry answers; refusing them early keeps sympy away from
# megabyte inputs (they score as parse errors, not as slow timeouts).
MAX_ANSWER_CHARS = 500

_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree|\bdegrees?\b|\bdeg\b", re.I)
_UNITS = (
    r"(?:square|sq\.?|cubic|cu\.?)?\s*"
    r"(?:units?|cm|mm|km|m|in|inch(?:es)?|ft|feet|foot|yd|yards?|miles?|"
    r"(?:centi|milli|kilo)?met(?:er|re)s?|meters?)"
    r"\s*(?:\^\s*\{?\s*[23]\s*\}?|²|³)?"
)
_TRAILING_UNIT = re.compile(r"(?<=[\d}\s)i.])\s*" + _UNITS + r"\s*$", re.I)
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:(?:,|\{,\})\d{3})+(?![\d])")
_SPACING = re.compile(r"\\[,;:! ]|\\left|\\right|\\displaystyle|~")
_CHOICE_GOLD = re.compile(r"^\(?([A-E])\)?\.?$")
_CHOICE_ANSWER = re.compile(r"^\(?([A-Ea-e])(?:\)|\.|:|\s|$)")
_DECIMAL = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER = re.compile(rf"^{_DECIMAL}$")
_SLASH = re.compile(rf"^({_DECIMAL})/({_DECIMAL})$")
_FRAC = re.compile(rf"^([+-]?)\\frac\{{({_DECIMAL})\}}\{{({_DECIMAL})\}}$")
_FRAC_SHORT = re.compile(r"^([+-]?)\\frac(\d)(\d)$")


def normalize_answer(answer: str) -> str:
    """Canonical text of an answer: no ``$``, units, degree marks, spacing commands,
    thousands separators or whitespace; ``\\dfrac``/``\\tfrac`` become ``\\frac``."""
    s = answer.strip().strip("$").strip()
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _SPACING.sub(" ", s)
    for _ in range(3):  # unwrap nested \text{...} a bounded number of times
        s = _TEXT_WRAPPERS.sub(r"\1", s)
    s = _DEGREES.sub("", s)
    s = _TRAILING_UNIT.sub("", s).strip()
    s = _THOUSANDS.sub(lambda m: m.group(0).replace("{,}", "").replace(",", ""), s)
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".")


def parse_number(text: str) -> Fraction | None:
    """An exact number from a normalised answer (``12``, ``-0.75``, ``3/4``, ``\\frac{3}{4}``,
    ``\\frac34``), or None. Pure regex and ``Fraction``; nothing is evaluated."""
    if len(text) > 64:
        return None
    try:
        if _NUMBER.match(text):
            return Fraction(text)
        if m := _SLASH.match(text):
            return Fraction(m.group(1)) / Fraction(m.group(2))
        if m := _FRAC.match(text) or _FRAC_SHORT.match(text):
            sign = -1 if m.group(1) == "-" else 1
            return sign * Fraction(m.group(2)) / Fraction(m.group(3))
    except ZeroDivisionError:
        return None
    return None


def choice_letter(gold: str) -> str | None:
    """The letter of a multiple-choice gold answer (``C``, ``(C)``, ``C.``), else None."""
    m = _CHOICE_GOLD.match(normalize_answer(gold))
    return m.group(1) if m else None


def numbers_close(a: Fraction, b: Fraction, rel_tol: float) -> bool:
    if a == b:
        return True
    return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))


class UnparsableAnswer(ValueError):
    """The answer (or the gold) is not something the verifier can read."""


def fast_match(answer: str, gold: str, *, rel_tol: float = 1e-4) -> bool | None:
    """The cheap deciders (choice letters, identical text, plain numbers); None = undecided.

    Linear-time string work on at most ``MAX_ANSWER_CHARS`` characters: safe to run in
    the calling process without a timeout.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        raise UnparsableAnswer(f"answer longer than {MAX_ANSWER_CHARS} characters")
    letter = choice_letter(gold)
    if letter is not None:
        m = _CHOICE_ANSWER.match(normalize_answer(answer))
        return bool(m) and m.group(1).upper() == letter
    answer_norm, gold_norm = normalize_answer(answer), normalize_answer(gold)
    if answer_norm == gold_norm:
        return True
    answer_num, gold_num = parse_number(answer_norm), parse_number(gold_norm)
    if answer_num is not None and gold_num is not None:
        return numbers_close(answer_num, gold_num, rel_tol)
    return None


def answers_match(answer: str, gold: str, *, rel_tol: float = 1e-4, pi_numeric: bool = False) -> bool:
    """True when ``answer`` (as extracted from a completion) equals ``gold``.

    Raises ``UnparsableAnswer`` when neither the fast paths nor math-verify can read a side.
    May be slow on hostile input: run it under a hard timeout (``rewards.verify`` does).
    """
    decided = fast_match(answer, gold, rel_tol=rel_tol)
    if decided is not None:
        return decided
    answer_norm, gold_norm = normalize_answer(answer), normalize_answer(gold)
    return _math_verify_match(
        answer_norm, gold_norm, parse_number(answer_norm), rel_tol=rel_tol, pi_numeric=pi_numeric
    )


def _math_verify_match(
    answer: str, gold: str, answer_num: Fraction | None, *, rel_tol: float, pi_numeric: bool
) -> bool:
    import sympy
    from math_verify import LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # Timeouts are disabled here on purpose: math-verify's own use signal.alarm, which
    # fails off the main thread (verl PR 5635); the caller's child process is the timeout.
    config = [LatexExtractionConfig()]
    gold_parsed = parse(f"\\boxed{{{gold}}}", extraction_config=config, parsing_timeout=None)
    if not gold_parsed:
        raise UnparsableAnswer(f"gold answer {gold!r} does not parse")
    if pi_numeric and answer_num is not None:
        gold_expr = gold_parsed[0]
        if isinstance(gold_expr, sympy.Basic) and gold_expr.has(sympy.pi):
            value = gold_expr.evalf(30)
            if value.is_number and value.is_real:
                return numbers_close(answer_num, Fraction(str(value)), rel_tol)
    answer_parsed = parse(f"\\boxed{{{answer}}}", extraction_config=config, parsing_timeout=None)
    if not answer_parsed:
        raise UnparsableAnswer(f"answer {answer!r} does not parse")
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))
