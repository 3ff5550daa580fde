"""Where step metrics go: ``<run_dir>/metrics.jsonl`` (always) and wandb (online, offline or off);
each evaluation's per-problem outcomes go to ``<run_dir>/evals.jsonl`` (the report's bootstrap).

The same namespaced names go to both (docs/design.md §6). On resume the JSONL is cut back to the
checkpoint's step, so the steps a killed run lost are not counted twice.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

from orchestrator import console


def wandb_mode(configured: str) -> str:
    """``WANDB_MODE`` wins; ``auto`` is online with an API key, offline without one."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if configured != "auto":
        return configured
    has_key = bool(os.environ.get("WANDB_API_KEY")) or "api.wandb.ai" in _netrc_text()
    return "online" if has_key else "offline"


def _netrc_text() -> str:
    try:
        return (Path.home() / ".netrc").read_text()
    except OSError:
        return ""


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep only the records with ``step <= last_step`` (atomic rewrite)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    temp = path.with_suffix(".tmp")
    temp.write_text("".join(line + "\n" for line in kept))
    os.replace(temp, path)


class MetricsSink:
    def __init__(
        self,
        run_dir: Path,
        *,
        wandb_config,
        run_config: dict,
        name: str,
        resume_id: str | None = None,
        resume_step: int | None = None,
    ) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.evals_path = run_dir / "evals.jsonl"
        for path in (self.path, self.evals_path):
            if resume_step is None:
                path.unlink(missing_ok=True)
            else:
                truncate_jsonl(path, resume_step)
        self.run = None
        mode = wandb_mode(wandb_config.mode)
        if mode != "disabled":
            import wandb

            self.run = wandb.init(
                project=wandb_config.project,
                group=wandb_config.group,
                tags=list(wandb_config.tags),
                name=name,
                id=resume_id,
                resume="allow" if resume_id else None,
                mode=mode,
                dir=str(run_dir),
                config=run_config,
                # an interleaved compare holds both arms' runs open in one process: by default
                # wandb would hand the second arm the first's run and log both into it
                reinit="create_new",
                # its banner lines (run id, sync hints) only with --verbose; warnings always
                settings=wandb.Settings(quiet=not console.VERBOSE),
            )

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else self.run.id

    def log(self, step: int, metrics: dict[str, float]) -> None:
        record = {"step": step, **{k: _plain(v) for k, v in sorted(metrics.items())}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_eval(self, step: int, train_elapsed_s: float, correct: list[bool]) -> None:
        """One evaluation's outcomes as a 0/1 string in the eval set's order (compact: one char each)."""
        record = {"step": step, "train_elapsed_s": train_elapsed_s, "correct": "".join("01"[c] for c in correct)}
        with open(self.evals_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _plain(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None  # JSON has no NaN; null = not defined this step


class PhaseTimes:
    """``with times("generate"): ...`` accumulates seconds per phase into ``time/<phase>``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started

    def get(self, phase: str) -> float:
        return self.seconds.get(phase, 0.0)

    def add(self, seconds: dict[str, float]) -> None:
        """Phases timed elsewhere (a batch generated ahead, in another thread)."""
        for phase, s in seconds.items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + s

    def metrics(self) -> dict[str, float]:
        return {f"time/{phase}": s for phase, s in self.seconds.items()}


def sample_metrics(samples: list, generate_s: float) -> dict[str, float]:
    """``response/*`` and the generation throughput of a step's finished samples."""
    lengths = [len(s.response_ids) for s in samples]
    return {
        "response/prompt_len_mean": sum(len(s.prompt_ids) for s in samples) / max(1, len(samples)),
        "response/len_mean": sum(lengths) / max(1, len(lengths)),
        "response/len_max": float(max(lengths, default=0)),
        "response/clip_rate": sum(s.finish_reason == "length" for s in samples) / max(1, len(samples)),
        "throughput/gen_tokens_per_s": sum(lengths) / max(generate_s, 1e-9),
    }
