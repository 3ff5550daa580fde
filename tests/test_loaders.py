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


def test_math_geometry_recipe_takes_the_last_boxed_answer_and_filters_subjects(tmp_path, caplog):
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
    assert "math.jsonl: 1 rows left out by recipe math_geometry (it keeps Geometry rows only)" in caplog.text
    # recipe math keeps every subject, the subject as the problem's source (eval per subject),
    # and the worked solution (what `bppo data --verify` scores)
    prompt_set = load_prompt_set(DataConfig(source=FileSource(train_path=path, recipe="math"), on_bad_row="skip"))
    assert [(p.question, p.answer, p.meta["data_source"]) for p in prompt_set.train] == [
        ("Area?", "\\frac{\\sqrt{3}}{4}", "Geometry"),
        ("Solve.", "2", "Algebra"),
    ]
    assert prompt_set.train[1].solution == "\\boxed{2}"


def test_geo3k_recipe_strips_image_marks_and_counts_the_images_against_them(tmp_path):
    """A row without an ``images`` column is its text; one whose images do not match its
    ``<image>`` marks is an error naming the row (tests/test_data_formats.py: with images)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    path = _jsonl(tmp_path / "geo3k.jsonl", [{"problem": "<image>Find x.", "answer": "3"}])
    prompt_set = load_prompt_set(DataConfig(source=FileSource(train_path=path, recipe="geo3k")))
    assert (prompt_set.train[0].question, prompt_set.train[0].answer) == ("Find x.", "3")
    assert "images" not in prompt_set.train[0].meta
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    two = [{"bytes": png.getvalue()}] * 2
    parquet = tmp_path / "geo3k.parquet"
    pq.write_table(pa.Table.from_pylist([{"problem": "<image>Find x.", "answer": "3", "images": two}]), parquet)
    with pytest.raises(DataError, match=r"geo3k.parquet: row 1: column 'images': 2 images for 1 <image> marks"):
        load_prompt_set(DataConfig(source=FileSource(train_path=str(parquet), recipe="geo3k")))


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


def test_gsm8k_recipe_takes_the_number_after_the_hashes(tmp_path):
    from rewards.verify import score

    rationale = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72 clips.\n#### 72"
    path = _jsonl(
        tmp_path / "gsm8k.jsonl",
        [
            {"question": "How many clips?", "answer": rationale},
            {"question": "How much?", "answer": "It costs 1,200 dollars.\n#### 1,200"},
            {"question": "Broken?", "answer": "no final line"},
        ],
    )
    with pytest.raises(DataError, match="row 3: column 'answer': no '#### <answer>' at the end"):
        load_prompt_set(DataConfig(source=FileSource(train_path=path, recipe="gsm8k")))
    prompt_set = load_prompt_set(DataConfig(source=FileSource(train_path=path, recipe="gsm8k"), on_bad_row="skip"))
    assert [p.answer for p in prompt_set.train] == ["72", "1200"]
    # the raw rationale as gold scored every sample wrong; the extracted number scores a right one right
    assert score("\\boxed{72}", prompt_set.train[0].answer, timeout_s=10).correct  # integers: the fast path


def test_verl_parquet_nested_columns_and_chat_list_prompts(tmp_path):
    import datasets

    rows = [
        {
            "data_source": "openai/gsm8k",
            "prompt": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is 6 times 7? Output the final answer after ####."},
            ],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": "42"},
            "extra_info": {"split": "train", "index": 0},
        },
        {
            "data_source": "hiyouga/geometry3k",
            "prompt": [{"role": "user", "content": "Find x if 2x = 10."}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": "5"},
            "extra_info": {"split": "train", "index": 1},
        },
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "train.parquet"))
    prompt_set = load_prompt_set(
        DataConfig(source=FileSource(train_path=str(tmp_path / "train.parquet"), recipe="verl"))
    )
    assert [(p.question, p.answer, p.meta["data_source"]) for p in prompt_set.train] == [
        ("What is 6 times 7? Output the final answer after ####.", "42", "openai/gsm8k"),
        ("Find x if 2x = 10.", "5", "hiyouga/geometry3k"),
    ]
    # any recipe reads dotted paths; a missing part is named with what is there
    config = DataConfig(
        source=FileSource(train_path=str(tmp_path / "train.parquet")),
        columns=ColumnMap(question="prompt", answer="reward_model.truth"),
    )
    with pytest.raises(DataError, match="row 1: column 'reward_model.truth' is missing \\(reward_model has: "):
        load_prompt_set(config)
    # a chat list without a user turn is a bad row, not a crash
    bad = _jsonl(tmp_path / "bad.jsonl", [{"prompt": [{"role": "system", "content": "x"}], "answer": "1"}])
    with pytest.raises(DataError, match="row 1: column 'prompt': a chat list needs a user turn"):
        load_prompt_set(DataConfig(source=FileSource(train_path=bad), columns=ColumnMap(question="prompt")))


def test_example_files_of_every_format_load_back_to_the_same_problems(tmp_path):
    """`bppo data examples`: GSM8K, MATH and verl-parquet files from synthetic problems; each
    format's YAML, loaded as a config, reads its files back to the problems they came from."""
    from orchestrator.config_io import load_config
    from prompts.tools.example_files import VERL_INSTRUCTION, read_back, write_example_files

    synthetic = load_prompt_set(DataConfig(source=SyntheticSource(num_train=60, num_test=20, levels=[1])))
    written = write_example_files(tmp_path, synthetic.train, synthetic.test, rows_per_split=(12, 4))
    assert sorted(written) == ["gsm8k", "math", "verl"]
    gsm8k_rows = read_back(tmp_path / "gsm8k" / "train.jsonl")
    integer = [p for p in synthetic.train if p.answer.lstrip("-").isdigit()][:12]  # GSM8K's answers are integers
    assert len(gsm8k_rows) == 12 and gsm8k_rows[0]["answer"].endswith(f"\n#### {integer[0].answer}")
    assert "\\boxed" not in gsm8k_rows[0]["answer"]  # a rationale, as GSM8K's
    verl_rows = read_back(tmp_path / "verl" / "test.parquet")
    assert verl_rows[0]["reward_model"] == {"style": "rule", "ground_truth": synthetic.test[0].answer}
    assert verl_rows[0]["prompt"] == [{"role": "user", "content": f"{synthetic.test[0].question} {VERL_INSTRUCTION}"}]
    for fmt, originals in (("gsm8k", integer), ("math", synthetic.train[:12]), ("verl", synthetic.train[:12])):
        config = load_config([str(tmp_path / f"{fmt}.yaml")], [])
        assert config.data.source.kind == "file" and config.data.source.recipe == fmt
        loaded = load_prompt_set(config.data)
        assert (len(loaded.train), len(loaded.test)) == (12, 4)
        assert [p.answer for p in loaded.train] == [p.answer for p in originals]
        expected = [f"{p.question} {VERL_INSTRUCTION}" if fmt == "verl" else p.question for p in originals]
        assert [p.question for p in loaded.train] == expected
    assert config.data.prompt_template == "{question}"  # verl's prompts carry their instruction
    assert {p.meta["data_source"] for p in loaded.train} == {f"synthetic/{p.meta['family']}" for p in originals}
    with pytest.raises(ValueError, match="gsm8k train: only .* of the 500 rows"):
        write_example_files(tmp_path / "big", synthetic.train, synthetic.test, rows_per_split=(500, 4))
    assert not (tmp_path / "big").exists()  # checked before anything is written
