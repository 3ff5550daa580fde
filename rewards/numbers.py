"""Plain numbers read exactly, and when two of them are the same answer.

A number is an exact rational (``Fraction``) plus how it was written: ``places`` is the
count of digits after a decimal point (None for integers and fractions, which are exact),
``percent`` says it carried a percent sign. Nothing is evaluated; the parser is a few
anchored regexes over at most 64 characters.

When two numbers match (``numbers_match``), as documented in docs/rewards.md:
- two exact numbers, or two numbers with finite decimal expansions (``0.75`` and
  ``\\frac{3}{4}``, ``10000`` and ``10000.0``), match only when they are equal: no
  tolerance, so ``9999`` is not ``10000`` and ``0.5000001`` is not ``0.5``;
- a decimal against a fraction with no finite decimal expansion (``0.3333`` for
  ``\\frac{1}{3}``) is necessarily an approximation: it matches when it is within one unit
  of its own last digit (the fraction rounded or truncated to the places given) AND within
  ``rel_tol`` (so ``0.33`` is not ``\\frac{1}{3}`` at the default 1e-4);
- a percent on one side: ``28\\%`` matches ``28`` (the sign read as a unit) and ``0.28``
  (its value); ``28`` never matches ``0.28``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_NUMBER_CHARS = 64
_DECIMAL = r"(?:\d+(?:\.\d+)?|\.\d+)"
_NUMBER = re.compile(rf"^([+-]?)({_DECIMAL})$")
_SLASH = re.compile(r"^([+-]?)(\d+)/(\d+)$")
_FRAC = re.compile(r"^([+-]?)\\frac\{([+-]?)(\d+)\}\{([+-]?)(\d+)\}$")
_FRAC_SHORT = re.compile(r"^([+-]?)\\frac(\d)(\d)$")  # \frac34: one digit each, as TeX reads it
_PERCENT = re.compile(r"^(.*?)(?:\\%|%|percentage|percent|pct)$")


@dataclass(frozen=True)
class Number:
    value: Fraction
    places: int | None = None  # digits after the decimal point; None = exact (integer, fraction)
    percent: bool = False


def parse_number(text: str) -> Number | None:
    """A number from a normalised answer (no whitespace, no thousands separators):
    ``12``, ``-0.75``, ``.5``, ``3/4``, ``\\frac{3}{4}``, ``\\frac34``, each optionally
    followed by ``\\%``/``%``/``percent``/``pct``. None for anything else."""
    if len(text) > MAX_NUMBER_CHARS:
        return None
    percent = False
    if m := _PERCENT.match(text):
        text, percent = m.group(1), True
    number = _parse_plain(text)
    return None if number is None else Number(number.value, number.places, percent)


def _parse_plain(text: str) -> Number | None:
    if m := _NUMBER.match(text):
        sign = -1 if m.group(1) == "-" else 1
        digits = m.group(2)
        places = len(digits.split(".", 1)[1]) if "." in digits else None
        return Number(sign * Fraction(digits), places)
    if m := _SLASH.match(text):
        if int(m.group(3)) == 0:
            return None
        return Number((-1 if m.group(1) == "-" else 1) * Fraction(int(m.group(2)), int(m.group(3))))
    if m := _FRAC.match(text):
        signs = [g == "-" for g in (m.group(1), m.group(2), m.group(4))]
        if int(m.group(5)) == 0:
            return None
        sign = -1 if sum(signs) % 2 else 1
        return Number(sign * Fraction(int(m.group(3)), int(m.group(5))))
    if m := _FRAC_SHORT.match(text):
        if m.group(3) == "0":
            return None
        return Number((-1 if m.group(1) == "-" else 1) * Fraction(int(m.group(2)), int(m.group(3))))
    return None


def terminates(value: Fraction) -> bool:
    """True when ``value`` has a finite decimal expansion (its denominator is 2^a 5^b)."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def values_match(
    answer: Fraction, answer_places: int | None, gold: Fraction, gold_places: int | None, rel_tol: float
) -> bool:
    """Exact unless one side is a decimal approximating a value with no finite decimal form
    (see the module docstring); ``places`` None means the side is exact."""
    if answer == gold:
        return True
    approximations = [
        (places, other)
        for places, other in ((answer_places, gold), (gold_places, answer))
        if places is not None and not terminates(other)
    ]
    if not approximations:
        return False  # both sides are exactly representable: equal or not, no tolerance
    places = min(p for p, _ in approximations)
    return approximates(answer, gold, places, rel_tol)


def approximates(a: Fraction, b: Fraction, places: int, rel_tol: float) -> bool:
    """A decimal of ``places`` digits after the point stands for ``b``: within one unit of
    its last digit (rounded or truncated) and within ``rel_tol`` of it."""
    diff = abs(a - b)
    return diff < Fraction(1, 10**places) and diff <= Fraction(rel_tol) * max(abs(a), abs(b))


def numbers_match(answer: Number, gold: Number, rel_tol: float) -> bool:
    if answer.percent == gold.percent:
        return values_match(answer.value, answer.places, gold.value, gold.places, rel_tol)
    percent, other = (answer, gold) if answer.percent else (gold, answer)
    as_value = Number(percent.value / 100, None if percent.places is None else percent.places + 2)
    return any(values_match(p.value, p.places, other.value, other.places, rel_tol) for p in (percent, as_value))
