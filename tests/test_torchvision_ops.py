"""models/torchvision_ops.py: torchvision's Python side imports on the CPU torch (its compiled
ops, a CUDA build, cannot load), and its ops fail loudly if anything calls them."""

import subprocess
import sys

import pytest
import torch

from models.torchvision_ops import SCHEMAS, define_missing_schemas


def test_every_operator_torchvision_registers_fakes_for_has_a_schema():
    import torchvision  # noqa: F401  (through the venv's import hook)
    from torchvision.transforms.v2 import functional as tv_functional

    names = [schema.split("(", 1)[0] for schema in SCHEMAS]
    assert {"nms", "roi_align", "deform_conv2d", "_deform_conv2d_backward"} <= set(names)
    assert all(torch._C._jit_get_schemas_for_operator(f"torchvision::{n}") for n in names)
    assert define_missing_schemas() == []  # a second call defines nothing (no duplicate schema)
    # the transforms are plain torch: halving a 4x4 ramp samples each 2x2 block at its centre
    ramp = torch.arange(16, dtype=torch.float32).view(1, 4, 4)
    halved = tv_functional.resize(ramp, [2, 2], antialias=False)  # bilinear at the 2x2 centres
    assert halved.shape == (1, 2, 2) and halved[0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4)
    # the ops themselves have no kernel here: a call fails, it never returns a wrong answer
    with pytest.raises(RuntimeError):
        torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5)


@pytest.mark.slow  # a child process: the .pth that setup_venv.sh writes acts at interpreter start-up
def test_a_fresh_interpreter_imports_torchvision_and_transformers_qwen2_vl_processors(tmp_path):
    code = (
        "import torchvision, transformers\n"
        "from transformers import Qwen2VLVideoProcessor\n"
        "from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor\n"
        "print('ok', torchvision.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok 0.28")
