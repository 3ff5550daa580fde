"""Run answer checks in child processes that are killed when they overrun.

Why a process and not ``signal.alarm``: an alarm works only on the main thread, so in
a thread or a Ray actor method math-verify's own timeout silently fails (verl PR 5635
turned every MATH score into 0 that way), and a pure-Python loop in sympy cannot be
interrupted from another thread at all. A killed process always stops.

Children are long-lived (starting one costs ~0.5 s of imports) and kept in a small
per-process pool, so concurrent threads each get their own. A child that overruns is
killed and a replacement starts warming at once, in the background.
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
from dataclasses import dataclass

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CheckTimeout(Exception):
    """The check did not finish within its deadline; the child was killed."""


@dataclass(frozen=True)
class CheckOutcome:
    match: bool | None  # None when the check failed
    error: str | None = None  # "parse_error" or "timeout"
    detail: str = ""


class _Child:
    """One checking process and a line reader over its stdout."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH")]))
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

    def request(self, payload: dict, deadline: float) -> dict:
        if not self.ready:
            self._read_line(deadline)  # {"ready": true}
            self.ready = True
        self.process.stdin.write((json.dumps(payload) + "\n").encode())
        self.process.stdin.flush()
        return json.loads(self._read_line(deadline))

    def _read_line(self, deadline: float) -> bytes:
        fd = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CheckTimeout()
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
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._owner_pid = os.getpid()

    def acquire(self) -> _Child:
        with self._lock:
            if self._owner_pid != os.getpid():  # forked: the parent's children are not ours
                self._idle, self._owner_pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        return _Child()

    def release(self, child: _Child) -> None:
        with self._lock:
            self._idle.append(child)

    def replace(self, child: _Child) -> None:
        """Kill an overrun child and start warming its replacement now."""
        child.kill()
        self.release(_Child())

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        if self._owner_pid == os.getpid():
            for child in idle:
                child.kill()


_POOL = _ChildPool()
atexit.register(_POOL.shutdown)


def check_answer(
    answer: str, gold: str, *, timeout_s: float, rel_tol: float, pi_numeric: bool
) -> CheckOutcome:
    """``answers_match`` in a child process with a hard wall-clock deadline. Never raises."""
    deadline = time.monotonic() + timeout_s
    payload = {"answer": answer, "gold": gold, "rel_tol": rel_tol, "pi_numeric": pi_numeric}
    child = _POOL.acquire()
    try:
        reply = child.request(payload, deadline)
    except CheckTimeout:
        _POOL.replace(child)
        return CheckOutcome(None, "timeout", f"no verdict within {timeout_s:g} s")
    except (ChildProcessError, OSError, ValueError) as error:
        # The child died (e.g. killed by the OS for memory) or spoke garbage.
        _POOL.replace(child)
        return CheckOutcome(None, "parse_error", f"checker failed: {error}")
    _POOL.release(child)
    if "error" in reply:
        return CheckOutcome(None, reply["error"], reply.get("detail", ""))
    return CheckOutcome(bool(reply["match"]))


def shutdown_checkers() -> None:
    """Kill this process's idle checker children (they also die at interpreter exit)."""
    _POOL.shutdown()
