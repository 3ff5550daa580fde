"""torchvision's Python side on the CPU build of torch.

Why: vLLM's Qwen2-VL processing instantiates transformers' ``Qwen2VLProcessor``, whose video
processor imports ``torchvision.transforms.v2``. The only torchvision the package registries
offer for torch 2.13 is a CUDA build: its compiled ops (``_C.so``, which needs ``libc10_cuda.so``)
cannot load on ``torch 2.13.0+cpu``, torchvision then imports ``_meta_registrations``, which
registers fake kernels for ``torchvision::nms`` and its siblings, and the import fails with
``operator torchvision::nms does not exist``. Nothing on our path calls those ops (nms, RoI
align/pool, deformable convolution: detection layers); the transforms are plain torch.

What: when torchvision's compiled library did not define its operators, this defines their
schemas (no kernels) just before ``torchvision._meta_registrations`` is imported, so the import
succeeds and the transforms work. Calling one of the ops still fails, with torch's own error
naming the operator and the missing CPU kernel. Where torchvision's library loaded (a CUDA torch,
or a torchvision built for this torch) the operators exist and nothing is defined.

How it is active: ``scripts/setup_venv.sh`` (CPU flavour) writes ``bppo_torchvision_ops.pth`` into
the virtualenv's site-packages, whose one line calls ``install()`` at interpreter start-up: every
process of a run imports torchvision (the driver, Ray's workers, vLLM's engine-core processes),
and ``install()`` only adds an import hook (torch is not imported until torchvision is).
"""

from __future__ import annotations

import importlib.abc
import sys

# The operator schemas of torchvision 0.28's csrc/ops (TORCH_LIBRARY_FRAGMENT(torchvision, m)).
SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, bool aligned) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, float rois_scale, "
    "int rois_zero_point, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, "
    "bool aligned) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, "
    "int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, SymInt channels, "
    "SymInt height, SymInt width) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
    "-> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, "
    "SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) "
    "-> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, "
    "SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, "
    "SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, "
    "SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, "
    "SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, "
    "SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, "
    "SymInt groups, SymInt offset_groups, bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
    "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
)

_library = None  # the torch.library.Library that holds the schemas: it must outlive the import


def define_missing_schemas() -> list[str]:
    """Define the torchvision operators its compiled library did not; returns their names."""
    global _library
    import torch

    defined = []
    for schema in SCHEMAS:
        name = schema.split("(", 1)[0]
        if torch._C._jit_get_schemas_for_operator(f"torchvision::{name}"):
            continue  # torchvision's own library defined it
        if _library is None:
            _library = torch.library.Library("torchvision", "FRAGMENT")
        _library.define(schema)
        defined.append(name)
    return defined


class _BeforeMetaRegistrations(importlib.abc.MetaPathFinder):
    """Runs ``define_missing_schemas`` when torchvision imports its fake-kernel registrations."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision._meta_registrations":
            define_missing_schemas()
        return None  # the import itself proceeds as usual


def install() -> None:
    if not any(isinstance(finder, _BeforeMetaRegistrations) for finder in sys.meta_path):
        sys.meta_path.insert(0, _BeforeMetaRegistrations())
