"""One builder of the actor stack a job runs on: reward workers, rollout engines, learner ranks and
the weight route between them. ``bppo train`` (``orchestrator.loop``) and the warm start
(``models.warm_start``) both start theirs here, so a change to how an actor is placed or
configured reaches both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from orchestrator.config import Config


@dataclass
class ActorStack:
    rewards: object  # rewards.pool.RewardPool
    fleet: object  # rollout.fleet.EngineFleet
    learner: object  # learner.world.LearnerWorld
    weight_sync: object  # weight_sync.driver.WeightSync
    on_gpu: bool

    def close(self) -> None:
        """Stop every actor; each part is stopped even when an earlier one fails to."""
        _close_all([self.weight_sync.close, self.fleet.shutdown, self.learner.shutdown, self.rewards.shutdown])


def start_actor_stack(config: Config, model_path: str, *, total_steps: int, max_len: int) -> ActorStack:
    """Start the stack on the Ray cluster this process is connected to.

    ``total_steps``: optimizer steps the learning-rate schedule spans; ``max_len``: the longest
    response the learner packs. Everything else comes from ``config``. What was started before a
    part fails to start is stopped again, so a failed start leaves no actor behind.
    """
    import ray

    from learner.world import LearnerWorld
    from orchestrator.placement import cpu_core_split, plan_placement
    from rewards.pool import RewardPool
    from rollout.fleet import EngineFleet
    from weight_sync.driver import WeightSync

    placement = plan_placement(config, ray.cluster_resources())
    rollout, learner, timeout_s = config.rollout, config.learner, config.ray.placement_timeout_s
    engine_cores = rank_cores = None
    if config.trainer.mode == "async" and not placement.on_gpu:  # engines and learner run at once
        engine_cores, rank_cores = cpu_core_split(
            sorted(os.sched_getaffinity(0)), rollout.num_engines, learner.world_size
        )
    started: list = []
    try:
        rewards = RewardPool(config.reward, num_cpus_per_worker=placement.reward_worker_cpus, start_timeout_s=timeout_s)
        started.append(rewards.shutdown)
        fleet = EngineFleet(
            num_engines=rollout.num_engines,
            resources_per_engine=placement.engine,
            start_timeout_s=timeout_s,
            engine_kwargs=dict(
                model_path=model_path,
                dtype=config.model.dtype,
                max_model_len=rollout.max_model_len,
                tensor_parallel_size=rollout.tensor_parallel_size,
                gpu_memory_utilization=rollout.gpu_memory_utilization,
                enforce_eager=rollout.enforce_eager,
                cpu_kv_cache_gib=rollout.cpu_kv_cache_gib,
                trust_remote_code=config.model.trust_remote_code,
                seed=config.trainer.seed,
                engine_core_process=rollout.engine_core_process,
            ),
            per_engine_kwargs=None if engine_cores is None else [{"cpu_cores": c} for c in engine_cores],
        )
        started.append(fleet.shutdown)
        learner_world = LearnerWorld(
            world_size=learner.world_size,
            micro_batch_tokens=learner.micro_batch_tokens,
            mini_batch_size=learner.mini_batch_size,
            epochs=learner.epochs,
            resources_per_rank=placement.learner_rank,
            max_len=max_len,
            placement_timeout_s=timeout_s,
            worker_kwargs=dict(
                model_path=model_path,
                learner=learner.model_dump(),
                algo=config.algo.model_dump(),
                dtype=config.model.dtype,
                temperature=rollout.temperature,
                top_p=rollout.top_p,
                total_steps=total_steps,
                seed=config.trainer.seed,
                trust_remote_code=config.model.trust_remote_code,
            ),
            per_rank_kwargs=None if rank_cores is None else [{"cpu_cores": c} for c in rank_cores],
        )
        started.append(learner_world.shutdown)
        weight_sync = WeightSync(
            fleet,
            learner_world,
            on_gpu=placement.on_gpu,
            bucket_mb=rollout.sync_bucket_mb,
            timeout_s=rollout.sync_timeout_s,
        )
    except BaseException:
        _close_all(reversed(started), raise_first=False)  # the start's own error is the one to see
        raise
    return ActorStack(rewards, fleet, learner_world, weight_sync, placement.on_gpu)


def _close_all(closers, *, raise_first: bool = True) -> None:
    errors = []
    for close in closers:
        try:
            close()
        except Exception as error:  # noqa: BLE001 - stop the rest, then report the first
            errors.append(error)
    if errors and raise_first:
        raise errors[0]
