"""The rollout engines on Ray: split prompts between them, survive an engine dying, sync weights.

Each engine is a Ray actor with ``max_restarts``: when one dies, Ray starts it again from
the model it was created with, so before retrying a call the fleet puts the newest
weights back onto it (``_catch_up``). A restarted engine never samples with stale weights.
"""

from __future__ import annotations

import logging
import time

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from rollout.early_stop import EarlyStop
from rollout.engine import RolloutEngine
from rollout.types import Sample, SamplingSettings

logger = logging.getLogger(__name__)

ENGINE_FAILURES = (RayActorError, ActorDiedError, ActorUnavailableError)


class EngineFleet:
    def __init__(self, *, num_engines: int, engine_kwargs: dict, resources_per_engine: dict,
                 max_restarts: int = 3, max_retries: int = 3, restart_timeout_s: float = 600.0) -> None:
        actor = ray.remote(RolloutEngine).options(
            num_cpus=resources_per_engine.get("CPU", 0),
            num_gpus=resources_per_engine.get("GPU", 0),
            max_restarts=max_restarts,
            max_concurrency=1,
        )
        self.engines = [actor.remote(**engine_kwargs) for _ in range(num_engines)]
        self.tensor_parallel_size = engine_kwargs.get("tensor_parallel_size", 1)
        # Where a restarted engine gets the newest weights when no object-store copy is kept
        # (NCCL sync): set by the owner, e.g. ``LearnerGroup.export_weights``.
        self.weights_provider = None
        self.max_retries = max_retries
        self.restart_timeout_s = restart_timeout_s
        self.policy_version = 0
        self._weights: ray.ObjectRef | None = None  # newest weights, for restarted engines
        self.restarts = 0
        ray.get([e.version.remote() for e in self.engines])  # wait until every engine is up

    def generate(self, prompts: list[list[int]], sampling: SamplingSettings,
                 early_stop: EarlyStop | None = None) -> list[Sample]:
        """Samples for every prompt, grouped by prompt in input order; prompts are split into
        one contiguous slice per engine (per-prompt seeds make the result independent of the
        split). ``early_stop``: see ``RolloutEngine.generate``."""
        bounds = _slices(len(prompts), len(self.engines))
        results = self._call_all(
            lambda engine, i: engine.generate.remote(
                prompts[bounds[i][0]: bounds[i][1]], sampling, first_index=bounds[i][0],
                early_stop=None if early_stop is None else early_stop.slice(*bounds[i]),
            ),
            skip=lambda i: bounds[i][0] == bounds[i][1],
        )
        return [sample for part in results for sample in part]

    def score(self, sequences: list[list[int]], engine_index: int = 0) -> list[list[float]]:
        """Per-token log-probs of whole sequences under one engine's current weights."""
        return ray.get(self.engines[engine_index].score.remote(sequences))

    def update_weights(self, weights: ray.ObjectRef, *, version: int | None = None) -> int:
        """Push the learner's weights (an object-store reference) to every engine and bump the
        policy version (or set it, when restoring a checkpoint)."""
        self.policy_version = self.policy_version + 1 if version is None else version
        self._weights = weights
        self._call_all(lambda engine, _: engine.update_weights.remote(self.policy_version, weights))
        return self.policy_version

    def mark_synced(self) -> int:
        """After a transfer that bypassed the object store (NCCL): bump and stamp the version."""
        self.policy_version += 1
        self._weights = None
        self._call_all(lambda engine, _: engine.set_version.remote(self.policy_version))
        return self.policy_version

    def versions(self) -> list[int]:
        return ray.get([e.version.remote() for e in self.engines])

    def _call_all(self, call, skip=lambda i: False) -> list:
        results: list = [[] for _ in self.engines]
        pending = {i: call(e, i) for i, e in enumerate(self.engines) if not skip(i)}
        for attempt in range(self.max_retries + 1):
            failed = []
            for i, ref in pending.items():
                try:
                    results[i] = ray.get(ref)
                except ENGINE_FAILURES as error:
                    if attempt == self.max_retries:
                        raise RuntimeError(f"rollout engine {i} failed {attempt + 1} times: {error}") from error
                    logger.warning("rollout engine %d died (%s); retrying on its restarted actor", i, error)
                    failed.append(i)
            if not failed:
                return results
            self.restarts += len(failed)
            for i in failed:
                self._catch_up(i)
            pending = {i: call(self.engines[i], i) for i in failed}
        raise AssertionError("unreachable")

    def _catch_up(self, index: int) -> None:
        """Wait for a restarted engine and give it the newest weights (it came back with the
        model it was created from)."""
        engine, deadline = self.engines[index], time.monotonic() + self.restart_timeout_s
        while True:
            try:
                version = ray.get(engine.version.remote())
                break
            except ENGINE_FAILURES as error:  # still restarting (loading the model)
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"rollout engine {index} did not come back within {self.restart_timeout_s:g} s: {error}"
                    ) from error
                time.sleep(1.0)
        if version != self.policy_version:
            weights = self._weights if self._weights is not None else (
                self.weights_provider() if self.weights_provider is not None else None)
            if weights is not None:
                ray.get(engine.update_weights.remote(self.policy_version, weights))

    def shutdown(self) -> None:
        for engine in self.engines:
            ray.kill(engine, no_restart=True)


def _slices(count: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous [start, end) slices of ``range(count)``, sizes differing by at most 1."""
    base, extra = divmod(count, parts)
    bounds, start = [], 0
    for i in range(parts):
        end = start + base + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds
