"""``bppo bootstrap``: the tiny model (or a packaged real model), warm-started by SFT until RL has
something to improve.

The built tiny model (``models.tiny``: tokenizer + random Qwen2; or ``models.tiny_vl``, with
each prompt's images), or a packaged pretrained model
(``models.packaged``, its prompts in its chat template), is trained on
synthetic problems with worked solutions, concise and verbose mixed, through the same
DeepSpeed learner as RL (``LearnerWorld.train(objective="sft")``). Every
``eval_every`` steps the weights go to a vLLM engine, which samples (T=1) one answer per
held-out problem; the first check inside ``accuracy_band`` stops training. The result is
cached by a hash of everything that shapes it, so ``bppo train``/``compare`` with
``model.path: tiny`` reuse it, and an equal config gives the same model.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import torch

from learner.algorithms import GRPOConfig
from models.cache import BUILT, build_atomically
from orchestrator.config import Config, LearnerConfig
from prompts.figures import FIGURE_VERSION
from prompts.synthetic import GENERATOR_VERSION

EVAL_MAX_TOKENS = 160  # the tiny model's evaluation cap (a packaged model's is rollout.max_tokens)


def warm_start_key(config: Config) -> dict:
    """Everything the warm-started model depends on."""
    tiny = config.model.path == "tiny"
    built = config.model.path in BUILT
    warm = config.model.warm_start.model_dump(mode="json")
    if not warm["elaborate_fraction"]:  # at 0 the SFT data is what it was before the setting existed:
        del warm["elaborate_fraction"]  # the caches made then stay valid
    vision = {"tiny_vl": config.model.tiny_vl.model_dump(mode="json")} if config.model.path == "tiny-vl" else {}
    # the same diagram problems drawn another way are other SFT data
    drawing = {"figures": FIGURE_VERSION} if config.data.source.kind == "diagrams" else {}
    return {
        # the base: a built model's config, or a packaged model's name (its file's hash names the
        # converted directory, which warm_model_dir folds in)
        "tiny": config.model.tiny.model_dump(mode="json") if tiny else None,
        **vision,
        **drawing,
        "base": None if built else config.model.path,
        "chat_template": config.data.chat_template,
        "warm_start": warm,
        "prompt_template": config.data.prompt_template,
        "source": config.data.source.model_dump(mode="json"),
        "generator": GENERATOR_VERSION,
        # The band is judged by the built-in verifier whatever reward.function says (below); a
        # cache made before that rule may hold a model judged by a stand-in reward: not reused.
        "judge": "built-in verifier",
    }


def sft_examples(config: Config, tokenizer, train_problems: list) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids + EOS) pairs from the first ``num_problems`` training problems;
    a seeded ``elaborate_fraction`` of them use the elaborate solution where the problem has
    one, and a ``verbose_fraction`` of the rest the verbose one."""
    return [(prompt, response) for _, prompt, response in sft_rows(config, tokenizer, train_problems)]


def sft_rows(config: Config, tokenizer, train_problems: list) -> list[tuple[object, list[int], list[int]]]:
    """``sft_examples`` with the problem each came from (its images, for a vision-language model)."""
    from prompts.problems import prompt_ids

    warm = config.model.warm_start
    problems = train_problems[: warm.num_problems]
    rng = random.Random(warm.seed)
    examples = []
    for problem in problems:
        verbose, elaborate = problem.meta.get("verbose_solution"), problem.meta.get("elaborate_solution")
        # (no draw when elaborate_fraction is 0: the tiny model's SFT data stays what it was)
        if warm.elaborate_fraction and elaborate and rng.random() < warm.elaborate_fraction:
            solution = elaborate
        else:
            solution = verbose if verbose and rng.random() < warm.verbose_fraction else problem.solution
        if not solution:
            continue
        chat = config.data.chat_template
        prompt = prompt_ids(problem, config.data.prompt_template, tokenizer, chat_template=chat)
        # the tiny tokenizer was trained on " " + solution; a chat template's turn starts on a new line
        response = tokenizer.encode(solution if chat else " " + solution, add_special_tokens=False)
        examples.append((problem, prompt, response + [tokenizer.eos_token_id]))
    if not examples:
        raise ValueError("the warm start needs problems with worked solutions (data.source: synthetic)")
    return examples


def sft_config(config: Config) -> Config:
    """The run config the warm start's actors are built from: one learner rank and one engine,
    plain SFT settings (ZeRO 0, cosine LR from ``warm_start.lr``), sampling at T=1, its own seed.

    The warm start is shared by every run with this data (it is cached by ``warm_start_key``), so
    its accuracy band is judged by the built-in verifier, never by a run's custom
    ``reward.function``: a stand-in reward (the benchmarks' even-length one) once stopped it after
    25 SFT steps at a "51% accuracy" that was 0% real, and every later run reused that model.
    """
    warm = config.model.warm_start
    learner = LearnerConfig(
        world_size=1,
        zero_stage=0,
        lr=warm.lr,
        weight_decay=0.0,
        warmup_steps=min(20, warm.max_steps // 10),
        lr_schedule="cosine",
        max_grad_norm=1.0,
        gradient_checkpointing=False,
        micro_batch_tokens=config.learner.micro_batch_tokens * 4,
    )
    return config.model_copy(
        update={
            "learner": learner,
            "algo": GRPOConfig(),  # unused by the SFT objective; the worker needs one
            "rollout": config.rollout.model_copy(update={"num_engines": 1, "temperature": 1.0, "top_p": 1.0}),
            "reward": config.reward.model_copy(update={"function": None}),
            "trainer": config.trainer.model_copy(update={"seed": warm.seed}),
        }
    )


def bootstrap(config: Config, target: Path, base: str, *, log=print) -> dict:
    """SFT the model in ``base`` (the tiny model, or a packaged model's converted checkpoint) into
    ``target`` (atomically); returns what ``bootstrap.json`` records."""
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from learner.batch import TrainBatch, pad_rows
    from orchestrator import console
    from orchestrator.actors import start_actor_stack
    from orchestrator.evaluation import answer_quality
    from orchestrator.vision import vision_inputs
    from prompts.images import problem_images
    from prompts.loaders import load_prompt_set
    from prompts.problems import prompt_ids
    from rollout.types import SamplingSettings

    if console.ROUTER.file is None:  # `bppo bootstrap` alone: beside the cached model
        console.worker_log(target.parent / f"{target.name}.worker.log")
    warm, started = config.model.warm_start, time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base)
    prompt_set = load_prompt_set(config.data)  # generating it is seconds: once, for both uses
    vision = vision_inputs(base, prompt_set.train, trust_remote_code=config.model.trust_remote_code)
    examples = []  # (prompt ids as the learner sees them, response ids, the prompt's images or None)
    for problem, prompt, response in sft_rows(config, tokenizer, prompt_set.train):
        images = None if vision is None else vision.encode(problem_images(problem))
        examples.append((prompt if vision is None else vision.expand(prompt, images), response, images))
    held_out = prompt_set.test[: warm.eval_problems]
    data = config.data
    eval_prompts = [prompt_ids(p, data.prompt_template, tokenizer, chat_template=data.chat_template) for p in held_out]
    built = config.model.path in BUILT
    max_tokens = min(EVAL_MAX_TOKENS, config.rollout.max_tokens) if built else config.rollout.max_tokens
    actors = start_actor_stack(
        sft_config(config), base, total_steps=warm.max_steps, max_len=max(EVAL_MAX_TOKENS, max_tokens)
    )
    learner, fleet, rewards, sync = actors.learner, actors.fleet, actors.rewards, actors.weight_sync
    rng, history, accuracy = random.Random(warm.seed), [], 0.0
    low, high = warm.accuracy_band
    # No total: the run ends on the accuracy band, not at max_steps, so an ETA from max_steps lies.
    bar = tqdm(
        desc=f"warm start: SFT until sampled accuracy >= {low} (at most {warm.max_steps} steps)",
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for step in range(1, warm.max_steps + 1):
            chosen = [examples[rng.randrange(len(examples))] for _ in range(warm.batch_size)]
            input_ids, attention_mask, loss_mask, _ = pad_rows(
                [p for p, _, _ in chosen], [r for _, r, _ in chosen], pad_id=tokenizer.eos_token_id
            )
            batch = TrainBatch(
                input_ids,
                attention_mask,
                loss_mask,
                torch.zeros(len(chosen)),
                torch.arange(len(chosen)),
                images=None if vision is None else [images for _, _, images in chosen],
            )
            nll = learner.train(batch, objective="sft")["sft/nll"]
            bar.update(1)
            if step % warm.eval_every and step != warm.max_steps:
                continue
            sync.push()
            quality = answer_quality(
                fleet,
                rewards,
                eval_prompts,
                held_out,
                SamplingSettings(n=1, temperature=1.0, max_tokens=max_tokens, seed=warm.seed, logprobs=False),
            ).metrics()
            accuracy, length = quality["accuracy"], quality["len_mean"]
            history.append(
                {
                    "step": step,
                    "nll": round(nll, 4),
                    "sampled_accuracy": accuracy,
                    "response_len_mean": round(length, 1),
                    "elapsed_s": round(time.perf_counter() - started, 1),
                }
            )
            bar.set_postfix(nll=f"{nll:.3f}", sampled_acc=f"{accuracy:.3f}", len=f"{length:.0f}")
            if accuracy >= low:  # in the band, or past it (eval_every too coarse): stop
                break
        if not low <= accuracy <= high:
            log(
                f"warning: warm start ended at sampled accuracy {accuracy:.3f}, outside the band "
                f"[{low}, {high}] (eval_every too coarse, or max_steps too small)",
                file=sys.stderr,
            )
        record = {
            "steps": history[-1]["step"],
            "sampled_accuracy": accuracy,
            "history": history,
            "seconds": round(time.perf_counter() - started, 1),
            "key": warm_start_key(config),
        }
        _save_atomically(learner, target, record)
    finally:
        bar.close()
        actors.close()
    log(f"warm-started {config.model.path} model -> {target} ({record['seconds']} s)", file=sys.stderr)
    return record


def _save_atomically(learner, target: Path, record: dict) -> None:
    def save(staging: Path) -> None:
        learner.save_pretrained(str(staging))
        (staging / "bootstrap.json").write_text(json.dumps(record, indent=1))

    build_atomically(target, save, complete="bootstrap.json")
