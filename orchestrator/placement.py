"""Which Ray resources each actor asks for, from the config and what the cluster has.

GPU cluster: each engine actor holds ``tensor_parallel_size`` GPUs (vLLM starts its TP workers
as processes inside it, on one node), each learner rank one GPU (the frozen reference shares
it), reward workers CPUs. CPU box: every actor gets a fraction of the
CPUs; the phases of a step run one after another, so each busy actor can use every core.
A config that cannot fit fails here, before anything starts, in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class PlacementError(ValueError):
    """The config asks for more than the cluster has."""


@dataclass(frozen=True)
class Placement:
    on_gpu: bool
    engine: dict  # Ray resources of one rollout engine actor
    learner_rank: dict  # of one learner rank
    reward_worker_cpus: float


def plan_placement(config, cluster: dict) -> Placement:
    gpus, cpus = cluster.get("GPU", 0), cluster.get("CPU", 0)
    rollout, world = config.rollout, config.learner.world_size
    if gpus > 0:
        wanted = rollout.num_engines * rollout.tensor_parallel_size + world
        if wanted > gpus:
            raise PlacementError(
                f"rollout.num_engines={rollout.num_engines} x rollout.tensor_parallel_size="
                f"{rollout.tensor_parallel_size} + learner.world_size={world} = {wanted} GPUs, "
                f"but the Ray cluster has {gpus:g}"
            )
        return Placement(True, {"CPU": 1, "GPU": rollout.tensor_parallel_size}, {"CPU": 1, "GPU": 1}, 1.0)
    if world > cpus:
        raise PlacementError(
            f"learner.world_size={world} needs {world} CPUs on a CPU-only cluster, which has {cpus:g}"
        )
    actors = rollout.num_engines + world + config.reward.num_workers
    share = math.floor(min(1.0, cpus / actors) * 1000) / 1000  # rounded down, so all of them fit
    return Placement(False, {"CPU": share}, {"CPU": share}, share)
