"""What a user probably meant by an unknown config key: a close spelling of an allowed key, or
the name verl (or TRL/OpenRLHF) gives the same setting. Pure: names in, a hint out."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

# verl's leaf names (actor_rollout_ref.actor.*, algorithm.*, data.*, trainer.*) -> ours
FOREIGN_NAMES = {
    "ppo_mini_batch_size": "learner.mini_batch_size",
    "ppo_epochs": "learner.epochs",
    "clip_ratio": "algo.clip_low and algo.clip_high",
    "clip_ratio_low": "algo.clip_low",
    "clip_ratio_high": "algo.clip_high",
    "loss_agg_mode": "algo.agg_mode",
    "kl_loss_coef": "algo.kl_coef",
    "kl_loss_type": "algo.kl_kind",
    "use_kl_loss": "algo.kl_coef (> 0 turns the KL loss on)",
    "adv_estimator": "algo.name (grpo or bppo)",
    "norm_adv_by_std_in_grpo": "algo.norm_by_std",
    "total_training_steps": "trainer.steps",
    "total_epochs": "trainer.steps (training steps, one rollout batch each)",
    "train_batch_size": "trainer.prompts_per_step",
    "gen_batch_size": "trainer.gen_prompts_per_step",
    "max_response_length": "rollout.max_tokens",
    "max_completion_length": "rollout.max_tokens",
    "num_generations": "rollout.n",
    "tensor_model_parallel_size": "rollout.tensor_parallel_size",
    "save_freq": "trainer.save_every",
    "test_freq": "eval.every",
    "project_name": "wandb.project",
    "experiment_name": "wandb.group",
    "default_local_dir": "trainer.run_dir",
    "resume_mode": "trainer.resume",
    "lr_warmup_steps": "learner.warmup_steps",
    "grad_clip": "learner.max_grad_norm",
    "max_grad_norm": "learner.max_grad_norm",
    "ppo_micro_batch_size_per_gpu": "learner.micro_batch_tokens (micro-batches are packed by tokens)",
    "ppo_max_token_len_per_gpu": "learner.micro_batch_tokens",
    "use_dynamic_bsz": "learner.padding_free",
    "enable_gradient_checkpointing": "learner.gradient_checkpointing",
    "train_files": "data.source.train_path (with data.source.kind=file)",
    "val_files": "data.source.test_path (with data.source.kind=file)",
    "prompt_key": "data.columns.question",
    "learning_rate": "learner.lr",
    "beta": "algo.kl_coef",
    "epsilon": "algo.clip_low",
    "epsilon_high": "algo.clip_high",
}


def _leaves(value: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _leaves(sub, (*path, str(key)))
    else:
        yield path


def unknown_key_hint(path: list[str], value: object, allowed: list[str]) -> str:
    """'' or a short hint for the unknown key at ``path`` (its last part) holding ``value``."""
    leaf = path[-1]
    if leaf in FOREIGN_NAMES:
        return f"verl's name: ours is {FOREIGN_NAMES[leaf]}"
    close = difflib.get_close_matches(leaf, allowed, n=1, cutoff=0.75)
    if close:
        return f"did you mean {'.'.join([*path[:-1], close[0]])}?"
    # a whole foreign section (verl's actor_rollout_ref: {actor: {ppo_mini_batch_size: ...}}): its known leaves
    known = [(sub, FOREIGN_NAMES[sub[-1]]) for sub in _leaves(value) if sub and sub[-1] in FOREIGN_NAMES]
    if known:
        return "verl's names: " + ", ".join(f"{'.'.join([*path, *sub])} is {ours}" for sub, ours in known[:4])
    return ""
