"""Where a run's model comes from: ``model.path`` as given (a local directory or a hub name);
``tiny``, the project's own small Qwen2 (``models.tiny``), or ``tiny-vl``, its small Qwen2-VL
(``models.tiny_vl``); or a packaged pretrained model
(``models.packaged``). The last two are warm-started once by SFT unless
``model.warm_start.enabled`` is false (``models.warm_start``), and cached by a hash of everything
that shapes them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from models.cache import BUILT, cache_root
from models.packaged import ensure_packaged_model, is_packaged
from models.tiny import ensure_tiny_model
from models.tiny_vl import ensure_tiny_vl_model
from models.warm_start import bootstrap, warm_start_key
from orchestrator.config import Config


def warm_model_dir(config: Config, base: str | None = None) -> Path:
    """Where the warm start of ``config``'s model lives. ``base``: a packaged model's converted
    directory, whose name carries its file's hash (resolved here when not given)."""
    key = warm_start_key(config)
    if config.model.path not in BUILT:
        key["base_dir"] = Path(base or ensure_packaged_model(config.model.path)).name
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    name = config.model.path
    return cache_root() / f"{name}-warm-{digest}"


def base_model_path(config: Config, *, log=print) -> str:
    """``model.path`` before any warm start: the built tiny model, a packaged model's converted
    checkpoint, or the path or hub name as given."""
    if config.model.path == "tiny":
        return str(ensure_tiny_model(config.model.tiny))
    if config.model.path == "tiny-vl":
        return str(ensure_tiny_vl_model(config.model.tiny_vl))
    if is_packaged(config.model.path):
        return str(ensure_packaged_model(config.model.path, log=log))
    return config.model.path


def resolve_model_path(config: Config, *, log=print) -> str:
    """The policy ``config`` trains: for 'tiny' and packaged models, the warm-started checkpoint
    (built once, unless ``model.warm_start.enabled`` is false); otherwise the path or hub name."""
    base = base_model_path(config, log=log)
    warm_startable = config.model.path in BUILT or is_packaged(config.model.path)
    if not (warm_startable and config.model.warm_start.enabled):
        return base
    target = warm_model_dir(config, base)
    if not (target / "bootstrap.json").exists():
        from orchestrator import console
        from orchestrator.ray_cluster import ray_cluster

        with ray_cluster(config.ray):
            if console.ROUTER.file is None:  # `bppo bootstrap` alone: beside the cached model, before
                # the heavy imports below (Ray's autoscaler reports a few seconds after start-up)
                console.worker_log(target.parent / f"{target.name}.worker.log")
            bootstrap(config, target, base, log=log)
    return str(target)
