"""models/tiny_vl.py: the tiny Qwen2-VL the project builds, its processor, and vLLM serving it
with image inputs at the learner's log-probs."""

from __future__ import annotations

import pytest
import torch

from models.classes import vision_token_ids
from models.tiny_vl import build_tiny_vl_model, image_tokens
from orchestrator.config import TinyModelConfig, TinyVLModelConfig
from prompts.figures import Figure, render
from prompts.images import IMAGE_PLACEHOLDER

QUESTION = "Find x, the angle at C in the figure, in degrees."


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory):
    config = TinyVLModelConfig(text=TinyModelConfig(num_layers=2, tokenizer_problems=200))
    out = tmp_path_factory.mktemp("tiny-vl")
    build_tiny_vl_model(out, config)
    return out, config


def _figures(size: int):
    triangle = render(Figure("triangle", (60, 50), {"A": "60°", "B": "50°", "C": "x"}), size=size)
    circle = render(Figure("circle", (3,), {"radius": "3"}), size=size)
    return triangle, circle


def _learner_logprobs(model, processor, image, response_ids: list[int]) -> list[float]:
    """log p(response token | prompt with the image, earlier tokens) by transformers' forward,
    the vision tokens excluded as the engines and the learner exclude them (never sampled)."""
    from learner.logprobs import ban_tokens

    prompt = processor(text=[IMAGE_PLACEHOLDER + QUESTION], images=[image], return_tensors="pt")
    ids = torch.cat([prompt["input_ids"], torch.tensor([response_ids])], dim=1)
    # which tokens are image tokens: Qwen2-VL's 3-D positions (M-RoPE) are computed from it
    token_types = torch.cat([prompt["mm_token_type_ids"], torch.zeros(1, len(response_ids), dtype=torch.long)], dim=1)
    with torch.no_grad():
        logits = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=prompt["pixel_values"],
            image_grid_thw=prompt["image_grid_thw"],
            mm_token_type_ids=token_types,
        ).logits[0]
    ban_tokens(logits, torch.tensor(vision_token_ids(model.config)))
    start = prompt["input_ids"].shape[1] - 1  # the logits that predict the first response token
    logprobs = torch.log_softmax(logits[start : start + len(response_ids)].float(), dim=-1)
    return logprobs.gather(1, torch.tensor(response_ids).view(-1, 1)).view(-1).tolist()


def test_the_tiny_vlm_reads_its_image_through_the_processor(tiny_vl):
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    out, config = tiny_vl
    processor = AutoProcessor.from_pretrained(out)
    triangle, circle = _figures(config.image_size)
    encoded = processor(text=[IMAGE_PLACEHOLDER + QUESTION], images=[triangle], return_tensors="pt")
    # 112 px = 8 x 8 patches of 14 px, merged 2 x 2: 16 image tokens in place of the one pad
    assert image_tokens(112) == 16 and encoded["image_grid_thw"].tolist() == [[1, 8, 8]]
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (encoded["input_ids"][0] == pad).sum().item() == 16
    # 64 patches of 3 channels x 2 frames x 14 x 14 pixels
    assert encoded["pixel_values"].shape == (64, 3 * 2 * 14 * 14)
    # paper is zero, ink negative: (255 / 255 - 1) / 0.5 = 0 for white, (0 / 255 - 1) / 0.5 = -2 for black
    pixels = encoded["pixel_values"]
    assert pixels.max().item() == 0.0 and pixels.min().item() == -2.0
    assert (pixels == 0).float().mean().item() > 0.8  # a figure is mostly paper: most pixels say nothing
    model = Qwen2VLForConditionalGeneration.from_pretrained(out).eval()
    assert model.config.vision_config.depth == 1 and model.config.text_config.num_hidden_layers == 2
    response = processor.tokenizer(" x = 70")["input_ids"]
    on_triangle = _learner_logprobs(model, processor, triangle, response)
    on_circle = _learner_logprobs(model, processor, circle, response)
    assert on_triangle == _learner_logprobs(model, processor, triangle, response)  # deterministic
    # the same tokens after another picture: the image reaches the language model
    assert max(abs(a - b) for a, b in zip(on_triangle, on_circle)) > 1e-3


@pytest.mark.slow  # vLLM (its engine core in its own process)
def test_vllm_serves_image_prompts_at_the_learners_logprobs(tiny_vl):
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from rollout.engine import RolloutEngine
    from rollout.types import SamplingSettings

    out, config = tiny_vl
    processor = AutoProcessor.from_pretrained(out)
    model = Qwen2VLForConditionalGeneration.from_pretrained(out).eval()
    triangle, circle = _figures(config.image_size)
    prompt = processor.tokenizer(IMAGE_PLACEHOLDER + QUESTION)["input_ids"]  # one pad token: vLLM expands it
    engine = RolloutEngine(str(out), max_model_len=256, seed=0, max_images_per_prompt=1)
    try:
        samples = engine.generate(
            [prompt, prompt],
            SamplingSettings(n=2, temperature=1.0, max_tokens=8, seed=7),
            images=[[triangle], [circle]],
        )
        # one completion with seed 7 (what the triangle's first completion above was drawn with),
        # after each picture
        single = SamplingSettings(n=1, temperature=1.0, max_tokens=8, seed=7)
        same = engine.generate([prompt], single, images=[[triangle]])
        swapped = engine.generate([prompt], single, images=[[circle]])
        # 1,024 tokens from the random model: ~6 vision tokens expected if they could be sampled
        # (4 of ~640), none when banned (a response holding one breaks the learner's forward)
        many = engine.generate(
            [prompt, prompt],
            SamplingSettings(n=8, temperature=1.0, max_tokens=64, seed=3),
            images=[[triangle], [circle]],
        )
    finally:
        engine.close()
    assert [s.prompt_index for s in samples] == [0, 0, 1, 1] and all(s.prompt_ids == prompt for s in samples)
    worst = 0.0
    for sample in samples:
        image = triangle if sample.prompt_index == 0 else circle
        learner = _learner_logprobs(model, processor, image, sample.response_ids)
        worst = max(worst, *(abs(a - b) for a, b in zip(sample.response_logprobs, learner)))
    assert len(samples[0].response_ids) == 8 and worst < 1e-4  # parity on image prompts
    assert same[0].response_ids == samples[0].response_ids  # reproducible per seed
    assert swapped[0].response_logprobs != same[0].response_logprobs  # the picture changes the policy
    vision = set(vision_token_ids(model.config))
    assert len(vision) == 4 and sum(len(s.response_ids) for s in many) > 900
    assert not any(vision & set(s.response_ids) for s in many)


def test_expanding_image_pads_by_hand():
    from learner.batch import expand_image_pads

    # pad 9: the first image is 2 tokens, the second 3; text tokens keep their order
    assert expand_image_pads([1, 9, 2, 9, 3], 9, [2, 3]) == [1, 9, 9, 2, 9, 9, 9, 3]
    assert expand_image_pads([1, 2], 9, []) == [1, 2]
    with pytest.raises(ValueError, match="1 image pad tokens for 2 images"):
        expand_image_pads([1, 9], 9, [4, 4])


def test_the_learner_forward_carries_each_rows_image(tiny_vl):
    """The worker's log-probs on a padded batch of two image rows (different pictures) and a text
    row equal transformers' forward of each row alone; selecting rows keeps each row's image."""
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from learner.batch import RowImages, TrainBatch, pad_rows
    from tests.in_process_learner import in_process_worker

    out, config = tiny_vl
    processor = AutoProcessor.from_pretrained(out)
    model = Qwen2VLForConditionalGeneration.from_pretrained(out).eval()
    triangle, circle = _figures(config.image_size)
    response = processor.tokenizer(" x = 70. The answer is 70.")["input_ids"]
    encoded = [
        processor(text=[IMAGE_PLACEHOLDER + QUESTION], images=[im], return_tensors="pt") for im in (triangle, circle)
    ]
    text_prompt = processor.tokenizer("What is 3 + 4?")["input_ids"]
    prompts = [e["input_ids"][0].tolist() for e in encoded] + [text_prompt]
    input_ids, attention_mask, loss_mask, _ = pad_rows(prompts, [response, response[:4], response], pad_id=0)
    images = [RowImages(e["pixel_values"], e["image_grid_thw"]) for e in encoded] + [None]
    batch = TrainBatch(input_ids, attention_mask, loss_mask, torch.zeros(3), torch.arange(3), images=images)
    # padding_free: a vision-language model's rows run padded all the same (3-D positions are per row)
    worker, learner_model = in_process_worker(str(out), padding_free=True)
    assert type(learner_model).__name__ == "Qwen2VLForConditionalGeneration"
    with torch.no_grad():
        logprobs = worker._logprobs(learner_model, batch)
    for row, image in enumerate((triangle, circle)):
        start = len(prompts[row])
        tokens = response if row == 0 else response[:4]
        alone = _learner_logprobs(model, processor, image, tokens)
        assert logprobs[row, start : start + len(tokens)].tolist() == pytest.approx(alone, abs=1e-5)
    with torch.no_grad():  # a VLM's text row: its vision tokens are out of the distribution as well
        text_logits = model(input_ids=torch.tensor([text_prompt + response])).logits[0].float()
        text_logits[:, vision_token_ids(model.config)] = float("-inf")
        text_alone = torch.log_softmax(text_logits, -1)
    expected = text_alone[len(text_prompt) - 1 : -1].gather(1, torch.tensor(response).view(-1, 1)).view(-1)
    assert logprobs[2, len(text_prompt) : len(text_prompt) + len(response)].tolist() == pytest.approx(
        expected.tolist(), abs=1e-5
    )
    # rows selected out of order keep their own images: the circle's row first, then the text row
    picked = batch.select([1, 2])
    assert picked.images[0] is images[1] and picked.images[1] is None
    assert picked.image_inputs()["image_grid_thw"].tolist() == [[1, 8, 8]]
    with torch.no_grad():
        again = worker._logprobs(learner_model, picked)
    assert again[0, : logprobs.shape[1]].tolist()[: len(prompts[1]) + 4] == pytest.approx(
        logprobs[1].tolist()[: len(prompts[1]) + 4], abs=1e-5
    )


@pytest.mark.slow  # Ray, vLLM (its engine core in its own process), DeepSpeed, the gloo weight transfer
@pytest.mark.parametrize("algo", ["grpo", "bppo"])
def test_two_training_steps_on_diagram_prompts(tiny_vl, ray_local, tmp_path, algo):
    """The whole loop on prompts with images: the engines sample with each prompt's figure, the
    learner's log-probs of the same tokens (its own processor's pixels, the prompt's image pads
    expanded) agree with the engine's, the update reaches the engines (vision tower included)
    through the gloo weight transfer, and evaluation reads the held-out figures."""
    import json
    from pathlib import Path

    from orchestrator.config_io import load_config
    from orchestrator.loop import Trainer

    out, _ = tiny_vl
    settings = {
        "model.path": out,
        "algo.name": algo,
        "data.source.kind": "diagrams",
        "data.source.num_train": 48,
        "data.source.num_test": 8,
        "data.source.image_size": 112,
        "reward.function": "tests.custom_reward:even_length_reward",  # a random model has pairs
        "rollout.n": 4,
        "rollout.max_tokens": 24,
        "trainer.steps": 2,
        "trainer.prompts_per_step": 4,
        "trainer.parity_every": 1,
        "trainer.save_every": 2 if algo == "bppo" else 0,  # BPPO: a checkpoint to export
        "trainer.run_dir": tmp_path,
        "eval.every": 2,
    }
    preset = str(Path(__file__).resolve().parents[1] / "configs/tiny_cpu.yaml")
    config = load_config([preset], [f"{key}={value}" for key, value in settings.items()])
    Trainer(config).run()
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2]
    steps = [m for m in metrics if m["step"]]
    assert all(m["train/rows"] > 0 for m in steps)
    # parity: the learner's prompts (16 image tokens each where the engines got one pad, its own
    # pixels) give the engines' log-probs
    parity = [m["sync/logprob_max_diff"] for m in steps if "sync/logprob_max_diff" in m]
    assert parity and max(parity) < 1e-4
    assert all(m["sync/policy_version"] == m["step"] for m in steps)  # each update pushed
    assert metrics[0]["eval/problems"] == 8 and "eval/accuracy" in metrics[-1]
    rollouts = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert all(pid.startswith("train-fig-") for r in rollouts for pid in r["problem_ids"])  # diagram problems
    if algo == "bppo":  # `bppo export` of a VLM's checkpoint: its vision tower and its image processor
        from safetensors.torch import load_file
        from transformers import AutoProcessor

        from cli.main import main

        checkpoint = tmp_path / "checkpoints" / "step_000002"
        assert main(["export", "--checkpoint", str(checkpoint)]) == 0
        exported, final = (
            load_file(checkpoint / "hf" / "model.safetensors"),
            load_file(tmp_path / "final" / "model.safetensors"),
        )
        assert exported.keys() == final.keys() and any(
            ".visual." in name or name.startswith("visual.") for name in final
        )
        for name, tensor in final.items():
            torch.testing.assert_close(exported[name], tensor, rtol=0, atol=0, msg=name)
        processor = AutoProcessor.from_pretrained(checkpoint / "hf")  # the export is another run's model.path
        assert processor.image_processor.size.longest_edge == 112 * 112  # its pixels, as the model was built


def test_the_drivers_vision_inputs_match_the_processor(tiny_vl):
    """orchestrator.vision: a diagram problem's image tokens counted from its size, its pixels and
    its expanded prompt exactly as the processor makes them from text and image together."""
    from transformers import AutoProcessor

    from learner.batch import RolloutGroups
    from orchestrator.vision import VisionInputs, vision_inputs
    from prompts.diagrams import generate_diagrams
    from prompts.images import problem_images

    out, _ = tiny_vl
    (problem,), _ = generate_diagrams(1, 1, seed=3, image_size=112)
    vision = vision_inputs(str(out), [problem])
    assert isinstance(vision, VisionInputs) and vision.image_tokens(problem) == 16
    processor = AutoProcessor.from_pretrained(out)
    whole = processor(text=[IMAGE_PLACEHOLDER + problem.question], images=problem_images(problem), return_tensors="pt")
    prompt = processor.tokenizer(IMAGE_PLACEHOLDER + problem.question)["input_ids"]
    groups = RolloutGroups(
        prompt_ids=[prompt], response_ids=[[[5], [6]]], rewards=torch.zeros(1, 2), correct=torch.zeros(1, 2).bool()
    )
    attached = vision.attach(groups, [problem])
    assert attached.prompt_ids[0] == whole["input_ids"][0].tolist()
    assert torch.equal(attached.images[0].pixel_values, whole["pixel_values"])
    assert attached.images[0].image_grid_thw.tolist() == [[1, 8, 8]]


def test_a_text_model_asked_to_read_images_is_refused(tiny_model):
    from orchestrator.vision import vision_inputs
    from prompts.diagrams import generate_diagrams

    train, test = generate_diagrams(6, 2, seed=0)
    assert vision_inputs(tiny_model, []) is None  # a text model on text prompts: nothing to do
    with pytest.raises(ValueError, match=r"8 of the 8 prompts carry images .* has no vision tower"):
        vision_inputs(tiny_model, train + test)


def test_one_rule_says_which_classes_load_a_checkpoint(tiny_vl, tmp_path):
    """models.classes: a config with a vision tower loads as an image-text model with its processor
    (the learner, the engines, the driver and `bppo export` all ask it), a text model as a causal LM
    with its tokenizer."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
        Qwen2Config,
    )

    from models.classes import has_vision_tower, model_class, preprocessor_class

    out, _ = tiny_vl
    vision = AutoConfig.from_pretrained(out)
    assert has_vision_tower(str(out))
    assert model_class(vision) is AutoModelForImageTextToText and preprocessor_class(vision) is AutoProcessor
    text = Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    text.save_pretrained(tmp_path)
    assert not has_vision_tower(str(tmp_path))
    assert model_class(text) is AutoModelForCausalLM and preprocessor_class(text) is AutoTokenizer


@pytest.mark.slow  # Ray, vLLM (its engine core in its own process), DeepSpeed, the gloo weight transfer
def test_after_a_sync_the_engine_sees_an_image_it_has_seen_with_the_new_vision_tower(tiny_vl, ray_local, tmp_path):
    """vLLM keeps an image's embedding and reuses it when the image comes again (every evaluation,
    every revisited prompt). The engine samples a figure with model A's vision tower, then a sync
    brings model B (A with another vision tower): the same figure must be seen through B's tower,
    or the engine answers with A's picture and B's text side. (Before the engine dropped its
    encoder cache on a sync, the tiny VLM's warm start was evaluated with the vision tower of its
    first evaluation: its sampled accuracy never moved.)"""
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from orchestrator.config import LearnerConfig
    from rollout.fleet import EngineFleet
    from rollout.types import SamplingSettings
    from tests.learner_worlds import learner_world
    from weight_sync.driver import WeightSync

    out, config = tiny_vl
    processor = AutoProcessor.from_pretrained(out)
    model_a = Qwen2VLForConditionalGeneration.from_pretrained(out).eval()
    model_b = Qwen2VLForConditionalGeneration.from_pretrained(out).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model_b.named_parameters():
            if "visual" in name:
                param.add_(torch.randn(param.shape, generator=generator) * 0.5)
    model_b.save_pretrained(tmp_path / "b")
    processor.save_pretrained(tmp_path / "b")
    triangle, _ = _figures(config.image_size)
    prompt = processor.tokenizer(IMAGE_PLACEHOLDER + QUESTION)["input_ids"]
    sampling = SamplingSettings(n=1, temperature=1.0, max_tokens=8, seed=7)
    fleet = EngineFleet(
        num_engines=1,
        resources_per_engine={"CPU": 0.25},
        engine_kwargs=dict(model_path=str(out), max_model_len=256, seed=0),
    )
    learner = learner_world(tmp_path / "b", LearnerConfig(zero_stage=0, warmup_steps=0, lr_schedule="constant"))
    sync = WeightSync(fleet, learner, on_gpu=False, bucket_mb=1, timeout_s=60)
    try:
        (seen,) = fleet.generate([prompt], sampling, images=[[triangle]])  # A's embedding of the figure, cached
        sync.push()
        (again,) = fleet.generate([prompt], sampling, images=[[triangle]])
    finally:
        sync.close()
        fleet.shutdown()
        learner.shutdown()

    def gap(sample, model) -> float:
        expected = _learner_logprobs(model, processor, triangle, sample.response_ids)
        return max(abs(a - b) for a, b in zip(sample.response_logprobs, expected))

    assert gap(seen, model_a) < 1e-4  # before the sync: model A
    assert gap(again, model_b) < 1e-4  # after it: model B's vision tower, on an image the engine had seen
    assert gap(again, model_a) > 1e-2  # and the two towers disagree, so seeing A's picture would fail
