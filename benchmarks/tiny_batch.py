"""The tiny CPU preset's generation batch, as the engine benchmarks time it (benchmarks only)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tiny_preset_batch():
    """``(config, model_path, prompts)`` of configs/tiny_cpu.yaml: the warm-started model when it
    is cached (else the randomly initialised one) and one step's ``prompts_per_step`` training
    prompts as token ids."""
    from transformers import AutoTokenizer

    from models.sources import resolve_model_path
    from orchestrator.config_io import load_config
    from prompts.loaders import load_prompt_set
    from prompts.problems import render_prompt

    config = load_config([str(ROOT / "configs/tiny_cpu.yaml")], [])
    model_path = resolve_model_path(config, log=lambda *a, **k: None)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    problems = load_prompt_set(config.data).train[: config.trainer.prompts_per_step]
    prompts = [
        tokenizer.encode(render_prompt(p, config.data.prompt_template), add_special_tokens=False) for p in problems
    ]
    return config, model_path, prompts
