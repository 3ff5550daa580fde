"""A pool of Ray reward workers: score a batch in parallel, in order, never raising on model output."""

from __future__ import annotations

import importlib
import logging
import traceback
from collections.abc import Callable

import ray
from ray.util import ActorPool

from rewards.config import RewardConfig
from rewards.sandbox import warm_up
from rewards.verify import RewardResult, reward_metrics, score, score_with_function

logger = logging.getLogger(__name__)

ScoreFn = Callable[..., RewardResult]


def resolve_reward_function(path: str | None) -> ScoreFn:
    """``'package.module:function'`` -> the function; None -> the built-in ``score``."""
    if path is None:
        return score
    module_name, _, attr = path.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"reward.function={path!r} cannot be imported: {error}") from error
    if not callable(function):
        raise ValueError(f"reward.function={path!r} is not callable")
    return function


@ray.remote(max_restarts=3, max_task_retries=3)
class RewardWorker:
    """Scores chunks of (completion, ground truth) pairs; checks, and a custom reward
    function, run in its child processes under ``reward.timeout_s``."""

    def __init__(self, config: dict) -> None:
        self.config = RewardConfig(**config)
        resolve_reward_function(self.config.function)  # fail here, not on every sample
        self._reported_error = False
        warm_up()  # the checkers' imports happen before the pool is ready, not in a check

    def ready(self) -> bool:
        return True

    def score_chunk(self, items: list[tuple[str, str]]) -> list[RewardResult]:
        return [self._score_one(completion, truth) for completion, truth in items]

    def _score_one(self, completion: str, ground_truth: str) -> RewardResult:
        try:
            if self.config.function is None:
                result = score(completion, ground_truth, timeout_s=self.config.timeout_s, config=self.config)
            else:
                result = score_with_function(
                    self.config.function, completion, ground_truth, timeout_s=self.config.timeout_s, config=self.config
                )
        except Exception as error:  # noqa: BLE001 - a bug here must not kill the batch
            logger.error("reward scoring raised; scoring as parse_error:\n%s", traceback.format_exc())
            return RewardResult(False, 0.0, False, None, "parse_error", f"{type(error).__name__}: {error}")
        if result.reason in ("parse_error", "timeout") and self.config.function and not self._reported_error:
            # once per worker: loud, but not a log flood
            logger.error("reward function %s failed (%s): %s", self.config.function, result.reason, result.detail)
            self._reported_error = True
        return result


class RewardPool:
    """``num_workers`` reward actors on the current Ray cluster."""

    def __init__(
        self,
        config: RewardConfig,
        *,
        num_cpus_per_worker: float = 0.5,
        chunk_size: int = 32,
        start_timeout_s: float = 600.0,
    ) -> None:
        # Resolve once on the driver so a bad import path fails at start-up, not in a worker.
        resolve_reward_function(config.function)
        self.config = config
        self.chunk_size = chunk_size
        worker = RewardWorker.options(num_cpus=num_cpus_per_worker)
        self.workers = [worker.remote(config.model_dump()) for _ in range(config.num_workers)]
        try:  # an actor Ray cannot place waits in its queue forever: fail here instead
            ray.get([w.ready.remote() for w in self.workers], timeout=start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise TimeoutError(
                f"{config.num_workers} reward worker(s) of {num_cpus_per_worker:g} CPU did not start "
                f"within {start_timeout_s:g} s (ray.placement_timeout_s); free in the cluster: "
                f"{ray.available_resources()}"
            ) from None
        self._pool = ActorPool(self.workers)

    def score(self, completions: list[str], ground_truths: list[str]) -> tuple[list[RewardResult], dict[str, float]]:
        """Results in input order, and the batch's ``reward/*`` metrics."""
        if len(completions) != len(ground_truths):
            raise ValueError(f"{len(completions)} completions for {len(ground_truths)} ground truths")
        items = list(zip(completions, ground_truths))
        # Small chunks balance the load: one slow (timing-out) item does not hold up a
        # whole worker's share of the batch.
        chunks = [items[i : i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
        results = [r for chunk in self._pool.map(lambda w, c: w.score_chunk.remote(c), chunks) for r in chunk]
        return results, reward_metrics(results)

    def shutdown(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
