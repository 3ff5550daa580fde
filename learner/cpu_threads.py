"""How many OpenMP threads a CPU learner's next update runs with, chosen by timing its updates.

Why: torch splits every operation evenly over its threads and waits for the slowest. When a
neighbour process takes one of the cores (a shared machine, a second job), the thread sharing
that core runs at a fraction of its speed and every operation waits for it: on the 2-core
machine the tiny model's forward + backward took 0.76 s with 2 threads and 1.37 s with 1 when
idle, but 2.0-2.2 s with 2 and 1.36 s with 1 beside a one-core burner (docs/benchmarks.md).
No count of free cores read from the system is reliable (``/proc/loadavg`` inside a container
counts the whole host), so the tuner measures the thing it optimises: it runs the updates with
its current count and, now and then, one update with a neighbouring count; it moves when that
update was clearly cheaper per token. Probes back off (doubling) while they lose, so an idle
machine pays one slower update in tens.

Pure: no torch import; the caller passes the function that applies a count.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable


class ThreadTuner:
    """Chooses the thread count of each timed phase (``begin`` ... ``end``) by hill-climbing on
    its seconds per token.

    ``cores``: the most threads it will use (the cores the learner may run on). It starts there.
    ``first_probe``: updates at the current count before the first probe (their median is the
    reference a probe must beat); later probes come ``probe_every`` updates apart, doubling up to
    ``max_probe_every`` after each probe that did not win. ``margin``: a probe wins when its cost
    per token is below the reference by more than this fraction (phases vary a few percent from
    batch to batch; a move on noise would flip back and forth).
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
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if cores < 1:
            raise ValueError(f"cores must be >= 1, got {cores}")
        self.cores, self.apply, self.clock, self.margin = cores, apply, clock, margin
        self.probe_every, self.max_probe_every = probe_every, max_probe_every
        self.current = cores
        self.interval = first_probe  # updates at `current` before the next probe
        self.since_probe = 0
        self.recent: deque[float] = deque(maxlen=3)  # seconds per token at `current`
        self.downward = True  # where a probe from the middle goes: the last winning direction
        self._running: tuple[int, float] | None = None
        apply(cores)

    def begin(self) -> int:
        """Apply and return the thread count of the phase that starts now."""
        threads = self.current
        if self.cores > 1 and self.since_probe >= self.interval and self.recent:
            threads = self._neighbour()
        self.apply(threads)
        self._running = (threads, self.clock())
        return threads

    def end(self, tokens: int) -> None:
        """The phase that ``begin`` started has ended, having processed ``tokens`` tokens."""
        if self._running is None:
            raise RuntimeError("ThreadTuner.end without begin")
        threads, started = self._running
        self._running = None
        cost = (self.clock() - started) / max(tokens, 1)
        if threads == self.current:
            self.recent.append(cost)
            self.since_probe += 1
            return
        self.since_probe = 0
        if cost < statistics.median(self.recent) * (1 - self.margin):
            self.downward = threads < self.current
            self.current, self.interval = threads, self.probe_every
            self.recent.clear()
            self.recent.append(cost)
        else:
            self.downward = not self.downward  # from the middle, the other side next time
            self.interval = min(max(2 * self.interval, self.probe_every), self.max_probe_every)
            self.apply(self.current)

    def _neighbour(self) -> int:
        if self.current == 1:
            return 2
        if self.current == self.cores:
            return self.cores - 1
        return self.current - 1 if self.downward else self.current + 1
