"""Where a run's model comes from: ``model.path`` as given (a local directory or a hub name), or
``tiny``, the project's own small Qwen2 (``models.tiny``), warm-started once by SFT
(``models.warm_start``) and cached by a hash of everything that shapes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from models.cache import cache_root
from models.packaged import ensure_packaged_model, is_packaged
from models.tiny import ensure_tiny_model
from models.warm_start import bootstrap, warm_start_key
from orchestrator.config import Config


def warm_model_dir(config: Config) -> Path:
    digest = hashlib.sha256(json.dumps(warm_start_key(config), sort_keys=True).encode()).hexdigest()[:12]
    return cache_root() / f"tiny-warm-{digest}"


def resolve_model_path(config: Config, *, log=print) -> str:
    """``model.path``: a packaged model's converted checkpoint (``models.packaged``); for 'tiny',
    the (built and, unless disabled, warm-started) tiny model; otherwise the path or hub name."""
    if is_packaged(config.model.path):
        return str(ensure_packaged_model(config.model.path, log=log))
    if config.model.path != "tiny":
        return config.model.path
    if not config.model.warm_start.enabled:
        return str(ensure_tiny_model(config.model.tiny))
    target = warm_model_dir(config)
    if not (target / "bootstrap.json").exists():
        from orchestrator import console
        from orchestrator.ray_cluster import ray_cluster

        with ray_cluster(config.ray):
            if console.ROUTER.file is None:  # `bppo bootstrap` alone: beside the cached model, before
                # the heavy imports below (Ray's autoscaler reports a few seconds after start-up)
                console.worker_log(target.parent / f"{target.name}.worker.log")
            bootstrap(config, target, log=log)
    return str(target)
