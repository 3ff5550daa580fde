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
_ANSWER_LINE = re.compile(r"(?im)^[ \t*#>-]*(?:final\s+)?answer\s*[:：]\s*(.{1,200}?)[ \t]*$")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


@dataclass(frozen=True)
class Extraction:
    answer: str | None
    method: str | None  # "boxed", "fbox", "answer_line", "last_number" or None

    @property
    def boxed(self) -> bool:
        """The answer came from \\boxed{}/\\fbox{}: the format the prompt asks for."""
        return self.method in ("boxed", "fbox")


def last_boxed(text: str) -> tuple[str, str] | None:
    """Content of the last closed top-level ``\\boxed{...}``/``\\fbox{...}`` and its command.

    Braces nest; ``\\{`` and ``\\}`` are literal characters, not groups. An unclosed box
    (the model was cut off) is ignored and an earlier closed one is used. One pass, O(n).
    """
    best: tuple[int, str, str] | None = None  # (start, command, content)
    stack: list[tuple[int, str | None]] = []  # open '{': (content start, box command or None)
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
                    stack.append((j + 1, None if inside_box else command))
                    inside_box = True
                    i = j + 1
                    continue
            i += 2  # skip the escaped character, so \{ and \} are not groups
            continue
        if char == "{":
            stack.append((i + 1, None))
        elif char == "}" and stack:
            start, command = stack.pop()
            if command is not None:
                inside_box = False
                best = (start, command, text[start:i])
        i += 1
    if best is None:
        return None
    _, command, content = best
    return content.strip(), command.lstrip("\\")


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
    boxed = last_boxed(text)
    if boxed is not None:
        content, command = boxed
        return Extraction(content or None, command if content else None)
    tail = text[-FALLBACK_WINDOW_CHARS:]
    for method in fallback:
        if method == "answer_line":
            matches = _ANSWER_LINE.findall(tail)
            if matches:
                return Extraction(matches[-1].strip().rstrip("."), "answer_line")
        elif method == "last_number":
            numbers = _NUMBER.findall(tail)
            if numbers:
                return Extraction(numbers[-1], "last_number")
        else:
            raise ValueError(f"unknown fallback {method!r}; allowed: answer_line, last_number")
    return Extraction(None, None)
