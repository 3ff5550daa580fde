"""The learner's weights as a vLLM ``WeightSource``: what the weight-transfer engines send.

Every learner rank iterates the source in the same order: under ZeRO-3 each parameter is
partitioned over the ranks, so materialising it is a collective (``GatheredParameters``), and
the metadata must give the FULL shapes (``ds_shape``), not the empty local partitions. Only the
sending rank (0) keeps a copy of each gathered tensor; the others only join the gathers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource


class DeepSpeedWeightSource(WeightSource):
    def __init__(self, module: torch.nn.Module, *, zero3: bool, keep: bool) -> None:
        self.module, self.zero3, self.keep = module, zero3, keep

    def metadata(self) -> list[ParamMeta]:
        return [
            ParamMeta(name, p.dtype, tuple(p.ds_shape if self.zero3 else p.shape))
            for name, p in self.module.named_parameters()
        ]

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        import deepspeed

        for name, param in self.module.named_parameters():
            with deepspeed.zero.GatheredParameters([param], enabled=self.zero3):
                # The gathered buffer is released when the context exits (at the next
                # parameter), so the sender copies it; without ZeRO-3 the parameter is whole.
                tensor = param.detach().clone() if self.zero3 and self.keep else param.detach()
            yield name, tensor
