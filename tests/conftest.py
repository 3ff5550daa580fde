import os

import pytest

# Local test clusters need no auth token, and wandb never goes online from a test.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("WANDB_MODE", "offline")


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
