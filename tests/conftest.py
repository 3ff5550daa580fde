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
