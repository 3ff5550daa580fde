"""A one-node learner group as the tests start it: fp32, temperature 1, seed 0 (tests only)."""

from __future__ import annotations


def learner_world(
    model_path,
    learner,
    *,
    algo: dict | None = None,
    world_size: int = 1,
    micro_batch_tokens: int = 4096,
    resources: dict | None = None,
    max_len: int = 32,
    total_steps: int = 10,
):
    """``LearnerWorld`` on ``model_path`` with ``learner`` (a ``LearnerConfig``) and ``algo`` (a
    dumped algorithm config; GRPO's defaults when None)."""
    from learner.algorithms import GRPOConfig
    from learner.world import LearnerWorld

    return LearnerWorld(
        world_size=world_size,
        micro_batch_tokens=micro_batch_tokens,
        resources_per_rank=resources or {"CPU": 0.5},
        max_len=max_len,
        worker_kwargs=dict(
            model_path=str(model_path),
            algo=algo if algo is not None else GRPOConfig().model_dump(),
            dtype="float32",
            temperature=1.0,
            total_steps=total_steps,
            seed=0,
            learner=learner.model_dump(),
        ),
    )
