"""What the terminal shows: one progress bar per phase and the warnings that matter.

Everything the Ray workers print -- vLLM's engine configs, DeepSpeed's start-up, the per-sync
weight-loading lines -- goes to ``<run_dir>/worker.log`` instead; ``--verbose`` shows it in the
terminal too. A worker line still reaches the terminal when it is an error, a traceback, or a
warning from this project's own loggers (reward timeouts, engine restarts): those are the
lines a researcher must see.

The routing replaces the handler Ray's driver uses to print forwarded worker output (Ray
2.60's ``global_worker_stdstream_dispatcher``); if that internal hook is missing, Ray's own
printing stays in place and everything reaches the terminal as before.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from pathlib import Path

PROJECT_LOGGERS = ("orchestrator", "rollout", "learner", "rewards")
WORKER_LOG_FORMAT = "bppo %(levelname)s [%(name)s] %(message)s"
# errors from any library, tracebacks, and this project's warnings (WORKER_LOG_FORMAT)
_SOURCE = r"^(\([^)]*\)\s*)*"  # vLLM's subprocess prefix, e.g. "(EngineCore pid=12) "
_MATTERS = re.compile(
    _SOURCE
    + r"(ERROR|CRITICAL)\b|Traceback \(most recent call last\)|"
    + _SOURCE
    + r"[\w.]*(Error|Exception):|"
    + _SOURCE
    + r"bppo (WARNING|ERROR|CRITICAL) "
)


def setup_worker_logging() -> None:
    """In a Ray actor: the project's loggers print with a recognisable prefix (the driver's
    router keeps those lines on the terminal)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(WORKER_LOG_FORMAT))
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(getattr(h, "_bppo", False) for h in logger.handlers):
            handler._bppo = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def matters(line: str) -> bool:
    return bool(_MATTERS.search(line.strip()))


class WorkerLogRouter:
    """Receives each batch of forwarded worker output (Ray's dispatcher calls it from its log
    thread): writes every line to the current run's log file, and to the terminal when verbose
    or when the line matters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.file = None
        self.verbose = False
        self.terminal = sys.stderr

    def open(self, path: Path, *, verbose: bool) -> None:
        with self.lock:
            self._close()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (lives across calls)
            self.verbose = verbose

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def __call__(self, data: dict) -> None:
        who = data.get("actor_name") or data.get("task_name") or "worker"
        prefix = f"({who} pid={data.get('pid')}) "
        with self.lock:
            for line in data.get("lines", []):
                if self.file is not None:
                    self.file.write(prefix + line + "\n")
                if self.verbose or self.file is None or matters(line):
                    print(prefix + line, file=self.terminal, flush=True)


ROUTER = WorkerLogRouter()
VERBOSE = False  # set by the CLI's --verbose


def set_verbose(verbose: bool) -> None:
    global VERBOSE
    VERBOSE = verbose


def install_router() -> bool:
    """Route the driver's forwarded worker output through ROUTER (after ``ray.init``)."""
    try:
        from ray._private.worker import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False
    if not hasattr(dispatcher, "add_handler") or not hasattr(dispatcher, "remove_handler"):
        return False
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", ROUTER)
    return True


def worker_log(path: Path) -> None:
    """Send worker output to ``path`` from now on (the driver only: inside a Ray task, such as a
    sweep trial, the output is forwarded to the sweep's driver, which routes it)."""
    import ray

    if ray.is_initialized() and ray.get_runtime_context().worker.mode != ray.SCRIPT_MODE:
        return
    ROUTER.open(Path(path), verbose=VERBOSE)


class TrainingProgress:
    """The training phase's bar: bounded by the time budget when there is one (seconds of
    training out of the budget, ETA from it), else by steps; the postfix carries the step,
    reward, sampled accuracy, last eval accuracy and step time. Steps that went wrong are
    written above the bar."""

    def __init__(
        self,
        name: str,
        *,
        steps: int,
        budget_s: float | None,
        step: int,
        train_elapsed: float,
        parity_warn_above: float | None = None,
    ) -> None:
        from tqdm import tqdm

        self.budget_s, self.parity_warn_above, self.eval_accuracy = budget_s, parity_warn_above, None
        if budget_s is None:
            self.bar = tqdm(total=steps, initial=step, desc=name, unit="step", file=sys.stderr, dynamic_ncols=True)
        else:
            self.bar = tqdm(
                total=budget_s,
                initial=min(train_elapsed, budget_s),
                desc=name,
                unit="s",
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of training "
                "[{elapsed}<{remaining}{postfix}]",
            )

    def update(self, step: int, metrics: dict[str, float]) -> None:
        for warning in step_warnings(step, metrics, self.parity_warn_above):
            self.bar.write(warning, file=sys.stderr)
        if metrics.get("eval/accuracy") is not None:
            self.eval_accuracy = metrics["eval/accuracy"]
        postfix = {
            "step": step,
            "reward": f"{metrics.get('reward/mean', float('nan')):.3f}",
            "acc": f"{metrics.get('reward/accuracy', float('nan')):.3f}",
        }
        if self.eval_accuracy is not None:
            postfix["eval"] = f"{self.eval_accuracy:.3f}"
        postfix["step_s"] = f"{metrics['time/step']:.2f}"
        self.bar.set_postfix(postfix, refresh=False)
        if self.budget_s is None:
            self.bar.update(1)
        else:
            self.bar.update(min(metrics["time/step"], self.budget_s - self.bar.n))

    def close(self) -> None:
        self.bar.close()


def step_warnings(step: int, metrics: dict[str, float], parity_warn_above: float | None) -> list[str]:
    """The step's problems a researcher must see while it runs (they are in metrics.jsonl too)."""
    warnings = []
    if metrics.get("learner/skipped_nonfinite"):
        warnings.append(f"warning: step {step}: non-finite loss or gradient, the update was skipped")
    if metrics.get("learner/skipped_empty"):
        warnings.append(f"warning: step {step}: no group carried a learning signal, nothing was trained")
    drift = metrics.get("sync/logprob_max_diff")
    if parity_warn_above is not None and drift is not None and drift > parity_warn_above:
        warnings.append(
            f"warning: step {step}: learner and engine log-probs differ by up to {drift:.3g} "
            f"(> trainer.parity_warn_above = {parity_warn_above:g}): check the weight sync and sampling"
        )
    return warnings  # engine restarts and reward timeouts are logged where they happen
