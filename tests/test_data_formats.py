"""A researcher's own files, end to end: GSM8K, MATH and verl-parquet files made by `bppo data
examples`; `bppo data --verify` scores every gold answer of each through the Ray reward pool
(100% correct), and each trains 2 steps of the tiny model with the source switched from the
preset's synthetic one by dotted overrides, as a user would on the command line."""

import pytest

from tests.e2e_runs import PRESET, records


@pytest.fixture(scope="module")
def example_files(tmp_path_factory):
    from cli.main import main

    out = tmp_path_factory.mktemp("examples")
    assert main(["data", "examples", "--config", PRESET, "--out", str(out), "--train", "24", "--test", "8"]) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["gsm8k", "math", "verl"])
def test_verify_scores_every_gold_answer_of_the_example_files(fmt, example_files, capsys, ray_local):
    from cli.main import main

    capsys.readouterr()
    assert main(["data", "--config", PRESET, "--config", str(example_files / f"{fmt}.yaml"), "--verify", "24",
                 "--out", str(example_files / f"{fmt}-loaded")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "24 train / 8 test problems" in out
    assert "32 gold solutions" in out and "accuracy 1.0000" in out, out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["gsm8k", "math", "verl"])
def test_each_format_trains_two_steps_through_dotted_overrides(fmt, example_files, ray_local, tiny_model, tmp_path):
    from orchestrator.config_io import load_config
    from orchestrator.loop import Trainer

    ext = "parquet" if fmt == "verl" else "jsonl"
    switch = [
        "data.source.kind=file",
        f"data.source.train_path={example_files / fmt / f'train.{ext}'}",
        f"data.source.test_path={example_files / fmt / f'test.{ext}'}",
        f"data.source.recipe={fmt}",
    ]
    if fmt == "verl":
        switch.append("data.prompt_template={question}")
    run_dir = tmp_path / fmt
    settings = [
        f"model.path={tiny_model}", f"trainer.run_dir={run_dir}", "trainer.steps=2", "trainer.prompts_per_step=4",
        "trainer.save_every=0", "eval.every=2", "rollout.num_engines=1", "learner.world_size=1",
        "reward.function=tests.custom_reward:even_length_reward", "trainer.parity_every=1",
    ]  # fmt: skip
    config = load_config([PRESET], [*settings, *switch])
    assert config.data.source.kind == "file" and config.data.columns.question  # the recipe's columns
    Trainer(config).run()
    steps = [r for r in records(run_dir) if r["step"] > 0]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["sync/logprob_max_diff"] < 1e-4 for r in steps)
    evals = [r for r in records(run_dir) if "eval/accuracy" in r]
    assert evals and all(r["eval/problems"] == 8 for r in evals)  # the test file's 8 problems
    if fmt == "verl":  # verl's data_source: one synthetic family per problem, accuracy per source
        assert any(key.startswith("eval/accuracy/synthetic/") for key in evals[-1])


@pytest.fixture(scope="module")
def geo3k_files(tmp_path_factory):
    """A Geometry3K-form parquet made by `bppo data examples` from the diagram problems."""
    from cli.main import main

    out = tmp_path_factory.mktemp("geo3k")
    diagrams = [f"data.source.{k}" for k in ("kind=diagrams", "num_train=40", "num_test=10", "image_size=112")]
    assert (
        main(["data", "examples", "--config", PRESET, *diagrams, "--out", str(out), "--train", "24", "--test", "8"])
        == 0
    )
    return out


def test_a_geometry3k_parquet_loads_with_its_diagrams(geo3k_files):
    """The parquet holds Geometry3K's columns (PNG bytes in ``images``, ``<image>`` + the question);
    the geo3k recipe keeps each diagram, and the prompt puts one image placeholder where the
    ``<image>`` mark was; data.images=drop gives the text alone."""
    import io

    from PIL import Image

    from orchestrator.config_io import load_config
    from prompts.images import IMAGE_PLACEHOLDER, problem_images
    from prompts.loaders import load_prompt_set
    from prompts.problems import format_prompt
    from prompts.tools.example_files import read_back

    rows = read_back(geo3k_files / "geo3k" / "train.parquet")
    assert len(rows) == 24 and set(rows[0]) == {"images", "problem", "answer"}
    assert rows[0]["problem"].startswith("<image>") and len(rows[0]["images"]) == 1
    assert Image.open(io.BytesIO(rows[0]["images"][0]["bytes"])).size == (112, 112)
    config = load_config([PRESET, str(geo3k_files / "geo3k.yaml")])
    assert (config.data.source.kind, config.data.source.recipe) == ("file", "geo3k")
    prompt_set = load_prompt_set(config.data)
    assert (len(prompt_set.train), len(prompt_set.test)) == (24, 8)
    first = prompt_set.train[0]
    assert first.question == rows[0]["problem"].removeprefix("<image>") and first.answer == rows[0]["answer"]
    (image,) = problem_images(first)
    assert image.tobytes() == Image.open(io.BytesIO(rows[0]["images"][0]["bytes"])).convert("RGB").tobytes()
    assert format_prompt(first, "{question}") == IMAGE_PLACEHOLDER + first.question
    dropped = load_prompt_set(load_config([PRESET, str(geo3k_files / "geo3k.yaml")], ["data.images=drop"]).data)
    assert problem_images(dropped.train[0]) == [] and format_prompt(dropped.train[0], "{question}") == first.question


def test_a_bad_image_names_its_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from orchestrator.config_io import load_config
    from prompts.loaders import DataError, load_prompt_set

    path = tmp_path / "bad.parquet"
    rows = [{"images": [{"bytes": b"not a png", "path": None}], "problem": "<image>Find x.", "answer": "3"}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    config = load_config(
        [PRESET], ["data.source.kind=file", f"data.source.train_path={path}", "data.source.recipe=geo3k"]
    )
    with pytest.raises(DataError, match=r"bad.parquet: row 1: column 'images': image 0 does not decode"):
        load_prompt_set(config.data)


@pytest.mark.slow
def test_verify_scores_every_gold_answer_of_the_geometry3k_parquet(geo3k_files, capsys, ray_local):
    from cli.main import main

    capsys.readouterr()
    assert main(["data", "--config", PRESET, "--config", str(geo3k_files / "geo3k.yaml"), "--verify", "24",
                 "--out", str(geo3k_files / "loaded")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "24 train / 8 test problems" in out
    assert "32 gold solutions" in out and "accuracy 1.0000" in out, out
