"""Small prompt files in the forms public RL datasets come in, made from the synthetic problems
(``bppo data examples``): GSM8K's JSONL (rationale ending in ``#### <answer>``), MATH's JSONL
(a worked solution whose last ``\\boxed{}`` is the answer, with its subject and level) and verl's
RL parquet (a chat-list ``prompt``, ``reward_model.ground_truth``, ``data_source``); from the
diagram problems, Geometry3K's parquet (the diagram's PNG bytes, ``<image>`` + the question). Each comes
with the ``data:`` block that reads it, so a researcher can check a format end to end (``bppo
data --verify``, two training steps) before pointing the same block at the real files."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import yaml

from prompts.problems import Problem
from prompts.tools.outputs import jsonl_text, write_atomically, write_bytes_atomically

# verl's own preprocessing scripts (examples/data_preprocess/gsm8k.py, math_dataset.py) append
# this instruction to the question; the prompt then carries it, and our template is "{question}".
VERL_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."
FORMATS = ("gsm8k", "math", "verl")


def _rationale(problem: Problem) -> str:
    """The worked solution without its closing "The answer is \\boxed{..}." sentence."""
    solution = problem.solution or ""
    cut = solution.rfind("The answer is")
    return (solution[:cut] if cut >= 0 else solution).strip()


def gsm8k_row(problem: Problem, index: int, split: str) -> dict | None:
    """GSM8K's two columns; None for an answer that is not an integer (GSM8K's are)."""
    if not problem.answer.lstrip("-").isdigit():
        return None
    return {"question": problem.question, "answer": f"{_rationale(problem)}\n#### {problem.answer}"}


def math_row(problem: Problem, index: int, split: str) -> dict:
    """MATH's columns: the answer only inside the solution's last \\boxed{}."""
    level = problem.meta.get("level")
    return {
        "problem": problem.question,
        "solution": problem.solution or f"The answer is \\boxed{{{problem.answer}}}.",
        "type": "Geometry",
        "level": f"Level {level}" if level is not None else "Level ?",
    }


def verl_row(problem: Problem, index: int, split: str) -> dict:
    """verl's RL parquet row, as its preprocessing scripts write it."""
    return {
        "data_source": f"synthetic/{problem.meta.get('family', 'geometry')}",
        "prompt": [{"role": "user", "content": f"{problem.question} {VERL_INSTRUCTION}"}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": problem.answer},
        "extra_info": {"split": split, "index": index, "solution": problem.solution or ""},
    }


def geo3k_row(problem: Problem, index: int, split: str) -> dict | None:
    """Geometry3K's parquet row (as hiyouga/geometry3k stores it): the diagram as PNG bytes, the
    question after an ``<image>`` mark, the answer; None for a problem without exactly one image."""
    from prompts.figures import png_bytes
    from prompts.images import problem_images

    images = problem_images(problem)
    if len(images) != 1:
        return None
    return {
        "images": [{"bytes": png_bytes(images[0]), "path": None}],
        "problem": "<image>" + problem.question,
        "answer": problem.answer,
    }


ROW_MAKERS: dict[str, Callable[[Problem, int, str], dict | None]] = {
    "gsm8k": gsm8k_row,
    "math": math_row,
    "verl": verl_row,
    "geo3k": geo3k_row,
}
FORMATS_OF_SOURCE = {"synthetic": FORMATS, "diagrams": ("geo3k",)}
"""Which forms ``bppo data examples`` writes from each generated source (geo3k needs figures)."""
PARQUET_FORMATS = ("verl", "geo3k")


def data_block(fmt: str, train_path: Path, test_path: Path) -> dict:
    """The ``data:`` config that reads the files of ``fmt`` (the recipe names the columns)."""
    block: dict = {"source": {"kind": "file", "train_path": str(train_path), "test_path": str(test_path)}}
    block["source"]["recipe"] = fmt
    if fmt == "verl":
        block["prompt_template"] = "{question}"  # the prompts carry verl's instruction already
    return {"data": block}


def write_example_files(
    out: Path,
    train: list[Problem],
    test: list[Problem],
    *,
    rows_per_split: tuple[int, int],
    formats: tuple[str, ...] = FORMATS,
) -> dict[str, list[Path]]:
    """``out/<format>/{train,test}.<ext>`` and ``out/<format>.yaml`` for every format; each file
    written whole or not at all. Returns the paths written per format."""
    written: dict[str, list[Path]] = {}
    for fmt in formats:
        paths = {}
        for split, problems, count in (("train", train, rows_per_split[0]), ("test", test, rows_per_split[1])):
            rows = [row for i, p in enumerate(problems) if (row := ROW_MAKERS[fmt](p, i, split)) is not None][:count]
            if len(rows) < count:
                raise ValueError(
                    f"{fmt} {split}: only {len(rows)} of the {count} rows asked for (more problems needed)"
                )
            ext = "parquet" if fmt in PARQUET_FORMATS else "jsonl"
            path = out / fmt / f"{split}.{ext}"
            _write_rows(path, rows)
            paths[split] = path
        config = out / f"{fmt}.yaml"
        header = f"# {fmt} example files made by `bppo data examples`; the same block reads the real ones\n"
        write_atomically(
            config, header + yaml.safe_dump(data_block(fmt, paths["train"], paths["test"]), sort_keys=False)
        )
        written[fmt] = [paths["train"], paths["test"], config]
    return written


def _write_rows(path: Path, rows: list[dict]) -> None:
    if path.suffix == ".jsonl":
        write_atomically(path, jsonl_text(rows))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    write_bytes_atomically(path, buffer.getvalue())


def read_back(path: Path) -> list[dict]:
    """The rows of a file this module wrote (for tests and checks)."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
