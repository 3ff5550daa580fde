"""Find the final answer in untrusted model text.

Everything here is a single linear pass or a bounded regex over the text's tail, so a
megabyte of hostile output costs milliseconds and cannot hang: no backtracking
patterns over the whole text, no recursion, no evaluation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BOX_COMMANDS = ("\\boxed", "\\fbox")
# Fallbacks only look at the end of the text: the answer is stated last, and a bounded
# window keeps every regex linear in a small input.
FALLBACK_WINDOW_CHARS = 2000
# Applied to the tail with runs of spaces/tabs collapsed to one space, so no two
# quantifiers compete for the same run of blanks.
_ANSWER_LINE = re.compile(r"(?im)^[ *#>-]*(?:final )?answer ?[:：] ?(.{1,200}?) ?$")
# A number: thousands separators only in valid groups (10,455 but not 1,2), then an
# optional decimal part or /denominator.
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:(?:,|\{,\})\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_BLANKS = re.compile(r"[ \t]+")
MAX_BOXES = 10
MAX_CONNECTOR_CHARS = 40
_CONNECTOR = re.compile(r"^(?:[\s$,;&]|\\q?quad|\\[,;: ]|\\text\{ ?(?:and|or) ?\}|and\b|or\b)*$")
_MINERVA = re.compile(r"(?i)final answer is:? ?\$?(.{1,200}?)\$?\.? ?I hope")
# "... the answer is 21 square units." / "So, the final answer is: $21$": the clause after the last
# "answer is", up to the end of its line or sentence (a period not inside a number).
_ANSWER_IS = re.compile(r"(?i)\banswer (?:is|=) ?:? ?")
_CLAUSE_END = re.compile(r"\n|\.(?!\d)|;|,(?!\d{3})")
# "... so the area is 6 x 9 = 54 square units." / "which equals 4": a computed result, stated with
# = / equals / equal to / which is / gives, as a math span or a number (a power like 7^3 included)
# that no operator or operator word continues ("2 times (l + w)" states no result). A bare "is"
# does not count: "The base is 2 and the height is 6." restates the question's givens.
_STATEMENT = re.compile(
    r"(?i)(?:=|\bequals?|\bequal to|\bwhich is|\bgives(?: us)?) ?:? ?(?:approximately |about )?"
    r"(?:\$([^$]{1,100})\$|(-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+)?(?:\^\d+)?)"
    r"(?! ?(?:[×x*+\-/^(=\d]|times\b|plus\b|minus\b|divided\b|multiplied\b|over\b)))"
)
_MATH = re.compile(r"\$([^$]{1,100})\$|\\\((.{1,100}?)\\\)")


@dataclass(frozen=True)
class Extraction:
    answer: str | None  # several final boxes are joined with ", " here (for logs)
    method: str | None  # "boxed", "fbox", "answer_line", "last_number" or None
    parts: tuple[str, ...] = ()  # the contents of each final box; (answer,) otherwise

    @property
    def boxed(self) -> bool:
        """The answer came from \\boxed{}/\\fbox{}: the format the prompt asks for."""
        return self.method in ("boxed", "fbox")


def last_boxed(text: str) -> tuple[str, str] | None:
    """Content of the last closed top-level ``\\boxed{...}``/``\\fbox{...}`` and its command.

    Braces nest; ``\\{`` and ``\\}`` are literal characters, not groups. An unclosed box
    (the model was cut off) is ignored and an earlier closed one is used. One pass, O(n).
    """
    boxes = _top_level_boxes(text)
    if not boxes:
        return None
    _, _, command, content = boxes[-1]
    return content.strip(), command.lstrip("\\")


def final_boxes(text: str) -> tuple[list[str], str] | None:
    """The contents of the final run of top-level boxes and the last one's command.

    A run is boxes separated only by a connector (spaces, ``$``, ``,``, ``;``, ``and``,
    ``or``, ``\\quad``, ``\\text{ and }``): ``x = \\boxed{-2} and \\boxed{1}`` is a set of
    two solutions, ``\\boxed{3} ... so \\boxed{5}`` is the answer 5.
    """
    boxes = _top_level_boxes(text)
    if not boxes:
        return None
    run = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        gap = text[box[1] + 1 : run[0][0]]
        if len(gap) > MAX_CONNECTOR_CHARS or not _CONNECTOR.match(gap) or len(run) >= MAX_BOXES:
            break
        run.insert(0, box)
    return [content.strip() for _, _, _, content in run], boxes[-1][2].lstrip("\\")


def _top_level_boxes(text: str) -> list[tuple[int, int, str, str]]:
    """Every closed top-level box as (command start, closing brace index, command, content)."""
    boxes: list[tuple[int, int, str, str]] = []
    stack: list[tuple[int, int, str | None]] = []  # open '{': (content start, command start, box command or None)
    inside_box = False  # a box inside a box is an ordinary group of the outer one
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            command = _box_command_at(text, i)
            if command is not None:
                j = i + len(command)
                while j < n and text[j] in " \t":
                    j += 1
                if j < n and text[j] == "{":
                    stack.append((j + 1, i, None if inside_box else command))
                    inside_box = True
                    i = j + 1
                    continue
            i += 2  # skip the escaped character, so \{ and \} are not groups
            continue
        if char == "{":
            stack.append((i + 1, i, None))
        elif char == "}" and stack:
            start, command_start, command = stack.pop()
            if command is not None:
                inside_box = False
                boxes.append((command_start, i, command, text[start:i]))
        i += 1
    return boxes


def _box_command_at(text: str, i: int) -> str | None:
    for command in BOX_COMMANDS:
        if text.startswith(command, i):
            after = i + len(command)
            # \boxed must not be the start of a longer command name (\boxedfoo).
            if after >= len(text) or not text[after].isalpha():
                return command
    return None


def extract_answer(text: str, fallback: tuple[str, ...] | list[str] = ()) -> Extraction:
    """The final answer of ``text``: the last ``\\boxed{}``/``\\fbox{}``, else the fallbacks
    in order (``answer_line``: an ``Answer: ...`` line; ``last_number``: the last number).
    Returns ``Extraction(None, None)`` when there is no answer."""
    boxed = final_boxes(text)
    if boxed is not None:
        parts, command = boxed
        parts = [p for p in parts if p]
        if not parts:
            return Extraction(None, None)
        return Extraction(", ".join(parts), command, tuple(parts))
    tail = _BLANKS.sub(" ", text[-FALLBACK_WINDOW_CHARS:])
    for method in fallback:
        if method == "answer_line":
            matches = _MINERVA.findall(tail) or _ANSWER_LINE.findall(tail)
            if matches:
                answer = matches[-1].strip().strip("$").strip().rstrip(".").strip("$").strip()
                if answer:
                    return Extraction(answer, "answer_line", (answer,))
        elif method == "answer_is":
            answer = _answer_is(tail)
            if answer is not None:
                return Extraction(answer, "answer_is", (answer,))
        elif method == "last_statement":
            statements = _STATEMENT.findall(tail)
            if statements:
                math, number = statements[-1]
                answer = (math or number).strip()
                if answer:
                    return Extraction(answer, "last_statement", (answer,))
        elif method == "last_number":
            numbers = _NUMBER.findall(tail)
            if numbers:
                return Extraction(numbers[-1], "last_number", (numbers[-1],))
        else:
            raise ValueError(
                f"unknown fallback {method!r}; allowed: answer_line, answer_is, last_statement, last_number"
            )
    return Extraction(None, None)


def _answer_is(tail: str) -> str | None:
    """The answer a sentence like "So, the answer is 21 square units." states: the clause after the
    last "answer is" (to the end of its line or sentence, at most 200 characters); inside it, a
    math span ($...$, \\(...\\)) if there is one, else its number when it holds exactly one, else
    the number after its last "=" ("7 x 3 = 21"). A clause with several numbers and no "=" states
    no single answer: None, never a guess."""
    starts = [m.end() for m in _ANSWER_IS.finditer(tail)]
    if not starts:
        return None
    clause = tail[starts[-1] : starts[-1] + 200]
    end = _CLAUSE_END.search(clause)
    clause = clause[: end.start()] if end else clause
    math = _MATH.search(clause)
    if math:
        inner = (math.group(1) or math.group(2)).strip()
        return inner or None
    numbers = _NUMBER.findall(clause)
    if len(numbers) == 1:
        return numbers[0]
    if "=" in clause:
        after = _NUMBER.findall(clause[clause.rindex("=") :])
        return after[0] if len(after) == 1 else None
    return None
