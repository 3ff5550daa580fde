"""Prompt-set loaders: files, recipes, bad rows, the Hub offline."""

import json

import pytest

from prompts.config import ColumnMap, DataConfig, FileSource, HubSource, SyntheticSource
from prompts.loaders import DataError, load_prompt_set


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_jsonl_with_column_mapping_and_choices(tmp_path):
    train = _jsonl(
        tmp_path / "train.jsonl",
        [
            {"q": "Find x.", "gold": 5, "opts": None},
            {"q": "Pick one.", "gold": "B", "opts": ["30", "45"]},
        ],
    )
    config = DataConfig(
        source=FileSource(train_path=train), columns=ColumnMap(question="q", answer="gold", choices="opts")
    )
    prompt_set = load_prompt_set(config)
    assert [(p.question, p.answer, p.choices) for p in prompt_set.train] == [
        ("Find x.", "5", None),
        ("Pick one.", "B", ("30", "45")),
    ]
    assert prompt_set.train[0].id == f"{train}:1"
    assert prompt_set.test == []


@pytest.mark.parametrize(
    "row, message",
    [
        ({"question": "Find x."}, "row 2: column 'answer' is missing (columns: question)"),
        ({"question": "", "answer": "1"}, "row 2: column 'question': empty"),
        ({"question": ["a"], "answer": "1"}, "row 2: column 'question': expected text or a number, got list"),
        ('{"question": "x", "answer": ', "row 2: not valid JSON"),
        ([1, 2], "row 2: expected an object with columns, got list"),
    ],
)
def test_bad_row_error_names_file_row_and_column(tmp_path, row, message):
    path = _jsonl(tmp_path / "train.jsonl", [{"question": "ok", "answer": "1"}, row])
    with pytest.raises(DataError) as error:
        load_prompt_set(DataConfig(source=FileSource(train_path=path)))
    assert str(error.value) == f"{path}: {message}" or str(error.value).startswith(f"{path}: {message}")


def test_bad_rows_can_be_counted_and_skipped(tmp_path):
    path = _jsonl(
        tmp_path / "train.jsonl",
        [{"question": "a", "answer": "1"}, {"question": "b"}, "{broken", {"question": "c", "answer": 2}],
    )
    prompt_set = load_prompt_set(DataConfig(source=FileSource(train_path=path), on_bad_row="skip"))
    assert [p.question for p in prompt_set.train] == ["a", "c"]
    assert prompt_set.skipped_rows == 2


def test_csv_and_parquet(tmp_path):
    import datasets

    rows = [{"question": "What is 1+1?", "answer": "2"}, {"question": "And 2+2?", "answer": "4"}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "t.parquet"))
    (tmp_path / "t.csv").write_text("question,answer\nWhat is 1+1?,2\nAnd 2+2?,4\n")
    for name in ("t.parquet", "t.csv"):
        prompt_set = load_prompt_set(
            DataConfig(source=FileSource(train_path=str(tmp_path / name), test_path=str(tmp_path / name)))
        )
        assert [(p.question, p.answer) for p in prompt_set.train] == [(r["question"], r["answer"]) for r in rows]
        assert len(prompt_set.test) == 2


def test_math_geometry_recipe_takes_the_last_boxed_answer_and_filters_subjects(tmp_path):
    path = _jsonl(
        tmp_path / "math.jsonl",
        [
            {
                "problem": "Area?",
                "solution": "First \\boxed{1}, finally \\boxed{\\frac{\\sqrt{3}}{4}}.",
                "type": "Geometry",
            },
            {"problem": "Solve.", "solution": "\\boxed{2}", "type": "Algebra"},
            {"problem": "Angle?", "solution": "It is 30.", "type": "Geometry"},
        ],
    )
    with pytest.raises(DataError, match="row 3: column 'solution': the solution has no \\\\boxed"):
        load_prompt_set(DataConfig(source=FileSource(train_path=path, recipe="math_geometry")))
    prompt_set = load_prompt_set(
        DataConfig(source=FileSource(train_path=path, recipe="math_geometry"), on_bad_row="skip")
    )
    assert [(p.question, p.answer) for p in prompt_set.train] == [("Area?", "\\frac{\\sqrt{3}}{4}")]


def test_geo3k_recipe_strips_image_tokens(tmp_path):
    path = _jsonl(tmp_path / "geo3k.jsonl", [{"problem": "<image>Find x.", "answer": "3"}])
    prompt_set = load_prompt_set(DataConfig(source=FileSource(train_path=path, recipe="geo3k")))
    assert (prompt_set.train[0].question, prompt_set.train[0].answer) == ("Find x.", "3")


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_prompt_set(DataConfig(source=FileSource(train_path=str(tmp_path / "nope.jsonl"))))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_prompt_set(DataConfig(source=FileSource(train_path=str(tmp_path / "data.txt"))))


def test_hub_dataset_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # read once at import: a session that imported them earlier needs the constants too (else the
    # load retries a network this machine does not have for ~20 s before failing)
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="cannot load Hugging Face dataset 'EleutherAI/hendrycks_math'.*offline"):
        load_prompt_set(DataConfig(source=HubSource(name="EleutherAI/hendrycks_math", subset="geometry")))


def test_synthetic_source_and_limits():
    prompt_set = load_prompt_set(DataConfig(source=SyntheticSource(num_train=50, num_test=5), max_train=20, max_test=3))
    assert (len(prompt_set.train), len(prompt_set.test)) == (20, 3)
