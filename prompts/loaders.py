"""Load prompt sets: synthetic, local files or Hugging Face datasets, validated row by row."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prompts.config import ColumnMap, DataConfig, DiagramSource, FileSource, HubSource, SyntheticSource
from prompts.problems import Problem
from prompts.synthetic import generate
from rewards.extract import last_boxed

logger = logging.getLogger(__name__)

_IMAGE_TOKEN = re.compile(r"<image>\s*")


class DataError(ValueError):
    """A prompt source cannot be read; the message names the file, row and column."""


@dataclass(frozen=True)
class PromptSet:
    train: list[Problem]
    test: list[Problem]
    skipped_rows: int = 0


def load_prompt_set(config: DataConfig) -> PromptSet:
    """The training and held-out problems that ``config`` describes."""
    source = config.source
    if isinstance(source, SyntheticSource):
        train, test = generate(
            source.num_train,
            source.num_test,
            seed=source.seed,
            families=source.families or None,
            levels=tuple(source.levels),
            mix=source.pairs() or None,
            test_buckets=source.test_buckets,
        )
        prompt_set = PromptSet(train, test)
    elif isinstance(source, DiagramSource):
        from prompts.diagrams import generate_diagrams

        train, test = generate_diagrams(
            source.num_train,
            source.num_test,
            seed=source.seed,
            figure_only=source.figure_only,
            families=source.families or None,
            test_buckets=source.test_buckets,
            image_size=source.image_size,
        )
        prompt_set = PromptSet(train, test)
    else:
        columns = config.columns
        skipped = [0]
        splits = []
        for split in ("train", "test"):
            rows = _read_split(source, split)
            if rows is None:
                splits.append([])
                continue
            label, row_iter = rows
            splits.append(_rows_to_problems(row_iter, label, source.recipe, columns, config.on_bad_row, skipped))
        prompt_set = PromptSet(splits[0], splits[1], skipped[0])
        if not prompt_set.train:
            raise DataError(f"{source.kind} source has no usable training rows ({skipped[0]} skipped)")
    train, test = prompt_set.train[: config.max_train], prompt_set.test[: config.max_test]
    if config.images == "drop":
        train, test = _without_images(train, "train"), _without_images(test, "test")
    return PromptSet(train, test, prompt_set.skipped_rows)


def _without_images(problems: list[Problem], split: str) -> list[Problem]:
    """data.images=drop: the problems' text alone."""
    from dataclasses import replace

    from prompts.images import image_count

    dropped = sum(1 for p in problems if image_count(p))
    if dropped:
        logger.warning("data.images=drop: %d %s prompts lose their images (text only)", dropped, split)
    return [
        replace(p, meta={k: v for k, v in p.meta.items() if k not in ("figure", "images")}) if image_count(p) else p
        for p in problems
    ]


def _read_split(source: FileSource | HubSource, split: str) -> tuple[str, Iterable[tuple[int, Any]]] | None:
    if isinstance(source, FileSource):
        path = source.train_path if split == "train" else source.test_path
        return None if path is None else (path, read_rows(path))
    name = source.train_split if split == "train" else source.test_split
    return None if name is None else (f"{source.name}[{name}]", _hub_rows(source, name))


def read_rows(path: str) -> Iterable[tuple[int, Any]]:
    """``(row number, row)`` pairs from a .jsonl/.json/.parquet/.csv file (rows numbered from 1)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_rows(path)
    formats = {".json": "json", ".parquet": "parquet", ".csv": "csv"}
    if suffix not in formats:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json, .parquet or .csv")
    import datasets

    try:
        dataset = datasets.load_dataset(formats[suffix], data_files=path, split="train")
    except Exception as error:  # noqa: BLE001 - datasets raises many types for a bad file
        raise DataError(f"{path}: cannot be read as {formats[suffix]}: {error}") from error
    return enumerate(dataset, start=1)


def _jsonl_rows(path: str) -> Iterable[tuple[int, Any]]:
    # Parsed here, line by line, so a broken line is reported with its number.
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, DataError(f"{path}: row {number}: not valid JSON ({error.msg})")


def _hub_rows(source: HubSource, split: str) -> Iterable[tuple[int, Any]]:
    import datasets

    try:
        dataset = datasets.load_dataset(source.name, source.subset, split=split)
    except Exception as error:  # noqa: BLE001
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = (
            "this machine is offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE=1 or no network): download the "
            "dataset where there is network, save it as JSONL/Parquet and use data.source.kind=file"
        )
        raise DataError(
            f"cannot load Hugging Face dataset {source.name!r} (subset {source.subset!r}, split {split!r}): "
            f"{type(error).__name__}: {str(error)[:300]}. {hint if offline else 'If ' + hint[5:]}"
        ) from error
    return enumerate(dataset, start=1)


def _rows_to_problems(
    rows: Iterable[tuple[int, Any]], label: str, recipe: str, columns: ColumnMap, on_bad_row: str, skipped: list[int]
) -> list[Problem]:
    problems, left_out = [], 0
    for number, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            problem = _row_to_problem(row, f"{label}:{number}", recipe, columns)
        except DataError as error:
            message = str(error) if isinstance(row, DataError) else f"{label}: row {number}: {error}"
            if on_bad_row == "error":
                raise DataError(message) from None
            skipped[0] += 1
            logger.warning("skipping bad row (data.on_bad_row=skip): %s", message)
            continue
        if problem is not None:
            problems.append(problem)
        else:
            left_out += 1
    if left_out:
        logger.warning("%s: %d rows left out by recipe %s (it keeps Geometry rows only)", label, left_out, recipe)
    return problems


def _row_to_problem(row: Any, problem_id: str, recipe: str, columns: ColumnMap) -> Problem | None:
    """One problem from one row; None for rows the recipe filters out (not an error)."""
    if not isinstance(row, dict):
        raise DataError(f"expected an object with columns, got {type(row).__name__}")
    if recipe == "math_geometry" and "type" in row and row["type"] != "Geometry":
        return None
    question = _question(row, columns.question)
    images: list[bytes] = []
    if recipe == "geo3k":
        images = _row_images(row, question)
        question = _IMAGE_TOKEN.sub("", question).strip()
    answer = _text(row, columns.answer)
    solution = None
    if recipe in ("math", "math_geometry"):
        boxed = last_boxed(answer)
        if boxed is None or not boxed[0]:
            raise DataError(f"column {columns.answer!r}: the solution has no \\boxed{{}} answer")
        solution, answer = answer, boxed[0]  # the worked solution: `bppo data --verify` scores it
    elif recipe == "gsm8k":
        answer = _after_hashes(answer, columns.answer)
    choices = None
    if columns.choices is not None:
        value = _column(row, columns.choices)
        if value is not None:
            if (
                not isinstance(value, (list, tuple))
                or not value
                or not all(isinstance(c, (str, int, float)) for c in value)
            ):
                raise DataError(f"column {columns.choices!r}: expected a non-empty list of options, got {value!r:.80}")
            choices = tuple(str(c) for c in value)
    meta: dict = {"source": problem_id}
    if images:
        meta["images"] = images  # encoded files: prompts.images.problem_images decodes them
    if recipe == "verl" and isinstance(row.get("data_source"), str):
        meta["data_source"] = row["data_source"]
    elif recipe == "math" and isinstance(row.get("type"), str):
        meta["data_source"] = row["type"]  # MATH's subject: evaluation reports accuracy per subject
    return Problem(id=problem_id, question=question, answer=answer, choices=choices, solution=solution, meta=meta)


def _row_images(row: dict, question: str) -> list[bytes]:
    """Geometry3K's ``images`` column: a list of encoded image files (each ``{"bytes": ...}``, as
    its parquet stores them, or the bytes), checked to decode, one per ``<image>`` in the text."""
    value = row.get("images")
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise DataError(f"column 'images': expected a list of images, got {type(value).__name__}")
    images = []
    for k, item in enumerate(value):
        data = item.get("bytes") if isinstance(item, dict) else item
        if not isinstance(data, (bytes, bytearray)) or not data:
            raise DataError(f"column 'images': image {k} has no bytes (got {type(data).__name__})")
        _check_image(bytes(data), k)
        images.append(bytes(data))
    marks = len(_IMAGE_TOKEN.findall(question))
    if marks and marks != len(images):
        raise DataError(f"column 'images': {len(images)} images for {marks} <image> marks in the question")
    return images


def _check_image(data: bytes, index: int) -> None:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"column 'images': image {index} does not decode ({type(error).__name__}: {error})") from None


def _column(row: dict, name: str) -> Any:
    """``row[name]``; a dotted name that is not a column walks nested fields
    (``reward_model.ground_truth``)."""
    if name in row:
        return row[name]
    value: Any = row
    parts = name.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(value, dict) or part not in value:
            keys = ", ".join(map(str, value)) if isinstance(value, dict) else type(value).__name__
            where = f"{'.'.join(parts[:depth])} has" if depth else "columns"
            raise DataError(f"column {name!r} is missing ({where}: {keys})")
        value = value[part]
    return value


def _question(row: dict, name: str) -> str:
    """The question text; a chat list (verl's ``prompt``) gives its last user turn."""
    value = _column(row, name)
    if hasattr(value, "tolist"):  # a parquet list column read as an array
        value = value.tolist()
    if isinstance(value, (list, tuple)) and value and all(isinstance(t, dict) and "role" in t for t in value):
        turns = [t for t in value if isinstance(t, dict) and t.get("role") == "user"]
        if not turns or not isinstance(turns[-1].get("content"), str) or not turns[-1]["content"].strip():
            raise DataError(f"column {name!r}: a chat list needs a user turn with text content, got {value!r:.80}")
        return turns[-1]["content"].strip()
    return _text(row, name)


def _after_hashes(rationale: str, name: str) -> str:
    """GSM8K's gold answer: the number after the rationale's last ``####`` (thousands commas dropped)."""
    head, hashes, tail = rationale.rpartition("####")
    answer = tail.strip().replace(",", "")
    if not hashes or not answer:
        raise DataError(f"column {name!r}: no '#### <answer>' at the end of the rationale ({rationale[-60:]!r})")
    return answer


def _text(row: dict, name: str) -> str:
    value = _column(row, name)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"column {name!r}: expected text or a number, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise DataError(f"column {name!r}: empty")
    return text
