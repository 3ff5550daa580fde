"""Learner weights into the vLLM workers through vLLM's RL weight-transfer API, on CPU and GPU.

vLLM 0.32 ships a weight-transfer API (``vllm.distributed.weight_transfer``): each vLLM worker
holds a ``WeightTransferEngine`` chosen by ``weight_transfer_config.backend`` and exposes
``init_weight_transfer_engine`` / ``start_weight_update`` / ``update_weights`` /
``finish_weight_update``; the trainer holds the matching ``TrainerWeightTransferEngine``, which
drives those four calls through a client and broadcasts the weights from trainer rank 0.
vLLM's own dense backend is NCCL (GPU only). This module adds the same thing over gloo, so the
CPU run takes the GPU's route: the learner's code is identical, only the init-info class
differs (``trainer_init_info``), and both sides come from vLLM's factories.

The gloo engines are registered with vLLM's factories when this module is imported. On the
vLLM side that happens in every worker process (the engine-core process included) because
``rollout.engine`` names ``WeightTransferExtension`` as the ``worker_extension_cls``, which vLLM
imports before it loads the model (and creates the transfer engine).

Wire format (gloo): the parameters, in the order of the source's metadata, are cut into
buckets of one dtype and at most ``bucket_bytes`` (``plan_buckets``); each bucket is one flat
tensor broadcast from rank 0, so the receiver's extra memory is one bucket. Every broadcast
waits at most ``timeout_s``: a receiver (or the sender) that died fails the transfer with an
error instead of hanging it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, ClassVar

import torch
from vllm.distributed.weight_transfer.base import (
    ParamMeta,
    TrainerInitInfo,
    TrainerWeightTransferEngine,
    WeightSource,
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)
from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory, WeightTransferTrainerFactory

from rollout.idle_wait import patch_idle_wait

BACKEND = "gloo"


def plan_buckets(sizes_and_dtypes: list[tuple[int, str]], bucket_bytes: int) -> list[list[int]]:
    """Indices of ``(nbytes, dtype)`` entries grouped into consecutive buckets of one dtype and at
    most ``bucket_bytes`` (a tensor larger than that is a bucket of its own). Pure."""
    buckets: list[list[int]] = []
    current: list[int] = []
    size, dtype = 0, None
    for i, (nbytes, dtype_name) in enumerate(sizes_and_dtypes):
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
        n *= int(d)
    return n


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _bucket_plan(
    names: list[str], dtype_names: list[str], shapes: list[list[int]], bucket_bytes: int
) -> list[list[int]]:
    sizes = [(_numel(s) * _dtype(d).itemsize, d) for d, s in zip(dtype_names, shapes)]
    return plan_buckets(sizes, bucket_bytes)


def _broadcast(group, flat: torch.Tensor, timeout_s: float, what: str) -> None:
    """Broadcast ``flat`` from group rank 0, waiting at most ``timeout_s``. A stateless group is
    not registered with torch.distributed, so the ProcessGroup object is called directly."""
    options = torch.distributed.BroadcastOptions()
    options.rootRank, options.rootTensor = 0, 0
    work = group.broadcast([flat], options)
    try:
        work.wait(timedelta(seconds=timeout_s))
    except RuntimeError as error:
        raise TimeoutError(
            f"weight transfer: {what} did not complete within {timeout_s:g} s "
            f"(a peer died or stopped answering): {error}"
        ) from error


def _open_group(host: str, port: int, rank: int, world_size: int, timeout_s: float):
    from vllm.distributed.utils import stateless_init_torch_distributed_process_group

    return stateless_init_torch_distributed_process_group(
        host, port, rank, world_size, backend="gloo", timeout=timedelta(seconds=timeout_s)
    )


def _close_group(group) -> None:
    from vllm.distributed.utils import stateless_destroy_torch_distributed_process_group

    stateless_destroy_torch_distributed_process_group(group)


# ---- the vLLM worker side -------------------------------------------------------------------


@dataclass(kw_only=True)
class GlooWeightTransferInitInfo(WeightTransferInitInfo):
    master_address: str
    master_port: int
    rank_offset: int  # this engine's first worker's rank in the group (the trainer is rank 0)
    world_size: int
    bucket_bytes: int
    timeout_s: float


@dataclass
class GlooWeightTransferUpdateInfo(WeightTransferUpdateInfo):
    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]


class GlooWeightTransferEngine(WeightTransferEngine[GlooWeightTransferInitInfo, GlooWeightTransferUpdateInfo]):
    """Receives bucketed broadcasts over gloo and loads them with vLLM's layerwise reload (the
    same lifecycle as vLLM's NCCL engine: checkpoint-format names, qkv / gate-up fused by the
    model's own ``load_weights``)."""

    init_info_cls = GlooWeightTransferInitInfo
    update_info_cls = GlooWeightTransferUpdateInfo

    def __init__(self, config, vllm_config, device, model) -> None:
        super().__init__(config, vllm_config, device, model)
        self.group = None
        self.bucket_bytes, self.timeout_s = 0, 0.0

    def init_transfer_engine(self, init_info: GlooWeightTransferInitInfo) -> None:
        self.shutdown()  # a rebuilt group replaces the old one
        rank = init_info.rank_offset + self.parallel_config.rank  # this worker's TP rank in its engine
        self.bucket_bytes, self.timeout_s = init_info.bucket_bytes, init_info.timeout_s
        self.group = _open_group(
            init_info.master_address, init_info.master_port, rank, init_info.world_size, init_info.timeout_s
        )

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        finalize_layerwise_reload(self.model, self.model_config)
        refresh_tied_layers(self.model)

    def update_weights(self, update_info: dict[str, Any]) -> None:
        # The base class ends with torch.accelerator.synchronize(), which raises on a CPU-only
        # host; gloo's wait() has already completed every broadcast.
        self.receive_weights(self.parse_update_info(update_info))

    def receive_weights(self, update_info: GlooWeightTransferUpdateInfo) -> None:
        if self.group is None:
            raise RuntimeError("gloo weight transfer: init_weight_transfer_engine was not called")
        names, dtype_names, shapes = update_info.names, update_info.dtype_names, update_info.shapes
        for bucket in _bucket_plan(names, dtype_names, shapes, self.bucket_bytes):
            flat = torch.empty(
                sum(_numel(shapes[i]) for i in bucket), dtype=_dtype(dtype_names[bucket[0]]), device=self.device
            )
            _broadcast(self.group, flat, self.timeout_s, f"receiving {names[bucket[0]]}")
            tensors, offset = [], 0
            for i in bucket:
                n = _numel(shapes[i])
                tensors.append((names[i], flat[offset : offset + n].view(shapes[i])))
                offset += n
            self.model.load_weights(tensors)

    def shutdown(self) -> None:
        if self.group is not None:
            _close_group(self.group)
            self.group = None


# ---- the trainer side -----------------------------------------------------------------------


@dataclass
class GlooTrainerInitInfo(TrainerInitInfo):
    backend: ClassVar[str] = BACKEND

    master_address: str
    master_port: int
    world_size: int  # 1 (the trainer) + every worker of every engine
    bucket_bytes: int
    timeout_s: float


class GlooTrainerWeightTransferEngine(TrainerWeightTransferEngine[GlooTrainerInitInfo]):
    """Trainer half of the gloo backend, shaped like vLLM's ``NCCLTrainerWeightTransferEngine``:
    every trainer rank iterates the source (a collective under ZeRO-3); rank 0 alone opens the
    group, drives the workers through the client and broadcasts."""

    init_info_cls = GlooTrainerInitInfo

    def __init__(self, *, client, source: WeightSource, is_sender: bool, bucket_bytes: int, timeout_s: float) -> None:
        super().__init__(client=client, source=source, is_sender=is_sender)
        self.bucket_bytes, self.timeout_s = bucket_bytes, timeout_s
        self.group = None

    @classmethod
    def trainer_init(cls, init_info: GlooTrainerInitInfo, *, client, source: WeightSource | None = None):
        if source is None:
            raise ValueError("gloo weight transfer needs a WeightSource")
        engine = cls(
            client=client,
            source=source,
            is_sender=init_info.is_sender,
            bucket_bytes=init_info.bucket_bytes,
            timeout_s=init_info.timeout_s,
        )
        if not engine.is_sender:
            return engine
        worker_info = GlooWeightTransferInitInfo(
            master_address=init_info.master_address,
            master_port=init_info.master_port,
            rank_offset=1,
            world_size=init_info.world_size,
            bucket_bytes=init_info.bucket_bytes,
            timeout_s=init_info.timeout_s,
        )
        # The workers block in the rendezvous until rank 0 joins: run both at once.
        with ThreadPoolExecutor(max_workers=1) as pool:
            joined = pool.submit(client.init_weight_transfer_engine, asdict(worker_info))
            engine.group = _open_group(
                init_info.master_address, init_info.master_port, 0, init_info.world_size, init_info.timeout_s
            )
            _result(joined, init_info.timeout_s, "the rollout engines joining the weight-transfer group")
        return engine

    def send_weights(self) -> None:
        meta = self.source.metadata()
        if not self.is_sender:
            for _ in self.source:  # stay in the trainer-side gathers
                pass
            return
        update_info = GlooWeightTransferUpdateInfo(
            names=[m.name for m in meta],
            dtype_names=[str(m.dtype).removeprefix("torch.") for m in meta],
            shapes=[list(m.shape) for m in meta],
        )
        self.client.start_weight_update()
        pool = ThreadPoolExecutor(max_workers=1)
        try:  # the workers receive inside update_weights while rank 0 broadcasts
            received = pool.submit(self.client.update_weights, asdict(update_info))
            pairs = _checked(self.source, meta)
            try:
                self._broadcast(update_info, pairs)
            except Exception:
                for _ in pairs:  # finish the gathers: the other learner ranks iterate in lockstep
                    pass
                raise
            _result(received, self.timeout_s, "the rollout engines loading the broadcast weights")
        finally:
            pool.shutdown(wait=False)  # never join a thread that may be stuck in a dead peer's call
        self.client.finish_weight_update()

    def _broadcast(self, info: GlooWeightTransferUpdateInfo, pairs: Iterator[tuple[str, torch.Tensor]]) -> None:
        for bucket in _bucket_plan(info.names, info.dtype_names, info.shapes, self.bucket_bytes):
            tensors = [next(pairs)[1].detach().reshape(-1) for _ in bucket]
            flat = torch.cat(tensors).to("cpu") if len(tensors) > 1 else tensors[0].to("cpu").contiguous()
            _broadcast(self.group, flat, self.timeout_s, f"sending {info.names[bucket[0]]}")
        for _ in pairs:  # drain: _checked raises if the source yields more or fewer than declared
            pass

    def shutdown(self) -> None:
        if self.group is not None:
            _close_group(self.group)
            self.group = None


def _checked(source: WeightSource, meta: list[ParamMeta]) -> Iterator[tuple[str, torch.Tensor]]:
    """The source's pairs, each checked against the metadata the workers were sent: a mismatch
    would make both sides cut the stream differently (a hang or corrupted weights)."""
    count = 0
    for name, tensor in source:
        if count >= len(meta):
            raise ValueError(f"weight source yielded more parameters than its metadata ({len(meta)}): {name!r}")
        want = meta[count]
        if name != want.name or tensor.dtype != want.dtype or tuple(tensor.shape) != tuple(want.shape):
            raise ValueError(
                f"weight source disagrees with its metadata at {count}: declared {want.name!r} "
                f"{want.dtype} {tuple(want.shape)}, got {name!r} {tensor.dtype} {tuple(tensor.shape)}"
            )
        count += 1
        yield name, tensor
    if count != len(meta):
        raise ValueError(f"weight source yielded {count} parameters, its metadata declared {len(meta)}")


def _result(future, timeout_s: float, what: str):
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        raise TimeoutError(f"weight transfer: {what} did not finish within {timeout_s:g} s") from None


def _register() -> None:
    if BACKEND not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(BACKEND, GlooWeightTransferEngine)
    if BACKEND not in WeightTransferTrainerFactory._registry:
        WeightTransferTrainerFactory.register_engine(BACKEND, GlooTrainerWeightTransferEngine)


_register()
patch_idle_wait()  # this module is imported in every vLLM worker: see rollout.idle_wait


class WeightTransferExtension:
    """vLLM's ``worker_extension_cls``: importing this module in the worker process registers the
    gloo engine before vLLM creates the transfer engine (on GPU too: the class is the same)."""

    def abort_weight_update(self) -> None:
        """Forget an update a failed transfer left open (``start_weight_update`` ran, the rest did
        not): vLLM refuses to release or restart a group while one is open. The caller then
        rebuilds the group and sends every weight again."""
        if getattr(self, "_weight_update_active", False):
            self._weight_update_active = False
            self.weight_transfer_engine.reset_weight_update_target()


def trainer_init_info(
    backend: str,
    *,
    rank: int,
    master_address: str,
    master_port: int,
    world_size: int,
    bucket_bytes: int,
    timeout_s: float,
) -> TrainerInitInfo:
    """The trainer-side init info of a backend: the one line where the GPU (vLLM's NCCL engine,
    packed buckets) and CPU (gloo) routes differ; ``WeightTransferTrainerFactory`` does the rest."""
    if backend == "nccl":
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        return NCCLTrainerInitInfo(
            master_address=master_address,
            master_port=master_port,
            world_size=world_size,
            packed=True,
            packed_buffer_size_bytes=bucket_bytes,
            rank=rank,
        )
    if backend == BACKEND:
        return GlooTrainerInitInfo(
            master_address=master_address,
            master_port=master_port,
            world_size=world_size,
            bucket_bytes=bucket_bytes,
            timeout_s=timeout_s,
            rank=rank,
        )
    raise ValueError(f"weight-transfer backend {backend!r}: expected 'nccl' (GPU) or 'gloo' (CPU)")


def refresh_tied_layers(model: torch.nn.Module) -> list[str]:
    """Re-run the weight processing of embedding-type layers whose weight another layer owns.

    vLLM's layerwise reload processes a tied parameter once, through the layer that loads it
    (its documented limitation: "only processing from embed_tokens will have an effect"). On
    CPU an embedding-type layer's processing builds a GEMM handle from its weight, and a tied
    output layer (``lm_head`` of SmolLM2, Llama-3.2, Qwen2.5-0.5B ...) kept the one built from the
    weights it was created with: after a sync the engine sampled from the old output layer
    (log-prob gap 0.13 after one SmolLM2 step; 2e-5 with this). Returns the refreshed names."""
    from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding

    owner: dict[int, str] = {}
    refreshed = []
    for name, module in model.named_modules():
        weight = module._parameters.get("weight") if hasattr(module, "_parameters") else None
        if weight is None:
            continue
        if id(weight) not in owner:
            owner[id(weight)] = name
            continue
        method = getattr(module, "quant_method", None)
        # embedding-type only: their processing keeps the weight (a linear layer's removes it)
        if isinstance(module, VocabParallelEmbedding) and hasattr(method, "process_weights_after_loading"):
            method.process_weights_after_loading(module)
            refreshed.append(name)
    return refreshed
