"""How new weights reach the engines after each optimizer step (docs/design.md §4): one route on CPU and GPU.

Learner rank 0 and every worker of every engine form one group of vLLM's weight-transfer API
(``weight_sync.transfer``: NCCL on GPU, gloo on CPU); ``push`` runs one full, bucketed
update from rank 0 (every learner rank joins: ZeRO-3 gathers each parameter) and then stamps
the new ``policy_version`` on every engine, which every sample then carries.

The same route serves resume (``push(version=...)`` after loading a checkpoint) and engines
that Ray restarted: such an engine left the group and came back with the weights it was
created from, so the group is rebuilt with every engine and the newest weights are pushed
again (``catch_up``). A transfer that fails because an engine died mid-broadcast fails within
``timeout_s``; the engine is then waited for and caught up the same way.
"""

from __future__ import annotations

import logging

import ray

from weight_sync.client import EngineTransferClient

logger = logging.getLogger(__name__)


class WeightSync:
    def __init__(self, fleet, learner, *, on_gpu: bool, bucket_mb: int, timeout_s: float) -> None:
        self.fleet, self.learner, self.timeout_s = fleet, learner, timeout_s
        self.backend = "nccl" if on_gpu else "gloo"
        self.bucket_bytes = bucket_mb * 2**20
        self._connect()
        fleet.on_restart = self.catch_up

    def push(self, *, version: int | None = None) -> int:
        """Send the learner's weights to every engine; bump the policy version (or set it, when
        restoring a checkpoint). Returns the new version."""
        try:
            self._send()
        except Exception as error:  # noqa: BLE001 - an engine may have died mid-transfer
            # revive() waits for restarted engines and runs catch_up: the group is rebuilt and
            # the weights sent again. Nothing restarted: the failure is not an engine's.
            if not self.fleet.revive():
                raise
            logger.warning("weight sync failed because a rollout engine died (%s); it was caught up", error)
        return self.fleet.set_version(self.fleet.policy_version + 1 if version is None else version)

    def catch_up(self) -> None:
        """After Ray restarted an engine: a new group with every engine, the newest weights again."""
        self._connect()
        self._send()
        self.fleet.set_version(self.fleet.policy_version)

    def close(self) -> None:
        self._wait(self.learner.close_weight_transfer(), "closing the weight-transfer group")

    def _connect(self) -> None:
        host, port = self.learner.transfer_address()
        engines = self.fleet.engines
        self._wait(
            self.learner.open_weight_transfer(
                dict(
                    backend=self.backend,
                    master_address=host,
                    master_port=port,
                    world_size=1 + len(engines) * self.fleet.tensor_parallel_size,
                    bucket_bytes=self.bucket_bytes,
                    timeout_s=self.timeout_s,
                ),
                EngineTransferClient(engines, self.fleet.tensor_parallel_size, self.timeout_s),
            ),
            "the learner and the rollout engines forming the weight-transfer group",
        )

    def _send(self) -> None:
        self._wait(self.learner.send_weights(), "the learner sending its weights to the rollout engines")

    def _wait(self, calls: list, what: str) -> None:
        # The learner's own waits are bounded by timeout_s; this bound covers a learner that hangs
        # where nothing can time out (an NCCL broadcast to a dead peer, on GPU).
        try:
            ray.get(calls, timeout=2 * self.timeout_s + 30)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(
                f"weight sync: {what} did not finish within {2 * self.timeout_s + 30:g} s (rollout.sync_timeout_s)"
            ) from None
