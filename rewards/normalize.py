"""Canonical text of an answer, before any comparison.

Each rule removes notation that does not change the value, and each could make two
different answers look equal; the guard that prevents that is written beside it (docs/rewards.md
lists them). Whitespace runs are collapsed to one space FIRST, so no later pattern
sees two spaces in a row: every regex here then does bounded work per position (at most
one optional space between tokens, no nested quantifiers), which keeps the whole
function linear in the length of the text.
"""

from __future__ import annotations

import re

_NEGATIVE_THIN_COMMA = re.compile(r",\\! ?(?=\d{3}(?!\d))")  # 32,\!349: MATH's thousands separator
_SPACING = re.compile(r"\\(?:[,;: ]|!|q?quad\b|left\b|right\b|displaystyle\b)|~")
_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|textnormal|textrm|mathrm|mathbf|mbox|operatorname) ?\{([^{}]*)\}")
# Degree marks only right after a number or a group: '\circ' alone is composition (f \circ g).
_DEGREES = re.compile(r"(?<=[\d}]) ?(?:\^ ?\{ ?\\circ ?\}|\^ ?\\circ|°|\\degree\b|degrees?\b|deg\b)", re.I)
_UNIT_POWER = r"(?: ?\^ ?\{? ?[23] ?\}?|²|³)?"
_UNIT_WORDS = (
    r"units?|cm|mm|km|inch(?:es)?|in|ft|feet|foot|yd|yards?|miles?|"
    r"(?:centi|milli|kilo)?met(?:er|re)s?"
)
# A trailing unit is stripped after a number, a group or a space; single-letter 'm' only
# after a space (2m may be 2 times m).
_TRAILING_UNIT = re.compile(
    rf"(?:(?<=[\d}}).])|(?<= ))(?:(?:square|sq\.?|cubic|cu\.?) ?)?(?:{_UNIT_WORDS}){_UNIT_POWER}\.?$", re.I
)
_TRAILING_METRE = re.compile(rf"(?<=[\d}}] )m{_UNIT_POWER}\.?$")
# \frac 1 2 is TeX for \frac{1}{2}: rewrite it before spaces between digits become an error.
_FRAC_DIGITS = re.compile(r"\\frac ?(\d) ?(\d)(?!\d)")
# Thousands separators: 1{,}234 / 1\,234 / 1 234 anywhere, plain 1,234 only where no
# bracket is open (in (12,102) or [0,100] the comma separates coordinates or ends). Every
# group after the first has exactly 3 digits, and no digit or point touches the number
# (so 1,2 and 0.1,234 stay).
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\{,\}| )\d{3})+(?![\d])")
_THOUSANDS_COMMA = re.compile(r"(?<![\d.])\d{1,3}(?:(?:,|\{,\}| )\d{3})+(?![\d])")
_BRACKETS = re.compile(r"[(\[]|\\\{")
_DIGITS_APART = re.compile(r"\d \d")
# "1 and 2", "x = 2 or x = 3": a list, written as one (a list never equals a single answer).
_LIST_WORDS = re.compile(r" ?\b(?:and|or)\b ?")


class UnparsableAnswer(ValueError):
    """The answer (or the gold) is not something the verifier can read."""


def normalize_answer(answer: str, *, keep_spaces: bool = False) -> str:
    """Canonical text: no ``$``, units, degree marks, spacing commands, ``\\text{}``
    wrappers, thousands separators or whitespace; ``\\dfrac``/``\\tfrac`` become ``\\frac``.

    Raises ``UnparsableAnswer`` for digits separated by a space that is not a thousands
    separator (``12 3``): joining them would read two numbers as one. ``keep_spaces``
    leaves single spaces between tokens (for a LaTeX parser: ``\\pi r`` is not ``\\pir``)."""
    s = _collapse(answer).strip("$ ").strip()
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _NEGATIVE_THIN_COMMA.sub("{,}", s)
    s = _collapse(_SPACING.sub(" ", s))
    for _ in range(3):  # unwrap nested \text{...} a bounded number of times
        s = _TEXT_WRAPPERS.sub(r"\1", s)
    s = _collapse(s).strip("$ ").strip()
    s = _LIST_WORDS.sub(",", s).strip(",")
    s = _DEGREES.sub("", s)
    s = _TRAILING_METRE.sub("", _TRAILING_UNIT.sub("", s)).strip()
    s = _FRAC_DIGITS.sub(r"\\frac{\1}{\2}", s)
    thousands = _THOUSANDS if _BRACKETS.search(s) else _THOUSANDS_COMMA
    s = thousands.sub(lambda m: re.sub(r"\{,\}|[, ]", "", m.group(0)), s)
    if _DIGITS_APART.search(s):
        raise UnparsableAnswer(f"digits separated by a space in {answer[:80]!r}: not one number")
    return (s if keep_spaces else s.replace(" ", "")).rstrip(".")


def _collapse(text: str) -> str:
    return " ".join(text.split())
