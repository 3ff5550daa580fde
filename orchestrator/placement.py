"""Which Ray resources each actor asks for, from the config and what the cluster has.

GPU cluster: each engine actor holds ``tensor_parallel_size`` GPUs (vLLM starts its TP workers
as processes inside it, on one node), each learner rank one GPU (the frozen reference shares
it), reward workers CPUs. CPU cluster: every actor gets a fraction of the CPUs; the phases of a
step run one after another, so each busy actor can use every core (engines and learner ranks
set their own thread counts). A config that cannot fit fails here, before anything starts, in
one line.

Several nodes: ``rollout.resources`` / ``learner.resources`` add Ray custom resources to each
engine / learner rank, which pins them to the nodes started with those resources. CPU shares
are planned so that the whole run fits on one average node (the cluster's CPUs over its nodes),
so actors pinned to one node type always fit there. ``ray.share`` is the part of the cluster
this run plans into (``bppo sweep`` gives each of its concurrent trials 1/max_concurrent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_PLANNED = ("CPU", "GPU", "memory", "object_store_memory")  # not for rollout/learner.resources


class PlacementError(ValueError):
    """The config asks for more than the cluster has."""


@dataclass(frozen=True)
class Placement:
    on_gpu: bool
    engine: dict  # Ray resources of one rollout engine actor (CPU, GPU, custom)
    learner_rank: dict  # of one learner rank (its bundle and its actor)
    reward_worker_cpus: float


def plan_placement(config, cluster: dict) -> Placement:
    """``cluster``: ``ray.cluster_resources()`` (totals; its ``node:<ip>`` keys count the nodes)."""
    gpus, cpus = cluster.get("GPU", 0), cluster.get("CPU", 0)
    rollout, world, share = config.rollout, config.learner.world_size, config.ray.share
    _check_custom(rollout.num_engines, rollout.resources, world, config.learner.resources, cluster)
    if gpus > 0:
        wanted = rollout.num_engines * rollout.tensor_parallel_size + world
        if wanted > gpus * share:
            has = (
                f"the Ray cluster has {gpus:g}"
                if share == 1
                else (
                    f"ray.share={share:g} of the Ray cluster's {gpus:g} is {gpus * share:g} "
                    "(runs sharing a cluster at once, e.g. sweep trials, each need their own GPUs)"
                )
            )
            raise PlacementError(
                f"rollout.num_engines={rollout.num_engines} x rollout.tensor_parallel_size="
                f"{rollout.tensor_parallel_size} + learner.world_size={world} = {wanted} GPUs, but {has}"
            )
        return Placement(
            True,
            {"CPU": 1, "GPU": rollout.tensor_parallel_size, **rollout.resources},
            {"CPU": 1, "GPU": 1, **config.learner.resources},
            1.0,
        )
    if world > cpus:
        raise PlacementError(f"learner.world_size={world} needs {world} CPUs on a CPU-only cluster, which has {cpus:g}")
    actors = rollout.num_engines + world + config.reward.num_workers
    node_cpus = cpus / _node_count(cluster)
    each = math.floor(min(1.0, node_cpus * share / actors) * 1000) / 1000  # rounded down, so all of them fit
    return Placement(False, {"CPU": each, **rollout.resources}, {"CPU": each, **config.learner.resources}, each)


def _node_count(cluster: dict) -> int:
    """Nodes in the cluster: each has a ``node:<ip>`` resource of 1 (nodes sharing an address add up)."""
    count = sum(v for k, v in cluster.items() if k.startswith("node:") and k != "node:__internal_head__")
    return max(1, round(count))


def _check_custom(engines: int, engine_resources: dict, ranks: int, rank_resources: dict, cluster: dict) -> None:
    """Custom resources: not the planned ones, positive, present in the cluster in the amount asked."""
    demand: dict[str, float] = {}
    for section, count, resources in (("rollout", engines, engine_resources), ("learner", ranks, rank_resources)):
        for name, amount in resources.items():
            if name in _PLANNED or name.startswith("node:"):
                raise PlacementError(
                    f"{section}.resources: {name!r} is planned by placement; name custom "
                    f"resources only (e.g. {{{section}_node: 0.1}})"
                )
            if amount <= 0:
                raise PlacementError(f"{section}.resources: {name}={amount:g} must be > 0")
            demand[name] = demand.get(name, 0.0) + count * amount
    for name, wanted in demand.items():
        if wanted > cluster.get(name, 0) + 1e-9:
            raise PlacementError(
                f"the run's engines and learner ranks ask for {wanted:g} of the custom resource {name!r}, but the "
                f"Ray cluster has {cluster.get(name, 0):g} (start nodes with `ray start --resources='{{\"{name}\": 1}}'`)"
            )


def cpu_core_split(cores: list[int], engines: int, ranks: int) -> tuple[list[list[int]], list[list[int]]]:
    """Disjoint cores for the engines and the learner ranks of a CPU run whose phases overlap
    (trainer.mode async): the first half of ``cores`` (at least one) for the engines, the rest
    for the ranks, each half dealt out in contiguous runs, one run per actor (more actors than
    cores: they share, one core each). OpenMP threads that share a core with another process's
    spin against it (the learner's step went from 0.70 s to 40.9 s beside a generating engine):
    disjoint cores are what makes the overlap real on a CPU."""
    if len(cores) < 2:
        raise PlacementError(
            f"trainer.mode async on CPU runs the engines and the learner at once on disjoint cores: it needs "
            f"at least 2 cores, this node gives the run {len(cores)}"
        )
    half = max(1, len(cores) // 2)
    return _deal(cores[:half], engines), _deal(cores[half:], ranks)


def _deal(cores: list[int], actors: int) -> list[list[int]]:
    if actors > len(cores):
        return [[cores[i % len(cores)]] for i in range(actors)]
    per = len(cores) // actors
    runs = [cores[i * per : (i + 1) * per] for i in range(actors)]
    runs[-1] += cores[actors * per :]  # the remainder to the last
    return runs
