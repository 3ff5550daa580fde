"""Config loading: presets, overrides, one-line errors, the resolved file."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from learner.algorithms import BPPOConfig, GRPOConfig
from orchestrator.config_io import ConfigError, load_config, parse_override, write_resolved_config

ROOT = Path(__file__).resolve().parent.parent
PRESETS = sorted((ROOT / "configs").glob("*.yaml"))


def test_the_required_presets_exist():
    names = {p.name for p in PRESETS}
    assert {"bppo.yaml", "grpo.yaml", "dr_grpo.yaml", "dapo.yaml", "tiny_cpu.yaml"} <= names


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_and_takes_the_stable_overrides(preset, tmp_path):
    config = load_config([str(preset)], ["trainer.steps=3", f"trainer.run_dir={tmp_path}"])
    assert config.trainer.steps == 3 and config.trainer.run_dir == str(tmp_path)


def test_baseline_presets_are_faithful():
    grpo = load_config([str(ROOT / "configs/grpo.yaml")]).algo
    assert isinstance(grpo, GRPOConfig)
    assert (grpo.agg_mode, grpo.kl_kind, grpo.kl_coef, grpo.clip_low, grpo.clip_high) == (
        "seq-mean-token-mean",
        "k3",
        0.04,
        0.2,
        0.2,
    )
    dr = load_config([str(ROOT / "configs/dr_grpo.yaml")]).algo
    assert (dr.agg_mode, dr.norm_by_std, dr.kl_coef) == ("seq-mean-token-sum-norm", False, 0.0)
    dapo = load_config([str(ROOT / "configs/dapo.yaml")]).algo
    assert (dapo.agg_mode, dapo.clip_high, dapo.kl_coef, dapo.filter_groups) == ("token-mean", 0.28, 0.0, True)
    bppo = load_config([str(ROOT / "configs/bppo.yaml")]).algo
    assert isinstance(bppo, BPPOConfig)
    assert (bppo.selection, bppo.prefix.mode, bppo.agg_mode) == ("shortest", "tokens", "seq-mean-token-mean")
    assert load_config([str(ROOT / "configs/bppo.yaml")]).rollout.early_stop_groups is False  # our extension: off


def test_the_gpu_async_compare_runs_each_algorithm_as_its_own_preset():
    """configs/compare_gpu_async.yaml: both arms async on split placement, GRPO's arm exactly
    grpo_verl.yaml's algorithm and batching, BPPO's bppo.yaml's with early-stopped groups."""
    from experiments.compare import arm_overrides
    from orchestrator.placement import PlacementError, plan_placement

    path = str(ROOT / "configs/compare_gpu_async.yaml")
    config = load_config([path])
    arms = {algo: load_config([path], arm_overrides(config, algo, 0)) for algo in ("grpo", "bppo")}
    verl, paper = load_config([str(ROOT / "configs/grpo_verl.yaml")]), load_config([str(ROOT / "configs/bppo.yaml")])
    assert arms["grpo"].algo == verl.algo and arms["bppo"].algo == paper.algo
    # the learner as each preset has it, on half the ranks (below)
    same_ranks = {"world_size": verl.learner.world_size}
    assert arms["grpo"].learner.model_copy(update=same_ranks) == verl.learner
    assert arms["bppo"].learner.model_copy(update=same_ranks) == paper.learner
    assert arms["bppo"].rollout.early_stop_groups and not arms["grpo"].rollout.early_stop_groups
    for arm in arms.values():
        assert (arm.trainer.mode, arm.trainer.max_staleness, arm.ray.share) == ("async", 1, 0.5)
        # each arm in half of one 8-GPU node: 2 engines + 2 learner ranks, one GPU each
        placement = plan_placement(arm, {"GPU": 8.0, "CPU": 64.0})
        assert placement.on_gpu and placement.engine["GPU"] == 1 and placement.learner_rank["GPU"] == 1
        assert (arm.rollout.num_engines, arm.learner.world_size) == (2, 2)
    with pytest.raises(PlacementError, match="ray.share=0.5 of the Ray cluster's 4 is 2"):
        plan_placement(arms["grpo"], {"GPU": 4.0, "CPU": 64.0})


def test_load_order_defaults_then_files_then_overrides(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("rollout: {n: 4, temperature: 0.7}\ntrainer: {steps: 5}\n")
    second.write_text("rollout: {n: 6}\n")
    config = load_config([str(first), str(second)], ["trainer.steps=9", "algo.prefix.tokens=64"])
    assert config.rollout.n == 6  # the later file wins
    assert config.rollout.temperature == 0.7  # kept from the first file
    assert config.trainer.steps == 9  # the override wins
    assert config.algo.prefix.tokens == 64
    assert config.rollout.top_p == 1.0  # default


def test_override_values_are_yaml_typed():
    assert parse_override("rollout.n=8") == (["rollout", "n"], 8)
    assert parse_override("learner.lr=1e-5")[1] == 1e-5
    assert parse_override("rollout.stop=[a, b]")[1] == ["a", "b"]
    assert parse_override("ray.address=null")[1] is None
    assert parse_override("model.path=Qwen/Qwen2.5-Math-1.5B")[1] == "Qwen/Qwen2.5-Math-1.5B"
    # a template's placeholder is text, though YAML would read {question} as a mapping of nulls
    assert parse_override("data.prompt_template={question}")[1] == "{question}"
    assert parse_override("data.prompt_template={question} {choices}")[1] == "{question} {choices}"
    assert parse_override("rollout.resources={node_a: 0.1}")[1] == {"node_a": 0.1}  # a real mapping stays one
    assert parse_override("sweep.grid={}")[1] == {}  # and so does an empty one
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override("rollout.n")


def test_switching_algorithm_on_a_bppo_preset_keeps_everything_else():
    bppo = load_config([str(ROOT / "configs/tiny_cpu.yaml")])
    grpo = load_config([str(ROOT / "configs/tiny_cpu.yaml")], ["algo.name=grpo"])
    assert isinstance(grpo.algo, GRPOConfig)
    assert grpo.rollout == bppo.rollout and grpo.learner == bppo.learner and grpo.data == bppo.data
    assert (grpo.algo.clip_low, grpo.algo.kl_coef) == (bppo.algo.clip_low, bppo.algo.kl_coef)
    # a BPPO-only key given on the command line is still an error for GRPO
    with pytest.raises(ConfigError, match="algo.selection: unknown key"):
        load_config([str(ROOT / "configs/tiny_cpu.yaml")], ["algo.name=grpo", "algo.selection=random"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("algo.nme=bppo", "algo.nme: unknown key (did you mean algo.name?); allowed: "),
        ("algo.name=ppo", "algo: Input tag 'ppo'"),
        ("algo.prefix.mode=middle", "algo.prefix.mode: Input should be 'tokens', 'fraction', 'full' or 'divergence'"),
        ("rollout.n=1", "rollout.n=1: group-relative advantages"),
        ("rollout.temperature=hot", "rollout.temperature: Input should be a valid number"),
        ("data.source.qq=x", "data.source.qq: unknown key; allowed: kind, num_train"),
        ("rollout.n.x=1", "rollout.n: is a value, not a section"),
        ("learner.zero_stage=4", "learner.zero_stage: Input should be 0, 1, 2 or 3"),
        (
            "rollout.early_stop_groups=true algo.selection=random",
            "needs BPPO with selection 'shortest' (got algo.selection=random)",
        ),
        ("rollout.temperature=0", "rollout.temperature: Input should be greater than 0"),
        ("algo.clip_ratio_c=1", "algo.clip_ratio_c: Input should be greater than 1"),
        ("learner.mini_batch_size=17", "learner.mini_batch_size=17 is more than trainer.prompts_per_step=16 groups"),
        ("learner.epochs=0", "learner.epochs: Input should be greater than or equal to 1"),
        (
            "algo.name=grpo trainer.gen_prompts_per_step=32",
            "trainer.gen_prompts_per_step=32 with trainer.prompts_per_step=16",
        ),
        ("trainer.gen_prompts_per_step=8", "it can never be fewer"),
        (
            "trainer.time_budget_s=60 learner.lr_schedule=cosine",
            "learner.lr_schedule=cosine with trainer.time_budget_s",
        ),
        ("algo.overlong_buffer=200", "algo.overlong_buffer=200 is more than rollout.max_tokens=160"),
        (
            "reward.format_weight=1",
            "reward.accuracy_weight=1 must exceed reward.format_weight=1 plus the overlong penalty 0",
        ),
        (
            "model.path=tiny-vl data.source.kind=diagrams data.source.image_size=224",
            "data.source.image_size=224 differs from model.tiny_vl.image_size=112",
        ),
        (
            "reward.format_weight=0.5 algo.overlong_buffer=32",
            "must exceed reward.format_weight=0.5 plus the overlong penalty 1",
        ),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config([str(ROOT / "configs/tiny_cpu.yaml")], override.split())
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_oversampling_and_sign_rules_accept_what_they_should():
    preset = [str(ROOT / "configs/tiny_cpu.yaml")]
    dapo = load_config(preset, ["algo.name=grpo", "algo.filter_groups=true", "trainer.gen_prompts_per_step=48"])
    assert dapo.trainer.gen_prompts_per_step == 48
    assert load_config(preset, ["trainer.gen_prompts_per_step=48"]).trainer.gen_prompts_per_step == 48  # BPPO
    # GRPO keeps every group whatever its rewards: a format bonus above accuracy is its business
    assert load_config(preset, ["algo.name=grpo", "reward.format_weight=1"]).reward.format_weight == 1
    # a custom reward is checked pair by pair in the builder instead
    assert load_config(preset, ["reward.format_weight=1", "reward.function=tests.custom_reward:even_length_reward"])


def test_unknown_key_error_lists_the_allowed_keys():
    with pytest.raises(ConfigError) as error:
        load_config([], ["trainer.stpes=3"])
    assert (
        "trainer.stpes: unknown key (did you mean trainer.steps?); allowed: steps, time_budget_s, prompts_per_step, "
        "gen_prompts_per_step, seed, run_dir" in str(error.value)
    )


@pytest.mark.parametrize(
    "override, hint",
    [
        ("algo.clip_ratio_low=0.2", "algo.clip_ratio_low: unknown key (verl's name: ours is algo.clip_low)"),
        ("learner.ppo_mini_batch_size=4", "(verl's name: ours is learner.mini_batch_size)"),
        ("algo.loss_agg_mode=token-mean", "(verl's name: ours is algo.agg_mode)"),
        ("algo.kl_loss_coef=0.001", "(verl's name: ours is algo.kl_coef)"),
        ("trainer.total_training_steps=5", "(verl's name: ours is trainer.steps)"),
        # a whole verl section: its leaves that have a name here
        (
            "actor_rollout_ref.actor.clip_ratio_high=0.28",
            "actor_rollout_ref: unknown key (verl's names: actor_rollout_ref.actor.clip_ratio_high is algo.clip_high)",
        ),
        ("rollout.temprature=0.7", "rollout.temprature: unknown key (did you mean rollout.temperature?)"),
        ("learner.lr_sched=cosine", "(did you mean learner.lr_schedule?)"),
    ],
)
def test_unknown_keys_get_the_close_spelling_or_the_name_verl_gives_them(override, hint):
    with pytest.raises(ConfigError) as error:
        load_config([], [override])
    assert hint in str(error.value)


def test_no_hint_for_a_key_nothing_resembles():
    from orchestrator.config_hints import unknown_key_hint

    assert unknown_key_hint(["foo"], 1, ["algo", "model"]) == ""
    assert unknown_key_hint(["x"], {"y": {"z": 1}}, ["algo"]) == ""


def test_base_files_and_bad_files(tmp_path):
    (tmp_path / "parent.yaml").write_text("rollout: {n: 4, max_tokens: 100}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nrollout: {n: 6}\n")
    config = load_config([str(tmp_path / "child.yaml")])
    assert (config.rollout.n, config.rollout.max_tokens) == (6, 100)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config([str(tmp_path / "loop.yaml")])
    (tmp_path / "bad.yaml").write_text("rollout: {n: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: line .* not valid YAML"):
        load_config([str(tmp_path / "bad.yaml")])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config([str(tmp_path / "missing.yaml")])


def test_every_field_has_a_docstring():
    from pydantic import BaseModel

    from orchestrator.config import Config

    def walk(model, prefix=""):
        for name, field in model.model_fields.items():
            assert field.description, f"{prefix}{name} has no docstring"
            for sub in [field.annotation, *getattr(field.annotation, "__args__", ())]:
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    walk(sub, f"{prefix}{name}.")

    for name, field in Config.model_fields.items():
        for sub in [field.annotation, *getattr(field.annotation, "__args__", ())]:
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                walk(sub, f"{name}.")


def test_resolved_config_round_trips(tmp_path):
    config = load_config([str(ROOT / "configs/tiny_cpu.yaml")], [f"trainer.run_dir={tmp_path}"])
    path = write_resolved_config(config, tmp_path)
    assert path == tmp_path / "config.yaml"
    assert load_config([str(path)]) == config
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temp file left behind


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_bppo_config_output_of_every_preset_loads_back_to_the_same_config(preset, tmp_path, capsys):
    from cli.main import main

    assert main(["config", "--config", str(preset)]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    assert load_config([str(printed)]) == load_config([str(preset)])


@pytest.mark.parametrize(
    "recipe, question, answer",
    [("plain", "question", "answer"), ("math_geometry", "problem", "solution"), ("geo3k", "problem", "answer")],
)
def test_a_file_recipes_columns_are_resolved_into_the_written_config(recipe, question, answer, tmp_path):
    source = f"data.source={{kind: file, train_path: x.jsonl, recipe: {recipe}}}"
    config = load_config([str(ROOT / "configs/tiny_cpu.yaml")], [source])
    assert (config.data.columns.question, config.data.columns.answer) == (question, answer)
    assert load_config([str(write_resolved_config(config, tmp_path))]) == config
    # a column the config names wins over the recipe's; the other keeps the recipe's name
    partial = load_config([str(ROOT / "configs/tiny_cpu.yaml")], [source, "data.columns.question=q"])
    assert (partial.data.columns.question, partial.data.columns.answer) == ("q", answer)


def _bppo(capsys, *args) -> SimpleNamespace:
    """The `bppo` command line, in this process (exit status, stdout, stderr)."""
    from cli.main import main

    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's --help and usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def test_cli_help_lists_the_commands(capsys):
    result = _bppo(capsys, "--help")
    assert result.returncode == 0
    assert "config" in result.stdout and "data" in result.stdout


def test_cli_bad_override_exits_non_zero_with_one_line(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = _bppo(capsys, "config", "--config", "configs/tiny_cpu.yaml", "algo.nme=bppo")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("config error: algo.nme: unknown key")
    assert result.stdout == ""


def test_cli_config_writes_the_resolved_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = _bppo(capsys, "config", "--config", "configs/tiny_cpu.yaml", f"trainer.run_dir={tmp_path}", "--write")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["trainer"]["run_dir"] == str(tmp_path)


def test_train_into_a_used_run_dir_is_refused_and_deletes_nothing(capsys, tmp_path):
    from orchestrator.checkpoint import clear_previous_run, previous_run

    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    (tmp_path / "checkpoints" / "step_000002").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_000002" / "trainer_state.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    result = _bppo(capsys, "train", "--config", "configs/tiny_cpu.yaml", f"trainer.run_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: trainer.run_dir={tmp_path} already holds a run (metrics.jsonl, checkpoints): --resume continues "
        "it, --overwrite replaces it, or choose another trainer.run_dir"
    )
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n'  # nothing deleted
    assert previous_run(tmp_path) == ["metrics.jsonl", "checkpoints"]
    # what --overwrite clears before training: the run's outputs, nothing else
    clear_previous_run(tmp_path)
    assert previous_run(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / "checkpoints").mkdir()  # an empty directory is not a run
    assert previous_run(tmp_path) == []


def test_dotted_overrides_switch_the_source_kind(capsys):
    config = load_config(["configs/bppo.yaml"], ["data.source.kind=file", "data.source.train_path=data/x.parquet"])
    assert config.data.source.kind == "file" and config.data.source.train_path == "data/x.parquet"
    assert config.data.source.recipe == "math_geometry"  # a key both kinds have stays
    assert capsys.readouterr().err.strip() == (
        "note: data.source.kind=file drops the preset's hub-source keys data.source.name, data.source.subset, "
        "data.source.train_split, data.source.test_split"
    )
    synthetic = load_config(["configs/tiny_cpu.yaml"], ["data.source.kind=file", "data.source.train_path=t.jsonl"])
    assert synthetic.data.source.kind == "file"
    # a key given on the command line is never dropped: it stays an error
    with pytest.raises(ConfigError, match="data.source.num_train: unknown key"):
        load_config(
            ["configs/tiny_cpu.yaml"], ["data.source.kind=file", "data.source.train_path=t", "data.source.num_train=3"]
        )


def test_resume_refuses_settings_the_checkpoint_does_not_fit(capsys, tmp_path):
    from orchestrator.config_io import write_resolved_config

    write_resolved_config(load_config(["configs/tiny_cpu.yaml"], [f"trainer.run_dir={tmp_path}"]), tmp_path)
    result = _bppo(
        capsys,
        "train",
        "--resume",
        "--config",
        "configs/tiny_cpu.yaml",
        f"trainer.run_dir={tmp_path}",
        "algo.name=grpo",
        "learner.world_size=2",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --resume with settings the checkpoint in {tmp_path} does not fit: algo.name: 'bppo' -> 'grpo'; "
        "learner.world_size: 1 -> 2"
    )
    from orchestrator.checkpoint import resume_conflicts

    same = load_config(["configs/tiny_cpu.yaml"]).model_dump(mode="json")
    longer = load_config(["configs/tiny_cpu.yaml"], ["trainer.steps=500", "learner.lr=1e-5"]).model_dump(mode="json")
    assert resume_conflicts(same, longer) == []  # more steps, another LR: a resume may change these


def test_a_ray_job_with_a_relative_run_dir_is_refused_before_anything_starts(capsys, tmp_path, monkeypatch):
    """Inside `ray job submit --working-dir .` the entrypoint runs in Ray's temporary copy of
    the directory: a relative run_dir (every preset's) would be written there and lost."""
    from orchestrator.ray_job import JOB_CONFIG_ENV, job_working_dir

    job = json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"}, "metadata": {}})
    monkeypatch.chdir(tmp_path)  # as the job's copy would be
    monkeypatch.setenv(JOB_CONFIG_ENV, job)
    assert job_working_dir() == "gcs://_ray_pkg_0123.zip"
    preset = str(ROOT / "configs" / "tiny_cpu.yaml")
    for command in ("train", "compare", "sweep", "data"):
        result = _bppo(capsys, command, "--config", preset, "trainer.run_dir=runs/x")
        assert result.returncode == 2
        assert result.stderr.strip() == (
            f"config error: trainer.run_dir=runs/x is relative: in a Ray job with a working directory it would "
            f"land in Ray's temporary copy of it ({tmp_path}) and be lost; give an absolute path on storage every "
            "node sees, e.g. trainer.run_dir=/shared/runs/x"
        )
    assert list(tmp_path.iterdir()) == []  # nothing written
    # an absolute run_dir passes this check; `config` writes nothing and is never refused
    assert _bppo(capsys, "config", "--config", preset, "trainer.run_dir=runs/x").returncode == 0
    # outside a job, or in a job without a working directory: no check
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps({"runtime_env": {}}))
    assert job_working_dir() is None
    monkeypatch.setenv(JOB_CONFIG_ENV, "not json")
    assert job_working_dir() is None


def test_a_later_file_that_switches_the_source_replaces_the_presets_source(tmp_path, capsys):
    """`--config preset --config data/examples/gsm8k.yaml` (bppo data examples' block): the file's
    kind: file source takes the place of the preset's synthetic one, as the dotted switch does;
    the preset's other sections stay."""
    block = tmp_path / "gsm8k.yaml"
    block.write_text(
        "data:\n  source: {kind: file, train_path: t.jsonl, test_path: e.jsonl, recipe: gsm8k}\nalgo:\n  name: grpo\n"
    )
    config = load_config([str(ROOT / "configs" / "tiny_cpu.yaml"), str(block)], [])
    assert config.data.source.kind == "file" and config.data.source.recipe == "gsm8k"
    assert config.data.columns.answer == "answer"  # the recipe's column
    assert config.algo.name == "grpo" and not hasattr(config.algo, "prefix")  # the BPPO keys went too
    assert config.model.path == "tiny"  # the rest of the preset stays
    err = capsys.readouterr().err
    assert "data.source.kind=file drops the preset's synthetic-source keys data.source.num_train" in err
