"""A prompt-set row, whatever its source, and how it becomes prompt text."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PROMPT_TEMPLATE = "{question}{choices}\nPlease reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str  # gold answer, LaTeX or plain text, as rewards.verify.score expects
    choices: tuple[str, ...] | None = None  # multiple-choice options; the answer is then a letter
    solution: str | None = None  # worked solution, for warm-start SFT
    meta: dict = field(default_factory=dict)


def format_prompt(problem: Problem, template: str = DEFAULT_PROMPT_TEMPLATE) -> str:
    """Fill ``{question}`` and ``{choices}`` by plain replacement (LaTeX braces stay intact); a
    problem with images gets one image placeholder per image before its question."""
    from prompts.images import image_count, with_placeholders

    choices = ""
    if problem.choices:
        letters = "ABCDEFGHIJ"
        choices = "\n" + " ".join(f"({letters[i]}) {c}" for i, c in enumerate(problem.choices))
    question = with_placeholders(problem.question, image_count(problem))
    return template.replace("{question}", question).replace("{choices}", choices)


def render_prompt(
    problem: Problem, template: str = DEFAULT_PROMPT_TEMPLATE, *, tokenizer=None, chat_template: bool = False
) -> str:
    """The text the engine receives: the filled template, wrapped in the tokenizer's chat
    template (one user turn plus the generation prompt) when ``chat_template`` is set."""
    text = format_prompt(problem, template)
    if not chat_template:
        return text
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("data.chat_template=true needs a tokenizer that has a chat template")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


def prompt_ids(problem: Problem, template: str, tokenizer, *, chat_template: bool) -> list[int]:
    """The token ids the engine receives for ``problem``: ``render_prompt``'s text, encoded without
    the tokenizer's own special tokens (a chat template already holds its turn markers)."""
    text = render_prompt(problem, template, tokenizer=tokenizer, chat_template=chat_template)
    return tokenizer.encode(text, add_special_tokens=False)
