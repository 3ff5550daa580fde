"""GPU weight sync: learner rank 0 broadcasts the weights over NCCL to every vLLM worker.

The CPU path sends the state dict through Ray's object store (``EngineFleet.update_weights``);
on GPUs that would copy gigabytes through host memory every step, so instead:

1. ``NcclWeightSync.__init__``: learner rank 0 (rank 0 of a new group) and every worker of
   every engine (ranks 1..) join a ``StatelessProcessGroup`` + ``PyNcclCommunicator``,
   separate from the learner's own torch.distributed world and from vLLM's TP group.
2. ``push``: rank 0 packs the weights into buckets of ``bucket_mb`` (one flat tensor per
   bucket and dtype) and broadcasts them; each vLLM worker unpacks a bucket and hands its
   tensors to ``model_runner.reload_weights`` (vLLM fuses qkv / gate-up itself) before
   the next bucket arrives, so peak extra memory is one bucket.
3. The engines' ``policy_version`` is bumped and their prefix caches reset.

An engine that died and was restarted by Ray is not in the group any more: it is caught up
through the object store once, and the group is then rebuilt for everyone.

Both halves live here because both need vLLM's pynccl; the engine half is a vLLM
``worker_extension_cls`` (``rollout.engine`` names it when a GPU is present).
"""

from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def plan_buckets(metadata: list[tuple[str, str, list[int]]], bucket_bytes: int) -> list[list[int]]:
    """Indices of ``(name, dtype, shape)`` entries grouped into buckets of one dtype and at most
    ``bucket_bytes`` (a tensor larger than that is a bucket of its own). Pure: unit-tested."""
    buckets: list[list[int]] = []
    current: list[int] = []
    size, dtype = 0, None
    for i, (_, dtype_name, shape) in enumerate(metadata):
        nbytes = _numel(shape) * _DTYPES[dtype_name].itemsize
        if current and (dtype_name != dtype or size + nbytes > bucket_bytes):
            buckets.append(current)
            current, size = [], 0
        current.append(i)
        size += nbytes
        dtype = dtype_name
    if current:
        buckets.append(current)
    return buckets


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _communicator(host: str, port: int, rank: int, world_size: int, device):
    from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator
    from vllm.distributed.utils import StatelessProcessGroup

    group = StatelessProcessGroup.create(host=host, port=port, rank=rank, world_size=world_size)
    return PyNcclCommunicator(group, device=device)


class WeightReceiverExtension:
    """Mixed into every vLLM GPU worker (``worker_extension_cls``); called via ``collective_rpc``."""

    def init_weight_group(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        rank = rank_offset + self.rank  # this worker's TP rank inside its engine
        self._weight_comm = _communicator(host, port, rank, world_size, self.device)

    def receive_weights(self, metadata: list[tuple[str, str, list[int]]], bucket_bytes: int) -> None:
        for bucket in plan_buckets(metadata, bucket_bytes):
            entries = [metadata[i] for i in bucket]
            flat = torch.empty(sum(_numel(s) for _, _, s in entries), dtype=_DTYPES[entries[0][1]],
                               device=self.device)
            self._weight_comm.broadcast(flat, src=0, stream=torch.cuda.current_stream())
            torch.cuda.current_stream().synchronize()
            tensors, offset = [], 0
            for name, _, shape in entries:
                n = _numel(shape)
                tensors.append((name, flat[offset:offset + n].view(shape)))
                offset += n
            self.model_runner.reload_weights(weights_iterator=tensors)


def send_weights(communicator, state_dict: dict[str, torch.Tensor], bucket_bytes: int) -> None:
    """Learner rank 0's half of ``receive_weights``: same metadata order, same buckets."""
    items = list(state_dict.items())
    metadata = weight_metadata(state_dict)
    for bucket in plan_buckets(metadata, bucket_bytes):
        flat = torch.cat([items[i][1].detach().reshape(-1) for i in bucket]).contiguous()
        communicator.broadcast(flat, src=0, stream=torch.cuda.current_stream())
    torch.cuda.current_stream().synchronize()


def weight_metadata(state_dict: dict[str, torch.Tensor]) -> list[tuple[str, str, list[int]]]:
    return [(name, str(t.dtype).removeprefix("torch."), list(t.shape)) for name, t in state_dict.items()]


class NcclWeightSync:
    """Driver-side coordinator: builds the group, then ``push()`` once per optimizer step."""

    def __init__(self, fleet, learner, *, bucket_mb: int = 512) -> None:
        self.fleet, self.learner = fleet, learner
        self.bucket_bytes = bucket_mb * 2**20
        self._build_group()

    def _build_group(self) -> None:
        import ray

        workers_per_engine = self.fleet.tensor_parallel_size
        world_size = 1 + len(self.fleet.engines) * workers_per_engine
        host, port = ray.get(self.learner.workers[0].address.remote())
        calls = [self.learner.workers[0].init_weight_sender.remote(host, port, world_size)]
        for i, engine in enumerate(self.fleet.engines):
            calls.append(engine.collective_rpc.remote(
                "init_weight_group", dict(host=host, port=port, rank_offset=1 + i * workers_per_engine,
                                          world_size=world_size)))
        ray.get(calls)
        self._restarts_seen = self.fleet.restarts

    def push(self) -> int:
        import ray

        if self.fleet.restarts != self._restarts_seen:  # a restarted engine left the group
            self._build_group()
        metadata = ray.get(self.learner.workers[0].weight_metadata.remote())
        calls = [w.broadcast_weights.remote(self.bucket_bytes) for w in self.learner.workers]
        calls += [e.collective_rpc.remote("receive_weights", dict(metadata=metadata, bucket_bytes=self.bucket_bytes))
                  for e in self.fleet.engines]
        ray.get(calls)
        return self.fleet.mark_synced()
