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
