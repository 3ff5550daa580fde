"""How many OpenMP threads a CPU learner's next update runs with, chosen by timing its updates.

Why: torch splits every operation evenly over its threads and waits for the slowest. When a
neighbour process takes one of the cores (a shared machine, a second job), the thread sharing
that core runs at a fraction of its speed and every operation waits for it: on the 2-core
machine the tiny model's forward + backward took 0.76 s with 2 threads and 1.37 s with 1 when
idle, but 2.0-2.2 s with 2 and 1.36 s with 1 beside a one-core burner (docs/benchmarks.md).
No count of free cores read from the system is reliable (``/proc/loadavg`` inside a container
counts the whole host), so the tuner measures the thing it optimises: it runs the updates with
its current count and, now and then, one update with a neighbouring count; it moves when that
update was clearly cheaper per token. A probe with fewer threads is tried only when the
process's threads waited for a CPU (the kernel's per-thread run-queue wait, which stays near zero
on free cores), and probes back off (doubling) while they lose, so an idle machine pays nothing.

No torch import: the caller passes the function that applies a count.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from collections.abc import Callable


def run_queue_wait(tasks_dir: str = "/proc/self/task") -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a CPU (the second field
    of Linux's ``/proc/self/task/<tid>/schedstat``), or None where that file does not exist."""
    total, found = 0, False
    try:
        tasks = os.listdir(tasks_dir)
    except OSError:
        return None
    for task in tasks:
        try:
            with open(os.path.join(tasks_dir, task, "schedstat")) as stats:
                total += int(stats.read().split()[1])
            found = True
        except (OSError, IndexError, ValueError):  # a thread that exited meanwhile
            continue
    return total / 1e9 if found else None


class ThreadTuner:
    """Chooses the thread count of each timed phase (``begin`` ... ``end``) by hill-climbing on
    its seconds per token.

    ``cores``: the most threads it will use (the cores the learner may run on). It starts there.
    ``first_probe``: updates at the current count before the first probe (their median is the
    reference a probe must beat); later probes come ``probe_every`` updates apart, doubling up to
    ``max_probe_every`` after each probe that did not win. ``margin``: a probe wins when its cost
    per token is below the reference by more than this fraction (phases vary a few percent from
    batch to batch; a move on noise would flip back and forth). ``waiting_above``: a probe with
    fewer threads is tried only while the threads spent more than this share of their time
    (summed run-queue wait / (wall time x threads)) waiting for a CPU: on free cores little
    (measured on 2 cores: 0.005 in a bare process, 0.03-0.12 in a Ray actor of a training run,
    whose cluster's own processes wake now and then), beside a core-hogging neighbour 0.30-0.45
    (one of two threads shares its core and waits about half its time).
    ``waited``: the process's threads' run-queue wait so far, in seconds, or None where the
    system does not say (then fewer threads are probed on the schedule alone).
    """

    def __init__(
        self,
        cores: int,
        apply: Callable[[int], None],
        *,
        first_probe: int = 2,
        probe_every: int = 4,
        max_probe_every: int = 64,
        margin: float = 0.1,
        waiting_above: float = 0.2,
        clock: Callable[[], float] = time.perf_counter,
        waited: Callable[[], float | None] = run_queue_wait,
    ) -> None:
        if cores < 1:
            raise ValueError(f"cores must be >= 1, got {cores}")
        self.cores, self.apply, self.margin, self.waiting_above = cores, apply, margin, waiting_above
        self.clock, self.waited = clock, waited
        self.probe_every, self.max_probe_every = probe_every, max_probe_every
        self.current = cores
        self.interval = first_probe  # updates at `current` before the next probe
        self.since_probe = 0
        self.recent: deque[float] = deque(maxlen=3)  # seconds per token at `current`
        self.waiting: deque[float | None] = deque(maxlen=3)  # the threads' share of time waiting
        self.downward = True  # where a probe from the middle goes: the last winning direction
        self.last_waiting: float | None = None  # the last phase's share of time waiting for a CPU
        self._running: tuple[int, float, float | None] | None = None
        apply(cores)

    def begin(self) -> int:
        """Apply and return the thread count of the phase that starts now."""
        threads = self.current
        if self.since_probe >= self.interval and self.recent:
            threads = self._probe() or self.current
        self.apply(threads)
        self._running = (threads, self.clock(), self.waited())
        return threads

    def end(self, tokens: int) -> None:
        """The phase that ``begin`` started has ended, having processed ``tokens`` tokens."""
        if self._running is None:
            raise RuntimeError("ThreadTuner.end without begin")
        threads, started, waited_before = self._running
        self._running = None
        wall, waited = self.clock() - started, self.waited()
        cost = wall / max(tokens, 1)
        # a thread that exits takes its wait along: a negative difference is read as none
        waiting = (
            None if None in (waited, waited_before) else max(waited - waited_before, 0.0) / max(wall * threads, 1e-9)
        )
        self.last_waiting = waiting
        if threads == self.current:
            self.recent.append(cost)
            self.waiting.append(waiting)
            self.since_probe += 1
            return
        self.since_probe = 0
        if cost < statistics.median(self.recent) * (1 - self.margin):
            self.downward = threads < self.current
            self.current, self.interval = threads, self.probe_every
            self.recent.clear()
            self.waiting.clear()
            self.recent.append(cost)
            self.waiting.append(waiting)
        else:
            self.downward = not self.downward  # from the middle, the other side next time
            self.interval = min(max(2 * self.interval, self.probe_every), self.max_probe_every)
            self.apply(self.current)

    def _probe(self) -> int | None:
        """The neighbouring count worth one update now, or None."""
        known = [w for w in self.waiting if w is not None]
        down = self.current > 1 and (not known or statistics.median(known) > self.waiting_above)
        up = self.current < self.cores
        if down and up:
            return self.current - 1 if self.downward else self.current + 1
        if down:
            return self.current - 1
        return self.current + 1 if up else None
