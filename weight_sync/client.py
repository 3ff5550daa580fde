"""The learner's handle on every rollout engine for vLLM's weight-transfer API.

vLLM's trainer-side engines (``NCCLTrainerWeightTransferEngine``, ours for gloo) drive the
inference side through a client with four methods (``VLLMWeightSyncClient``). This one fans
each call out to every engine actor and waits at most ``timeout_s``. vLLM's trainer engines
assume ONE inference deployment whose workers sit at ranks 1..; with several engines, engine
``i``'s workers are shifted by ``i * workers_per_engine`` so every worker has its own rank.
"""

from __future__ import annotations

from typing import Any

import ray


class EngineTransferClient:
    def __init__(self, engines: list, workers_per_engine: int, timeout_s: float) -> None:
        self.engines, self.workers_per_engine, self.timeout_s = list(engines), workers_per_engine, timeout_s

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        # A rebuilt group replaces the old communicators; an update a failed transfer left open
        # (an engine died after start_weight_update) would make vLLM refuse to release them.
        self._all("abort_weight_update")
        self._all("shutdown_weight_transfer_engine")
        self._wait(
            "init_weight_transfer_engine",
            [
                engine.weight_transfer.remote(
                    "init_weight_transfer_engine",
                    {"init_info": dict(init_info, rank_offset=init_info["rank_offset"] + i * self.workers_per_engine)},
                    self.timeout_s,
                )
                for i, engine in enumerate(self.engines)
            ],
        )

    def start_weight_update(self) -> None:
        self._all("start_weight_update")

    def update_weights(self, update_info: dict[str, Any] | list[dict[str, Any]]) -> None:
        self._all("update_weights", {"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self._all("finish_weight_update")

    def shutdown_weight_transfer_engine(self) -> None:
        self._all("shutdown_weight_transfer_engine")

    def _all(self, method: str, kwargs: dict | None = None) -> None:
        self._wait(method, [engine.weight_transfer.remote(method, kwargs, self.timeout_s) for engine in self.engines])

    def _wait(self, method: str, calls: list) -> None:
        try:
            ray.get(calls, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            done, _ = ray.wait(calls, num_returns=len(calls), timeout=0)
            late = [i for i, call in enumerate(calls) if call not in done]
            raise TimeoutError(
                f"weight transfer: rollout engine(s) {late} did not finish {method} within "
                f"{self.timeout_s:g} s (rollout.sync_timeout_s)"
            ) from None
