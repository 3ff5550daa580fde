"""Where prompts come from and how they become prompt text."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prompts.problems import DEFAULT_PROMPT_TEMPLATE


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


def _known(families: list[str], known, what: str) -> list[str]:
    unknown = [f for f in families if f not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {', '.join(known)}")
    return families


class SyntheticSource(_Strict):
    """Generated geometry problems with exact answers (offline, the CPU default)."""

    kind: Literal["synthetic"] = "synthetic"
    """Source tag (the discriminator of ``data.source``)."""
    num_train: int = Field(10_000, ge=1)
    """Distinct training problems."""
    num_test: int = Field(500, ge=1)
    """Distinct held-out problems (never equal to a training problem)."""
    families: list[str] = []
    """Problem families to draw from; empty = all (see prompts.synthetic.FAMILIES)."""
    levels: list[Literal[0, 1, 2, 3]] = [1, 2, 3]
    """Difficulty levels to draw from. 0 = one step, one-digit operands, plain words (for a small
    pretrained model; some families only: prompts.plain.PLAIN)."""
    mix: list[str] = []
    """Explicit ``family:level`` pairs drawn uniformly (e.g. ``triangle_angle_sum:1``); when set,
    it replaces ``families`` x ``levels`` (for a mix where one family's hard level is left out)."""
    test_buckets: int = Field(20, ge=2)
    """1 in ``test_buckets`` questions (by a hash of the text) is held out: raise the share
    (lower this) for a mix of small families, whose held-out set would otherwise be small."""
    seed: int = 0
    """Generator seed: the same seed gives the same problems in the same order."""

    @field_validator("families")
    @classmethod
    def _known_families(cls, families: list[str]) -> list[str]:
        from prompts.synthetic import FAMILIES

        return _known(families, FAMILIES, "families")

    @field_validator("mix")
    @classmethod
    def _known_pairs(cls, mix: list[str]) -> list[str]:
        from prompts.synthetic import FAMILIES, LEVELS

        for pair in mix:
            family, _, level = pair.partition(":")
            if family not in FAMILIES or level not in {str(v) for v in LEVELS}:
                raise ValueError(
                    f"data.source.mix: {pair!r} is not family:level (families: {', '.join(FAMILIES)}; "
                    f"levels: {', '.join(map(str, LEVELS))})"
                )
        return mix

    @model_validator(mode="after")
    def _mix_or_families(self) -> SyntheticSource:
        # by value, not by "was it set": a resolved config lists the defaults and must reload
        if self.mix and (self.families or list(self.levels) != [1, 2, 3]):
            raise ValueError(
                "data.source.mix replaces data.source.families and data.source.levels: set one or the other"
            )
        from prompts.plain import PLAIN

        at_zero = [f for f, v in self.pairs() if v == 0] if self.mix else (self.families if 0 in self.levels else [])
        plainless = sorted(set(at_zero) - set(PLAIN))
        if plainless:
            raise ValueError(
                f"data.source.levels: level 0 exists for {', '.join(PLAIN)} only, not {', '.join(plainless)}"
            )
        if 0 in self.levels and list(self.levels) != [0] and not self.families and not self.mix:
            raise ValueError(
                "data.source.levels: level 0 with other levels needs data.source.families (level 0 exists for "
                f"{', '.join(PLAIN)} only) or a data.source.mix of family:level pairs"
            )
        return self

    def pairs(self) -> list[tuple[str, int]]:
        """``mix`` parsed into (family, level) pairs (empty without a mix)."""
        return [(family, int(level)) for family, _, level in (pair.partition(":") for pair in self.mix)]


class DiagramSource(_Strict):
    """Generated geometry problems that come with a rendered figure (prompts.diagrams), for a
    vision-language policy: each prompt carries its image."""

    kind: Literal["diagrams"] = "diagrams"
    """Source tag (the discriminator of ``data.source``)."""
    num_train: int = Field(2_000, ge=1)
    """Distinct training problems (text and figure together)."""
    num_test: int = Field(200, ge=1)
    """Distinct held-out problems."""
    families: list[str] = []
    """Diagram families to draw from; empty = all (see prompts.diagrams.DIAGRAM_FAMILIES)."""
    figure_only: bool = True
    """The text leaves out what the figure shows ("Find x."): the model must read the image.
    False states the numbers in the text too."""
    image_size: int = Field(112, ge=28, multiple_of=28)
    """Rendered figures are image_size x image_size pixels."""
    test_buckets: int = Field(10, ge=2)
    """1 in ``test_buckets`` problems (by a hash of the text and the figure) is held out."""
    seed: int = 0
    """Generator seed."""

    @field_validator("families")
    @classmethod
    def _known_families(cls, families: list[str]) -> list[str]:
        from prompts.diagrams import DIAGRAM_FAMILIES

        return _known(families, DIAGRAM_FAMILIES, "diagram families")


Recipe = Literal["plain", "math", "math_geometry", "geo3k", "gsm8k", "verl"]


class FileSource(_Strict):
    """Local JSONL / JSON / Parquet / CSV files."""

    kind: Literal["file"] = "file"
    """Source tag (the discriminator of ``data.source``)."""
    train_path: str
    """Training prompts file."""
    test_path: str | None = None
    """Held-out prompts file; None = no evaluation set."""
    recipe: Recipe = "plain"
    """How rows map to problems: plain (the column mapping), math (MATH, every subject: answer =
    last \\boxed{} of the solution, the subject kept as the problem's source), math_geometry
    (the same, Geometry rows only), geo3k (Geometry3K: ``problem`` with its ``<image>`` marks,
    ``answer``, the diagrams of ``images`` kept for a vision-language policy), gsm8k (answer = what follows the
    rationale's ``####``), verl (verl's RL parquet: ``prompt`` as a chat list,
    ``reward_model.ground_truth``, ``data_source`` kept as the problem's source)."""


class HubSource(_Strict):
    """A Hugging Face dataset by name (needs network, or a populated HF cache)."""

    kind: Literal["hub"] = "hub"
    """Source tag (the discriminator of ``data.source``)."""
    name: str
    """Dataset name on the Hub, e.g. EleutherAI/hendrycks_math."""
    subset: str | None = None
    """Dataset configuration name, e.g. geometry."""
    train_split: str = "train"
    """Split used for training."""
    test_split: str | None = "test"
    """Split used for evaluation; None = none."""
    recipe: Recipe = "plain"
    """As for file sources."""


class ColumnMap(_Strict):
    """Which columns hold the question, the answer and (optionally) the choices. A column left
    unset takes the recipe's name (``RECIPE_COLUMNS``); the resolved config names every one."""

    question: str | None = None
    """Column with the problem text (plain, gsm8k: question; math, math_geometry, geo3k: problem;
    verl: prompt). A dotted name walks nested fields (``extra_info.question``); a chat list
    (``[{role, content}, ...]``) gives its last user turn's content."""
    answer: str | None = None
    """Column with the gold answer (plain, geo3k: answer; math, math_geometry: solution, the worked
    solution whose last \\boxed{} is the answer; gsm8k: answer, the rationale ending in
    ``#### <number>``; verl: reward_model.ground_truth)."""
    choices: str | None = None
    """Column with a list of options for multiple-choice questions; None = free answer."""


# Each recipe's column names, for the columns a config leaves unset.
RECIPE_COLUMNS = {
    "plain": {"question": "question", "answer": "answer"},
    "math": {"question": "problem", "answer": "solution"},
    "math_geometry": {"question": "problem", "answer": "solution"},
    "geo3k": {"question": "problem", "answer": "answer"},
    "gsm8k": {"question": "question", "answer": "answer"},
    "verl": {"question": "prompt", "answer": "reward_model.ground_truth"},
}


class DataConfig(_Strict):
    source: Annotated[SyntheticSource | DiagramSource | FileSource | HubSource, Field(discriminator="kind")] = (
        SyntheticSource()
    )
    """Prompt source: synthetic, file or hub."""
    columns: ColumnMap = ColumnMap()
    """Column mapping for file and hub sources."""
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    """Prompt text; {question} and {choices} are replaced (other braces are left alone)."""
    chat_template: bool = False
    """Wrap the prompt with the tokenizer's chat template (instruct models); false for base
    and tiny models."""
    on_bad_row: Literal["error", "skip"] = "error"
    """A malformed row stops loading with its file, row and column (error), or is counted
    and skipped (skip)."""
    images: Literal["keep", "drop"] = "keep"
    """Prompts' images (Geometry3K's diagrams, data.source.kind=diagrams figures): keep them for a
    vision-language policy; drop them to train a text model on the text alone (a warning says
    how many prompts lost theirs)."""
    max_train: int | None = Field(None, ge=1)
    """Use at most this many training problems (after loading); None = all."""
    max_test: int | None = Field(None, ge=1)
    """Use at most this many held-out problems; None = all."""

    @model_validator(mode="after")
    def _columns_from_recipe(self) -> DataConfig:
        # Resolved here, not when loading, so the written config.yaml names the columns the run
        # read and loads back to the same config.
        recipe = getattr(self.source, "recipe", "plain")
        unset = {key: name for key, name in RECIPE_COLUMNS[recipe].items() if getattr(self.columns, key) is None}
        if unset:  # frozen: set once, here, during validation
            object.__setattr__(self, "columns", self.columns.model_copy(update=unset))
        return self
