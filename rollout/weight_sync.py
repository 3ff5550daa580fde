"""How new weights reach the engines after each optimizer step (DESIGN §4).

``object_store`` (CPU, or any cluster): learner rank 0's state dict is put in Ray's object
store once and every engine reloads it in place. ``nccl`` (GPU): a broadcast from learner
rank 0 straight into the vLLM workers (``rollout.nccl_sync``). ``auto`` picks nccl when
the cluster has GPUs. Both bump ``policy_version``, which every sample then carries.
"""

from __future__ import annotations


class ObjectStoreSync:
    def __init__(self, fleet, learner) -> None:
        self.fleet, self.learner = fleet, learner

    def push(self) -> int:
        return self.fleet.update_weights(self.learner.export_weights())


def make_weight_sync(mode: str, on_gpu: bool, fleet, learner, *, bucket_mb: int):
    if mode == "nccl" or (mode == "auto" and on_gpu):
        if not on_gpu:
            raise ValueError("rollout.weight_sync=nccl needs GPUs; use object_store (or auto) on CPU")
        from rollout.nccl_sync import NcclWeightSync

        return NcclWeightSync(fleet, learner, bucket_mb=bucket_mb)
    return ObjectStoreSync(fleet, learner)
