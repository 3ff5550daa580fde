"""Can the tiny VLM learn to read a label from its figure? A reading probe, no RL.

    .venv/bin/python benchmarks/vision_probe.py [--layout label|triangle] [--image-size 112]
        [--normalize paper|clip] [--steps 300] [--lr 2e-3] [--vision-width 64] [--vision-layers 1]

Trains a freshly built tiny Qwen2-VL (``models.tiny_vl``, random weights, transformers directly:
no engine, no DeepSpeed) on one task: the prompt is an image and "Read angle A.", the target
the label's two digits. ``label``: the label alone, at a fixed cell of a blank canvas;
``triangle``: a diagram family's triangle (``prompts.figures``), the label wherever the shape
puts it. Every ``--every`` steps it scores a fresh batch: the loss, and how many labels are
read exactly (greedy, teacher-forced). Knowing nothing of the image, the loss is the entropy
of the digits (~1.46 nats per target token) and exact reads ~1/80.

``--normalize clip`` is Qwen2-VL's own normalisation (paper ~ +1.9 in every pixel), ``paper``
the tiny VLM's (paper 0, ink negative: ``model.tiny_vl.image_mean/std``). Prints and writes
benchmarks/results/<--name>.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _example(rng: random.Random, layout: str, size: int):
    from PIL import Image, ImageDraw, ImageFont

    from prompts.figures import LABEL_CELL, Figure, render

    a = rng.randint(20, 99)
    if layout == "triangle":
        b = rng.randint(20, min(99, 160 - a))
        image = render(Figure("triangle", (a, b), {"A": f"{a}°", "B": f"{b}°", "C": "x"}), size)
    else:  # the label alone, in the cell one down and one right of the corner, drawn as render draws labels
        image = Image.new("RGB", (size, size), "white")
        font = ImageFont.load_default(size=min(16, max(10, size // 14)))
        ImageDraw.Draw(image).text((LABEL_CELL + 2, LABEL_CELL + 2), f"{a}°", fill="black", font=font, anchor="la")
    return image, f" {a}"


def _batch(processor, rng, layout: str, size: int, n: int):
    import torch

    from prompts.images import IMAGE_PLACEHOLDER

    examples = [_example(rng, layout, size) for _ in range(n)]
    prompt = IMAGE_PLACEHOLDER + " Read angle A."
    encoded = processor(
        text=[prompt + target for _, target in examples],
        images=[[image] for image, _ in examples],
        return_tensors="pt",
        padding=True,
    )
    labels = torch.full_like(encoded["input_ids"], -100)  # loss on the target's tokens only
    for row, (_, target) in enumerate(examples):
        n_target = len(processor.tokenizer.encode(target, add_special_tokens=False))
        end = int(encoded["attention_mask"][row].sum())
        labels[row, end - n_target : end] = encoded["input_ids"][row, end - n_target : end]
    return encoded, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layout", choices=["label", "triangle"], default="label")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--normalize", choices=["paper", "clip"], default="paper")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--vision-width", type=int, default=64)
    parser.add_argument("--vision-layers", type=int, default=1)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD  # Qwen2-VL's processor's defaults

    from models.tiny_vl import build_tiny_vl_model
    from orchestrator.config import TinyVLModelConfig

    normalize = {} if args.normalize == "paper" else {"image_mean": OPENAI_CLIP_MEAN, "image_std": OPENAI_CLIP_STD}
    config = TinyVLModelConfig(
        image_size=args.image_size, vision_width=args.vision_width, vision_layers=args.vision_layers, **normalize
    )
    with tempfile.TemporaryDirectory() as out:
        build_tiny_vl_model(Path(out), config)
        processor = AutoProcessor.from_pretrained(out)
        processor.tokenizer.padding_side = "right"
        model = Qwen2VLForConditionalGeneration.from_pretrained(out, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    train_rng, eval_rng = random.Random(0), random.Random(1)
    history, started = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        encoded, labels = _batch(processor, train_rng, args.layout, args.image_size, args.batch_size)
        loss = model(**encoded, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.every:
            continue
        with torch.no_grad():
            encoded, labels = _batch(processor, eval_rng, args.layout, args.image_size, 64)
            out = model(**encoded, labels=labels)
            predicted, wanted = out.logits[:, :-1].argmax(-1), labels[:, 1:]
            exact = ((predicted == wanted) | (wanted == -100)).all(-1).float().mean().item()
        history.append({"step": step, "eval_loss": round(out.loss.item(), 3), "exact_reads": round(exact, 3)})
        print(f"step {step}: loss {out.loss.item():.3f}, labels read exactly {exact:.3f}", flush=True)
    result = {
        "settings": vars(args),
        "seconds": round(time.perf_counter() - started, 1),
        "history": history,
    }
    name = args.name or f"vision_probe_{args.layout}_{args.image_size}_{args.normalize}"
    print(f"-> {save_result(name, result)}")


if __name__ == "__main__":
    main()
