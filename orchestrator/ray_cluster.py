"""Connect to the Ray cluster the config names, or start a local one (and stop only that)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from orchestrator import console
from orchestrator.config import RayConfig


@contextmanager
def ray_cluster(config: RayConfig) -> Iterator[None]:
    """``ray.init`` for the duration of the block.

    Address precedence: ``ray.address`` in the config, then ``RAY_ADDRESS``; with neither,
    a local cluster with ``ray.num_cpus`` CPUs is started here and shut down afterwards
    (``ray stop`` would kill every Ray process of the user, including other runs').
    An already-initialised Ray (e.g. inside a Ray job) is used as is and left running.
    Worker output is routed by ``console`` (to the run's worker.log; errors to the terminal).
    """
    if ray.is_initialized():
        yield
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    common = dict(
        log_to_driver=True,
        logging_level=logging.INFO if console.VERBOSE else logging.WARNING,
        runtime_env={"worker_process_setup_hook": "orchestrator.console.setup_worker_logging"},
    )
    if address:
        ray.init(address=address, **common)
    else:
        # Ray starts its workers at niceness 15, so any ordinary process on the machine takes
        # their cores: a one-core neighbour starved one of a 2-thread learner's OpenMP threads
        # and every parallel region waited for it (GRPO's update 9x slower, BPPO's 14x:
        # benchmarks/compare_under_load.py). Our workers are the run; they compete as equals.
        os.environ.setdefault("RAY_worker_niceness", "0")
        # address="local": a new cluster even when another one runs on this machine (ray.init
        # would otherwise join the most recently started one).
        ray.init(address="local", num_cpus=config.num_cpus, include_dashboard=False, **common)
    console.install_router()
    try:
        yield
    finally:
        ray.shutdown()
