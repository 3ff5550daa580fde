"""Whether this process is the driver of a submitted Ray job (``ray job submit``), and where
that job's working directory came from. No ``ray`` import: the command line asks before
anything starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Set by Ray's job supervisor for the entrypoint it runs (ray._private.runtime_env.constants).
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def job_working_dir() -> str | None:
    """The ``working_dir`` of the Ray job this process runs in (a ``gcs://`` package URI once
    uploaded), or None outside a job or for a job without one."""
    raw = os.environ.get(JOB_CONFIG_ENV)
    if not raw:
        return None
    try:
        runtime_env = json.loads(raw).get("runtime_env") or {}
    except (ValueError, AttributeError):  # not ours to judge: Ray reads it too
        return None
    return runtime_env.get("working_dir") if isinstance(runtime_env, dict) else None


def job_run_dir_problem(run_dir: str) -> str | None:
    """Why ``trainer.run_dir`` would be lost in this Ray job, or None. A job with a working
    directory runs in Ray's unpacked copy of it, which Ray deletes when it no longer needs it:
    a relative run_dir (the presets' ``runs/...``) would put checkpoints, metrics and the final
    model there, and learner ranks on other nodes would write theirs into their own copies."""
    if job_working_dir() is None or Path(run_dir).is_absolute():
        return None
    return (
        f"trainer.run_dir={run_dir} is relative: in a Ray job with a working directory it would land in "
        f"Ray's temporary copy of it ({Path.cwd()}) and be lost; give an absolute path on storage every node "
        f"sees, e.g. trainer.run_dir=/shared/runs/{Path(run_dir).name}"
    )
