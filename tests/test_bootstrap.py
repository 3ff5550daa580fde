"""The warm start: SFT through the DeepSpeed learner, stop on the accuracy band, cache by config."""

import json

import pytest

from models.sources import resolve_model_path, warm_model_dir
from models.warm_start import sft_examples
from orchestrator.config_io import load_config
from tests.conftest import TEST_TINY

OVERRIDES = [f"model.tiny.{k}={v}" for k, v in TEST_TINY.items()] + [
    "model.warm_start.num_problems=200",
    "model.warm_start.max_steps=6",
    "model.warm_start.eval_every=3",
    "model.warm_start.eval_problems=10",
    "model.warm_start.batch_size=16",
    "model.warm_start.accuracy_band=[0.0,1.0]",
    "data.source.num_train=200",
    "rollout.engine_core_process=false",
    "data.source.num_test=10",
]


def test_sft_examples_mix_concise_and_verbose_solutions_and_end_with_eos(tmp_path, monkeypatch):
    monkeypatch.setenv("BPPO_CACHE_DIR", str(tmp_path))
    from transformers import AutoTokenizer

    from models.tiny import ensure_tiny_model

    config = load_config(["configs/tiny_cpu.yaml"], OVERRIDES + ["model.warm_start.verbose_fraction=0.5"])
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model(config.model.tiny))
    from prompts.loaders import load_prompt_set

    examples = sft_examples(config, tokenizer, load_prompt_set(config.data).train)
    assert len(examples) == 200 and all(r[-1] == tokenizer.eos_token_id for _, r in examples)
    verbose = sum(tokenizer.decode(r).startswith(" We are given") for _, r in examples)
    assert 60 < verbose < 140  # about half, seeded
    lengths = sorted(len(r) for _, r in examples)
    assert lengths[-1] > 1.5 * lengths[0]  # response length varies: something RL can shorten


@pytest.mark.slow  # Ray, vLLM, DeepSpeed
def test_bootstrap_trains_stops_in_band_and_is_cached(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("BPPO_CACHE_DIR", str(tmp_path))
    # A run's stand-in reward (even character count: ~50% "correct" for any text) must not judge
    # the shared warm start: after 3 SFT steps the built-in verifier finds almost nothing right.
    config = load_config(
        ["configs/tiny_cpu.yaml"], OVERRIDES + ["reward.function=tests.custom_reward:even_length_reward"]
    )
    path = resolve_model_path(config)
    assert path == str(warm_model_dir(config))
    record = json.loads((tmp_path / path.split("/")[-1] / "bootstrap.json").read_text())
    assert record["steps"] == 3  # the band [0, 1] accepts the first check
    history = record["history"]
    assert history[0]["sampled_accuracy"] < 0.2
    assert history[0]["nll"] < 6.5  # below a uniform guess over the vocabulary, log(640) = 6.46
    stamp = (tmp_path / path.split("/")[-1] / "model.safetensors").stat().st_mtime
    assert resolve_model_path(config) == path  # cached: nothing retrained
    assert (tmp_path / path.split("/")[-1] / "model.safetensors").stat().st_mtime == stamp
    assert warm_model_dir(load_config(["configs/tiny_cpu.yaml"], OVERRIDES)) == warm_model_dir(config)  # shared
    other = load_config(["configs/tiny_cpu.yaml"], OVERRIDES + ["model.warm_start.seed=1"])
    assert warm_model_dir(other) != warm_model_dir(config)
