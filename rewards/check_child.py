"""The child process that runs answer checks and custom reward functions for ``rewards.sandbox``.

Protocol: one JSON object per line. The child first writes ``{"ready": true}`` (after its
imports and a warm-up check, which the parent does not charge to any request). Requests:
- ``{"kind": "match", "parts", "gold", "rel_tol", "pi_numeric", "cpu_s"}`` ->
  ``{"match": bool}``;
- ``{"kind": "function", "function": "pkg.mod:fn", "completion", "ground_truth",
  "timeout_s", "config", "cpu_s"}`` -> ``{"result": {RewardResult fields}}``;
either may answer ``{"error": "parse_error", "detail": str}``. Anything a library prints
goes to stderr, so stdout carries only the protocol.

Limits, so that a check cannot outlive its purpose even if the parent cannot kill it:
address space (``BPPO_REWARD_CHILD_MEMORY_BYTES``, 3 GiB), CPU time per request
(``cpu_s``: the process gets SIGXCPU, which kills it, once it has used that much more CPU),
and death with the parent (``PR_SET_PDEATHSIG``: SIGKILL when the parent thread exits).
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import json
import os
import resource
import signal
import sys

# sympy can try to build 10^(10^10) digits: cap the address space so that becomes a
# MemoryError (a parse error) instead of swapping the machine before the parent kills us.
MEMORY_LIMIT_BYTES = int(os.environ.get("BPPO_REWARD_CHILD_MEMORY_BYTES", 3 * 2**30))
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies; exit now if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's kill and the CPU limit remain
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def limit_cpu(seconds: float) -> None:
    """Allow ``seconds`` more CPU time from now (the limit counts the process's whole life)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def handle(request: dict) -> dict:
    limit_cpu(float(request.get("cpu_s", 10.0)))
    if request.get("kind") == "function":
        return {"result": _run_function(request)}
    from rewards.equivalence import answers_match

    match = answers_match(
        request["parts"], request["gold"], rel_tol=request["rel_tol"], pi_numeric=request["pi_numeric"]
    )
    return {"match": bool(match)}


def _run_function(request: dict) -> dict:
    from rewards.config import RewardConfig
    from rewards.verify import RewardResult

    module_name, _, attr = request["function"].partition(":")
    function = getattr(importlib.import_module(module_name), attr)
    result = function(
        request["completion"],
        request["ground_truth"],
        timeout_s=request["timeout_s"],
        config=RewardConfig(**request["config"]),
    )
    if not isinstance(result, RewardResult):
        raise TypeError(f"reward function returned {type(result).__name__}, not a RewardResult")
    return dataclasses.asdict(result)


def main() -> None:
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr
    die_with_parent(int(os.environ.get("BPPO_REWARD_PARENT_PID", os.getppid())))
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ValueError, OSError):
        pass  # a hard limit already below ours: keep it
    sys.setrecursionlimit(5000)

    from rewards.equivalence import answers_match

    limit_cpu(60.0)  # the warm-up's own budget
    answers_match("1", "\\frac{2}{2}\\sqrt{1}")  # warm up math-verify's parser before "ready"
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        try:
            reply = handle(json.loads(line))
        except (MemoryError, RecursionError, Exception) as error:  # noqa: BLE001
            # Untrusted text can make any parser raise anything: it is a parse error, never a crash.
            reply = {"error": "parse_error", "detail": f"{type(error).__name__}: {error}"[:300]}
        protocol.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
