"""The model cache: where built and converted models live, and how one is written into it.

Every entry is a directory named by a hash of what shapes it (a config, a file's digest). It is
built in a temporary directory beside its place and renamed into place once complete, so a crash
leaves nothing half-written under the entry's name, and two processes building the same entry at
once both end with a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

BUILT = ("tiny", "tiny-vl")
"""``model.path`` names of the models the project builds from a config (and warm-starts); the
others are converted from an installed package or given as a path or hub name."""


def cache_root() -> Path:
    """``$BPPO_CACHE_DIR``, else ``~/.cache/bppo``."""
    return Path(os.environ.get("BPPO_CACHE_DIR", Path.home() / ".cache" / "bppo"))


def build_atomically(target: Path, build: Callable[[Path], None], *, complete: str) -> Path:
    """Run ``build(staging)`` and move the result to ``target``. ``complete`` names the file that
    only a finished entry has: an entry another process finished meanwhile is kept (ours is
    dropped, being the same), an incomplete leftover is replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(staging)
        if (target / complete).exists():
            shutil.rmtree(staging, ignore_errors=True)
            return target
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def built_from_config(name: str, config, build: Callable[[Path, object], None], *, root: Path | None = None) -> Path:
    """The cache entry ``<name>-<hash of config>`` (a pydantic model), built by ``build(staging,
    config)`` the first time it is asked for; ``config.json`` marks a finished model."""
    digest = hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]
    target = (root or cache_root()) / f"{name}-{digest}"
    if (target / "config.json").exists():
        return target
    return build_atomically(target, lambda staging: build(staging, config), complete="config.json")
