import multiprocessing.process
import os
import subprocess
import sys

import pytest

from tests.e2e_runs import e2e_runs  # noqa: F401 - a session fixture several modules read

# Local test clusters need no auth token, and wandb never goes online from a test.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("WANDB_MODE", "offline")

# The fast tier (`make test-unit`, -m "not slow") must answer in about a minute: a test that starts
# Ray, vLLM, DeepSpeed or any child process belongs to the slow tier. The guard below holds every
# test to that, so a slow test cannot slip into the fast tier unmarked.
HEAVY_FIXTURES = {"ray_local"}
# vLLM is only imported where an engine is built. (DeepSpeed is not listed: transformers imports its
# accelerator module on save_pretrained; its engines run in Ray actors, which the guard catches.)
HEAVY_MODULES = ("vllm",)


@pytest.fixture(autouse=True)
def _tier_guard(request, monkeypatch):
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    test = request.node.nodeid
    heavy = HEAVY_FIXTURES & set(request.fixturenames)
    if heavy:
        pytest.fail(f"{test} uses {', '.join(sorted(heavy))}: mark it @pytest.mark.slow", pytrace=False)

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{test} starts a child process: mark it @pytest.mark.slow (tests/conftest.py)")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    loaded = set(sys.modules)
    yield
    imported = sorted({name.split(".")[0] for name in set(sys.modules) - loaded} & set(HEAVY_MODULES))
    if imported:
        pytest.fail(f"{test} imports {', '.join(imported)}: mark it @pytest.mark.slow", pytrace=False)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster started (and shut down) by the tests themselves."""
    from orchestrator.config import RayConfig
    from orchestrator.ray_cluster import ray_cluster

    with ray_cluster(RayConfig(num_cpus=2)):
        yield


TEST_TINY = dict(num_layers=2, tokenizer_problems=300)
"""A 2-layer tiny model: the real architecture, built in seconds."""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """The tiny Qwen2 model + tokenizer, built by the project's own builder in a temp dir."""
    from models.tiny import ensure_tiny_model
    from orchestrator.config import TinyModelConfig

    return str(ensure_tiny_model(TinyModelConfig(**TEST_TINY), root=tmp_path_factory.mktemp("models")))
