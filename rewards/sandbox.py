"""Run answer checks in child processes that are killed when they overrun.

Why a process and not ``signal.alarm``: an alarm works only on the main thread, so in
a thread or a Ray actor method math-verify's own timeout silently fails (verl PR 5635
turned every MATH score into 0 that way), and a pure-Python loop in sympy cannot be
interrupted from another thread at all. A killed process always stops.

Children are long-lived (starting one costs ~0.5-2 s of imports) and kept in a small
per-process pool, so concurrent threads each get their own. A child that overruns is
killed and a replacement starts warming at once, in the background. A check's deadline
starts when its request is sent to a warm child: warming up is never charged to it.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTUP_TIMEOUT_S = 120.0
"""How long a check may wait for a cold checker's imports; never charged to the check."""
CPU_GRACE_S = 2.0
"""CPU seconds a child may use beyond a request's deadline before the OS kills it (a
backstop for when the parent cannot: it died, or is stuck)."""


class CheckTimeout(Exception):
    """The check did not finish within its deadline; the child was killed."""


@dataclass(frozen=True)
class CheckOutcome:
    match: bool | None  # None when the check failed
    error: str | None = None  # "parse_error" or "timeout"
    detail: str = ""
    result: dict | None = None  # a custom reward function's RewardResult fields


class _Child:
    """One checking process and a line reader over its stdout."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # The parent's import path, so a custom reward function importable here is there too.
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, [_PROJECT_ROOT, *sys.path])))
        env["BPPO_REWARD_PARENT_PID"] = str(os.getpid())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rewards.check_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=_PROJECT_ROOT,
        )
        self._buffer = b""
        self.ready = False

    def ready_now(self) -> bool:
        """Has the child finished warming up? Never blocks."""
        if not self.ready:
            try:
                self.ready = bool(self._read_line(time.monotonic()))
            except (CheckTimeout, ChildProcessError, OSError):
                return False
        return True

    def wait_ready(self, timeout_s: float) -> None:
        if not self.ready:
            self._read_line(time.monotonic() + timeout_s)  # {"ready": true}
            self.ready = True

    def request(self, payload: dict, timeout_s: float) -> dict:
        """Send one request once the child is warm; the deadline starts when it is sent."""
        self.wait_ready(STARTUP_TIMEOUT_S)
        self.process.stdin.write((json.dumps(payload) + "\n").encode())
        self.process.stdin.flush()
        return json.loads(self._read_line(time.monotonic() + timeout_s))

    def _read_line(self, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = max(deadline - time.monotonic(), 0.0)
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                raise CheckTimeout()
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ChildProcessError(f"checker exited with code {self.process.poll()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _ChildPool:
    """This process's checkers. Children are started from one long-lived thread: the
    parent-death signal fires when the thread that started a child exits, and a caller's
    thread may be short-lived. One warm spare is kept, so a check after a timeout (whose
    child was killed) finds a ready checker instead of waiting for a cold one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._owner_pid = os.getpid()
        self._spawner: ThreadPoolExecutor | None = None

    def _spawn(self) -> _Child:
        with self._lock:
            if self._spawner is None:
                self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reward-checker-spawner")
            spawner = self._spawner
        return spawner.submit(_Child).result(timeout=STARTUP_TIMEOUT_S)

    def _check_owner(self) -> None:
        if self._owner_pid != os.getpid():  # forked: the parent's children and thread are not ours
            self._idle, self._owner_pid, self._spawner = [], os.getpid(), None

    def acquire(self) -> _Child:
        with self._lock:
            self._check_owner()
            self._idle = [c for c in self._idle if c.process.poll() is None]
            ready = [c for c in self._idle if c.ready_now()]
            child = (ready or self._idle or [None])[-1]
            if child is not None:
                self._idle.remove(child)
            need_spare = not self._idle
        if child is None:
            child = self._spawn()
        if need_spare:
            self.release(self._spawn())
        return child

    def release(self, child: _Child) -> None:
        with self._lock:
            self._idle.append(child)

    def replace(self, child: _Child) -> None:
        """Kill an overrun child and start warming its replacement now."""
        child.kill()
        self.release(self._spawn())

    def warm_up(self, count: int) -> None:
        """Start ``count`` children (less those idle already) and wait until they are ready."""
        with self._lock:
            self._check_owner()
            missing = max(count - len(self._idle), 0)
        for _ in range(missing):
            self.release(self._spawn())
        with self._lock:
            idle = list(self._idle)
        for child in idle:
            child.wait_ready(STARTUP_TIMEOUT_S)

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        if self._owner_pid == os.getpid():
            for child in idle:
                child.kill()


_POOL = _ChildPool()
atexit.register(_POOL.shutdown)


def warm_up(count: int = 2) -> None:
    """Have ``count`` warm checkers in this process (one in use, one spare): call it where
    the process starts (a reward worker does), so no check ever waits for imports."""
    _POOL.warm_up(count)


def _run(payload: dict, timeout_s: float) -> CheckOutcome | dict:
    """The child's reply, or the outcome of a failed run. Never raises."""
    payload = {**payload, "cpu_s": timeout_s + CPU_GRACE_S}
    child = _POOL.acquire()
    try:
        reply = child.request(payload, max(timeout_s, 0.0))
    except CheckTimeout:
        _POOL.replace(child)
        return CheckOutcome(None, "timeout", f"no verdict within {timeout_s:g} s")
    except (ChildProcessError, OSError, ValueError) as error:
        # The child died (e.g. killed by the OS for memory or CPU time) or spoke garbage.
        _POOL.replace(child)
        return CheckOutcome(None, "parse_error", f"checker failed: {error}")
    _POOL.release(child)
    if "error" in reply:
        return CheckOutcome(None, reply["error"], reply.get("detail", ""))
    return reply


def check_answer(
    answer: str | list[str], gold: str, *, timeout_s: float, rel_tol: float, pi_numeric: bool
) -> CheckOutcome:
    """``answers_match`` in a child process with a hard wall-clock deadline. Never raises."""
    parts = [answer] if isinstance(answer, str) else list(answer)
    reply = _run(
        {"kind": "match", "parts": parts, "gold": gold, "rel_tol": rel_tol, "pi_numeric": pi_numeric}, timeout_s
    )
    return reply if isinstance(reply, CheckOutcome) else CheckOutcome(bool(reply["match"]))


def run_reward_function(
    function: str, completion: str, ground_truth: str, *, timeout_s: float, config: dict
) -> CheckOutcome:
    """A custom reward function (``'pkg.mod:fn'``) in a child process under the same
    deadline and limits as the built-in check. ``result`` holds its RewardResult fields."""
    reply = _run(
        {
            "kind": "function",
            "function": function,
            "completion": completion,
            "ground_truth": ground_truth,
            "timeout_s": timeout_s,
            "config": config,
        },
        timeout_s,
    )
    return reply if isinstance(reply, CheckOutcome) else CheckOutcome(None, result=reply["result"])
