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


class _CharTokenizer:
    """One id per character: which solution an SFT example used is read back exactly."""

    eos_token_id = 0

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_sft_examples_draw_elaborate_solutions_first_and_leave_the_old_mix_alone_at_zero():
    from prompts.synthetic import generate

    train, _ = generate(300, 0, seed=0, levels=(0,))
    base = ["configs/smollm2_cpu.yaml"]

    def kinds(overrides):
        config = load_config(base, ["data.chat_template=false", *overrides])  # (the prompt is not under test)
        examples = sft_examples(config, _CharTokenizer(), train)
        assert len(examples) == 300 and all(r[-1] == 0 for _, r in examples)
        texts = [_CharTokenizer().decode(r[:-1]).removeprefix(" ") for _, r in examples]
        return [
            "elaborate"
            if t == p.meta["elaborate_solution"]
            else "verbose"
            if t == p.meta["verbose_solution"]
            else "concise"
            for t, p in zip(texts, train)
        ], texts

    mixed, texts = kinds([])  # the preset: elaborate 0.5, then verbose 0.5 of the rest
    assert 110 < mixed.count("elaborate") < 190 and 40 < mixed.count("verbose") < 110
    assert 40 < mixed.count("concise") < 110
    lengths = sorted(len(t) for t in texts)
    assert lengths[int(0.9 * len(lengths))] > 2.5 * lengths[int(0.1 * len(lengths))]  # a spread, not one length
    # at 0 no extra draw is taken: the verbose/concise choice is the one made before elaborate solutions existed
    plain, _ = kinds(["model.warm_start.elaborate_fraction=0"])
    import random

    rng = random.Random(load_config(base).model.warm_start.seed)
    assert plain == ["verbose" if rng.random() < 0.5 else "concise" for _ in train]


def test_an_elaborate_fraction_of_zero_keeps_the_warm_start_key_of_before():
    import hashlib

    from models.warm_start import warm_start_key

    config = load_config(["configs/tiny_cpu.yaml"])
    key = warm_start_key(config)
    assert "elaborate_fraction" not in key["warm_start"]  # the SFT data is unchanged at 0 (test above)
    # the tiny demo's cache made before the setting existed (the key as it was then)
    assert hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12] == "f8f260ae71f4"
    other = load_config(["configs/tiny_cpu.yaml"], ["model.warm_start.elaborate_fraction=0.5"])
    assert warm_start_key(other)["warm_start"]["elaborate_fraction"] == 0.5
