"""The learner world on Ray: ``world_size`` ``LearnerWorker`` actors in one placement group.

The orchestrator hands it whole ``TrainBatch``es; it splits them over ranks and
micro-batches (``learner.packing``), runs every rank at once and puts the answers back
in row order.
"""

from __future__ import annotations

import ray
import torch
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from learner.batch import TrainBatch
from learner.mini_batches import optimizer_steps, plan_mini_batches
from learner.packing import plan_micro_batches
from learner.worker import LearnerWorker


class LearnerWorld:
    def __init__(
        self,
        *,
        world_size: int,
        micro_batch_tokens: int,
        resources_per_rank: dict,
        worker_kwargs: dict,
        max_len: int,
        placement_timeout_s: float = 300.0,
        mini_batch_size: int | None = None,
        epochs: int = 1,
        per_rank_kwargs: list[dict] | None = None,
    ) -> None:
        self.world_size = world_size
        self.mini_batch_size, self.epochs = mini_batch_size, epochs
        self.zero_stage = worker_kwargs["learner"]["zero_stage"]
        self.padding_free = worker_kwargs["learner"]["padding_free"]  # micro-batches cost real tokens
        self.micro_batch_tokens = micro_batch_tokens
        self.max_len = max_len
        self.placement = placement_group([dict(resources_per_rank) for _ in range(world_size)], strategy="PACK")
        try:
            ray.get(self.placement.ready(), timeout=placement_timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.util.remove_placement_group(self.placement)
            raise RuntimeError(
                f"the learner's {world_size} x {resources_per_rank} could not be placed within "
                f"{placement_timeout_s:g} s; the cluster has {ray.available_resources()} free"
            ) from None
        actor = ray.remote(LearnerWorker)
        self.workers = [
            actor.options(
                num_cpus=resources_per_rank.get("CPU", 0),
                num_gpus=resources_per_rank.get("GPU", 0),
                # The bundle's custom resources (learner.resources) too: the actor asks for its whole bundle.
                resources={k: v for k, v in resources_per_rank.items() if k not in ("CPU", "GPU")},
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=rank),
            ).remote(rank=rank, world_size=world_size, **worker_kwargs, **(per_rank_kwargs or [{}] * world_size)[rank])
            for rank in range(world_size)
        ]
        master_addr, master_port = ray.get(self.workers[0].address.remote())
        ray.get([w.setup.remote(master_addr, master_port) for w in self.workers])

    def _split(self, batch: TrainBatch) -> list[list[list[int]]]:
        lengths = batch.attention_mask.sum(dim=-1).tolist()
        return plan_micro_batches(lengths, self.world_size, self.micro_batch_tokens, padding_free=self.padding_free)

    def logprobs(self, batch: TrainBatch, which: str = "policy") -> torch.Tensor:
        """``[B, T]`` log-probs of ``batch`` under the policy or the reference."""
        plan = self._split(batch)
        calls = [
            w.logprobs.remote([batch.select(rows) for rows in micro], which) for w, micro in zip(self.workers, plan)
        ]
        out = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
        for micro, results in zip(plan, ray.get(calls)):
            for rows, values in zip(micro, results):
                for i, row in enumerate(rows):
                    out[row, : values.shape[1]] = values[i]
        return out

    def optimizer_steps(self, batch: TrainBatch) -> int:
        """Optimizer steps ``train`` makes on ``batch`` (mini-batches x epochs)."""
        return optimizer_steps(len(set(batch.group_index.tolist())), self.mini_batch_size, self.epochs)

    def train(self, batch: TrainBatch, objective: str = "policy") -> dict[str, float]:
        """The optimizer steps of one rollout batch: ``mini_batch_size`` prompt groups per step,
        ``epochs`` passes (``learner.mini_batches``). Each step's loss normalisers are its own
        totals. ``batch.old_logprobs`` None = the behaviour policy is the current one (allowed for
        a single step only: the ratio is then exactly 1 and its gradient the policy gradient).
        ``objective="sft"``: next-token NLL on ``loss_mask``, for the warm start.

        Metrics: loss and grad-norm metrics are means over the steps, ``learner/lr`` the last
        step's, ``learner/skipped_nonfinite`` the number of steps skipped.
        """
        steps = plan_mini_batches(batch.group_index.tolist(), self.mini_batch_size, self.epochs)
        old_from_current = batch.old_logprobs is None and objective == "policy"
        if old_from_current and len(steps) > 1:
            raise ValueError(f"{len(steps)} optimizer steps on one batch need its old log-probs computed first")
        per_step = [self._optimizer_step(batch.select(rows), objective, old_from_current) for rows in steps]
        metrics = {
            name: max(m[name] for m in per_step)
            if name.endswith("_max")
            else sum(m[name] for m in per_step) / len(per_step)
            for name in per_step[0]
        }
        metrics["learner/lr"] = per_step[-1]["learner/lr"]
        metrics["learner/skipped_nonfinite"] = sum(m["learner/skipped_nonfinite"] for m in per_step)
        metrics["learner/micro_batches"] = sum(m["learner/micro_batches"] for m in per_step)
        metrics["learner/optimizer_steps"] = float(len(per_step))
        return metrics

    def _optimizer_step(self, batch: TrainBatch, objective: str, old_from_current: bool) -> dict[str, float]:
        """One optimizer step on all of ``batch`` over every rank."""
        norms = dict(
            global_tokens=float(batch.loss_mask.sum()),
            global_seqs=float((batch.loss_mask.sum(dim=-1) > 0).sum()),
            max_len=self.max_len,
        )
        plan = self._split(batch)
        calls = [
            w.train.remote([batch.select(rows) for rows in micro], norms, objective, old_from_current)
            for w, micro in zip(self.workers, plan)
        ]
        metrics = ray.get(calls)[0]
        metrics["learner/micro_batches"] = float(len(plan[0]))
        return metrics

    def export_weights(self) -> ray.ObjectRef:
        """An object-store reference to rank 0's full weights (every rank joins a ZeRO-3 gather)."""
        gathered = self.workers if self.zero_stage == 3 else self.workers[:1]
        refs = [w.export_weights.remote(rank == 0) for rank, w in enumerate(gathered)]
        ray.get(refs[1:])
        return refs[0]

    # ---- weight sync (weight_sync.driver waits on these, with its timeout) -------------

    def transfer_address(self) -> tuple[str, int]:
        """Host and a free port on rank 0's node, where the weight-transfer group meets."""
        return ray.get(self.workers[0].address.remote())

    def open_weight_transfer(self, init: dict, client) -> list[ray.ObjectRef]:
        return [w.open_weight_transfer.remote(init, client) for w in self.workers]

    def send_weights(self) -> list[ray.ObjectRef]:
        return [w.send_weights.remote() for w in self.workers]

    def close_weight_transfer(self) -> list[ray.ObjectRef]:
        return [w.close_weight_transfer.remote() for w in self.workers]

    def save_checkpoint(self, directory: str, client_state: dict) -> None:
        ray.get([w.save_checkpoint.remote(directory, client_state) for w in self.workers])

    def load_checkpoint(self, directory: str) -> dict:
        return ray.get([w.load_checkpoint.remote(directory) for w in self.workers])[0]

    def save_pretrained(self, directory: str) -> None:
        ray.get([w.save_pretrained.remote(directory) for w in self.workers])

    def shutdown(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
        ray.util.remove_placement_group(self.placement)
