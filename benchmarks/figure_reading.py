"""Does a vision-language policy read its figures, and does it compute from what it read?

    .venv/bin/python benchmarks/figure_reading.py --model DIR [--config configs/tiny_vl_cpu.yaml] [--name figure_reading]

Greedy answers (transformers, one prompt at a time) to the config's held-out diagram problems,
parsed against the worked solution's form: a triangle's "x = 180 - a - b = c", a straight
line's "x = 180 - a = b" and a rectangle's "x = area / w = h". For each family: how often the
numbers the model wrote are the figure's labels (read), how often its arithmetic on its own
numbers is right (computed), and how often the answer is right. A held-out accuracy near zero
means different things when the model reads and cannot compute and when it cannot read.
Prints and writes benchmarks/results/<--name>.json.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRIANGLE = re.compile(r"x = 180 - (\d+) - (\d+) = (\d+)")
LINE = re.compile(r"x = 180 - (\d+) = (\d+)")
RECTANGLE = re.compile(r"x = (\d+) / (\d+) = (\d+)")


def judge(problem, response: str) -> dict[str, bool]:
    """read / computed / parsed for one response (an unparsed response reads and computes nothing)."""
    from prompts.figures import Figure

    figure = Figure.from_json(problem.meta["figure"])
    if figure.kind == "triangle":
        match = TRIANGLE.search(response)
        if not match:
            return {"parsed": False, "read": False, "computed": False}
        a, b, c = (int(g) for g in match.groups())
        wanted = sorted(int(v) for v in figure.shape)
        return {"parsed": True, "read": sorted((a, b)) == wanted, "computed": 180 - a - b == c}
    if figure.kind == "line":
        match = LINE.search(response)
        if not match:
            return {"parsed": False, "read": False, "computed": False}
        a, b = (int(g) for g in match.groups())
        return {"parsed": True, "read": a == int(figure.shape[0]), "computed": 180 - a == b}
    if figure.kind == "rectangle":
        match = RECTANGLE.search(response)
        if not match:
            return {"parsed": False, "read": False, "computed": False}
        area, width, height = (int(g) for g in match.groups())
        return {"parsed": True, "read": width == int(figure.shape[0]), "computed": width * height == area}
    return {"parsed": False, "read": False, "computed": False}  # circles: none held out here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a vision-language model directory (e.g. the warm start)")
    parser.add_argument("--config", default=str(ROOT / "configs/tiny_vl_cpu.yaml"))
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--name", default="figure_reading")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from orchestrator.config_io import load_config
    from prompts.images import problem_images
    from prompts.loaders import load_prompt_set
    from prompts.problems import render_prompt
    from rewards.verify import score

    config = load_config([args.config])
    problems = load_prompt_set(config.data).test
    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32).eval()
    eos = processor.tokenizer.eos_token_id
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for problem in problems:
        text = render_prompt(
            problem, config.data.prompt_template, tokenizer=processor.tokenizer, chat_template=config.data.chat_template
        )
        inputs = processor(text=[text], images=problem_images(problem), return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=args.max_tokens, do_sample=False, eos_token_id=eos)
        response = processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        tally = counts[problem.meta["family"]]
        tally["problems"] += 1
        for key, value in {**judge(problem, response), "correct": score(response, problem.answer).correct}.items():
            tally[key] += int(value)
    result = {"model": args.model, "config": args.config, "families": {k: dict(v) for k, v in counts.items()}}
    for family, tally in result["families"].items():
        n = tally["problems"]
        print(
            f"{family}: {n} problems, parsed {tally['parsed'] / n:.2f}, read {tally['read'] / n:.2f}, "
            f"computed {tally['computed'] / n:.2f}, correct {tally['correct'] / n:.2f}"
        )
    print(f"-> {save_result(args.name, result)}")


if __name__ == "__main__":
    main()
