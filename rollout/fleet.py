"""The rollout engines on Ray: split prompts between them, survive an engine dying, sync weights.

Each engine is a Ray actor with ``max_restarts``: when one dies, Ray starts it again from
the model it was created with, so before retrying a call the fleet waits for it and calls
``on_restart`` (``weight_sync.driver.WeightSync.catch_up``: a rebuilt transfer group and the
newest weights). A restarted engine never samples with stale weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from rollout.early_stop import EarlyStop
from rollout.engine import RolloutEngine, StaleEngineError
from rollout.types import Sample, SamplingSettings

logger = logging.getLogger(__name__)

ENGINE_FAILURES = (RayActorError, ActorDiedError, ActorUnavailableError)


class EngineFleet:
    def __init__(
        self,
        *,
        num_engines: int,
        engine_kwargs: dict,
        resources_per_engine: dict,
        max_restarts: int = 3,
        max_retries: int = 3,
        start_timeout_s: float = 600.0,
        per_engine_kwargs: list[dict] | None = None,
    ) -> None:
        actor = ray.remote(RolloutEngine).options(
            num_cpus=resources_per_engine.get("CPU", 0),
            num_gpus=resources_per_engine.get("GPU", 0),
            # Custom resources (rollout.resources) pin the engines to the nodes that have them.
            resources={k: v for k, v in resources_per_engine.items() if k not in ("CPU", "GPU")},
            max_restarts=max_restarts,
            max_concurrency=1,
        )
        # per_engine_kwargs: what differs between engines (their CPU cores in async mode)
        own = per_engine_kwargs or [{} for _ in range(num_engines)]
        self.engines = [actor.remote(**engine_kwargs, **own[i]) for i in range(num_engines)]
        self.tensor_parallel_size = engine_kwargs.get("tensor_parallel_size", 1)
        # Called once restarted engines are back (before the failed call is retried): the
        # owner puts the newest weights on them (WeightSync.catch_up).
        self.on_restart: Callable[[], None] | None = None
        self.max_retries = max_retries
        self.start_timeout_s = start_timeout_s
        self.policy_version = 0
        self.restarts = 0
        self._identities = self._wait_started(range(num_engines), what=f"{resources_per_engine} each")

    def generate(
        self,
        prompts: list[list[int]],
        sampling: SamplingSettings,
        early_stop: EarlyStop | None = None,
        images: list | None = None,
    ) -> list[Sample]:
        """Samples for every prompt, grouped by prompt in input order; prompts are split into
        one contiguous slice per engine (per-prompt seeds make the result independent of the
        split). ``early_stop`` and ``images`` (one list of PIL images per prompt): see
        ``RolloutEngine.generate``."""
        bounds = _slices(len(prompts), len(self.engines))
        results = self._call_all(
            lambda engine, i: engine.generate.remote(
                prompts[bounds[i][0] : bounds[i][1]],
                sampling,
                first_index=bounds[i][0],
                early_stop=None if early_stop is None else early_stop.slice(*bounds[i]),
                expected_version=self.policy_version,
                images=None if images is None else images[bounds[i][0] : bounds[i][1]],
            ),
            skip=lambda i: bounds[i][0] == bounds[i][1],
        )
        return [sample for part in results for sample in part]

    def set_version(self, version: int) -> int:
        """Stamp the policy version on every engine (after a completed weight transfer)."""
        self.policy_version = version
        self._call_all(lambda engine, _: engine.set_version.remote(version))
        return version

    def _call_all(self, call, skip=lambda i: False) -> list:
        results: list = [[] for _ in self.engines]
        pending = {i: call(e, i) for i, e in enumerate(self.engines) if not skip(i)}
        for attempt in range(self.max_retries + 1):
            failed = []
            for i, ref in pending.items():
                try:
                    results[i] = ray.get(ref)
                except (*ENGINE_FAILURES, StaleEngineError) as error:
                    # StaleEngineError: Ray restarted the engine between two calls (it died idle),
                    # so this call reached its fresh incarnation, which holds the initial weights.
                    if attempt == self.max_retries:
                        raise RuntimeError(f"rollout engine {i} failed {attempt + 1} times: {error}") from error
                    logger.warning("rollout engine %d was restarted (%s); catching it up and retrying", i, error)
                    failed.append(i)
            if not failed:
                return results
            self._restored(failed)
            pending = {i: call(self.engines[i], i) for i in failed}
        raise AssertionError("unreachable")

    def revive(self) -> bool:
        """Wait for every engine Ray has restarted since the last check; True if there was one
        (``on_restart`` has then run). For a caller whose own call failed without naming an engine
        (a weight transfer that a dying engine broke)."""
        current = self._wait_started(range(len(self.engines)), what="a health check")
        restarted = [i for i, identity in current.items() if identity != self._identities[i]]
        if restarted:
            self._restored(restarted)
        return bool(restarted)

    def _restored(self, indices: list[int]) -> None:
        self.restarts += len(indices)
        fresh = self._wait_started(indices, what="a restart")
        self._identities.update(fresh)
        if self.on_restart is not None:
            self.on_restart()

    def _wait_started(self, indices, *, what: str) -> dict[int, str]:
        """Engine index -> identity, once each engine answers (its model is loaded); a clear error
        after ``start_timeout_s`` (an actor that cannot be placed waits in Ray's queue forever)."""
        deadline, identities = time.monotonic() + self.start_timeout_s, {}
        for i in indices:
            while True:
                try:
                    identities[i] = ray.get(
                        self.engines[i].identity.remote(), timeout=max(0.0, deadline - time.monotonic())
                    )
                    break
                except ENGINE_FAILURES as error:  # still restarting
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"rollout engine {i} did not come back within {self.start_timeout_s:g} s: {error}"
                        ) from error
                    time.sleep(1.0)
                except ray.exceptions.GetTimeoutError:
                    raise TimeoutError(
                        f"rollout engine {i} ({what}) did not start within {self.start_timeout_s:g} s "
                        f"(ray.placement_timeout_s); free in the cluster: {ray.available_resources()}"
                    ) from None
        return identities

    def shutdown(self, timeout_s: float = 30.0) -> None:
        closing = [engine.close.remote(timeout_s) for engine in self.engines]
        ray.wait(closing, num_returns=len(closing), timeout=timeout_s + 5)  # best effort: then kill
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
