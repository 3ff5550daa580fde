"""The learner's thread tuner (learner.cpu_threads): which count each update runs with, given
what updates cost per token at each count. A fake clock makes every phase last exactly
``cost[threads] * tokens`` seconds; the costs are the 2-core machine's measured shape (idle:
2 threads 0.76 s, 1 thread 1.37 s per update; beside a one-core burner 2.1 s and 1.36 s)."""

import pytest

from learner.cpu_threads import ThreadTuner

IDLE = {2: 0.76, 1: 1.37}
BURNER = {2: 2.1, 1: 1.36}
TOKENS = 100


class Machine:
    """A fake clock and a record of every thread count applied."""

    def __init__(self) -> None:
        self.now = 0.0
        self.applied: list[int] = []

    def tuner(self, cores: int = 2) -> ThreadTuner:
        return ThreadTuner(cores, self.applied.append, clock=lambda: self.now)

    def run(self, tuner: ThreadTuner, costs: dict[int, float], phases: int) -> list[int]:
        """``phases`` updates of TOKENS tokens; the thread count each ran with."""
        used = []
        for _ in range(phases):
            threads = tuner.begin()
            self.now += costs[threads] * TOKENS
            tuner.end(TOKENS)
            used.append(threads)
        return used


def test_an_idle_machine_keeps_every_core_and_probes_ever_less_often():
    machine = Machine()
    tuner = machine.tuner()
    assert machine.applied == [2]  # every core from the start
    used = machine.run(tuner, IDLE, 20)
    # two updates at 2 set the reference (0.76 per token-update); the probe at 1 costs 1.37, not
    # below 0.76 x 0.9 = 0.684: it loses, and the next probe waits 4 updates, then 8
    assert used == [2, 2, 1] + [2] * 4 + [1] + [2] * 8 + [1] + [2] * 3
    assert tuner.current == 2 and tuner.interval == 16
    # after each losing probe the count goes back to 2 at once (work between updates runs at 2)
    assert machine.applied[:5] == [2, 2, 2, 1, 2]
    # 3 probes in 20 updates at +0.61 each: 2.4% over always using 2 threads
    assert machine.now == pytest.approx((17 * 0.76 + 3 * 1.37) * TOKENS)


def test_beside_a_busy_core_one_thread_wins_the_first_probe_and_keeps_winning():
    machine = Machine()
    tuner = machine.tuner()
    used = machine.run(tuner, BURNER, 16)
    # reference 2.1; the probe at 1 costs 1.36 < 2.1 x 0.9 = 1.89: moves to 1 thread. From there
    # a probe at 2 (2.1 against 1.36) loses, every 4, then 8 updates
    assert used == [2, 2, 1] + [1] * 4 + [2] + [1] * 8
    assert tuner.current == 1 and tuner.interval == 8


def test_when_the_neighbour_leaves_the_next_probe_takes_the_core_back():
    machine = Machine()
    tuner = machine.tuner()
    assert machine.run(tuner, BURNER, 8)[-1] == 2  # at 1 thread since update 3; 8 = a losing probe
    # the burner stops: 1 thread costs 1.37 (reference), the probe at 2 (0.76) wins: 0.76 < 1.233
    used = machine.run(tuner, IDLE, 9)
    assert used == [1] * 8 + [2]
    assert tuner.current == 2 and tuner.interval == 4


def test_a_probe_within_the_margin_does_not_move():
    machine = Machine()
    tuner = machine.tuner()
    # one thread 5% cheaper: inside the 10% margin, so the count stays (no flapping on noise)
    used = machine.run(tuner, {2: 1.0, 1: 0.95}, 3)
    assert used == [2, 2, 1] and tuner.current == 2


def test_one_core_never_probes_and_misuse_is_refused():
    machine = Machine()
    assert machine.run(machine.tuner(cores=1), {1: 1.0}, 10) == [1] * 10
    with pytest.raises(RuntimeError, match="end without begin"):
        machine.tuner().end(TOKENS)
    with pytest.raises(ValueError, match="cores must be >= 1, got 0"):
        ThreadTuner(0, print)


def test_between_the_ends_the_tuner_climbs_one_step_at_a_time():
    machine = Machine()
    tuner = machine.tuner(cores=4)
    # four cores, two taken by neighbours: 2 threads is best; it steps 4 -> 3 -> 2 and stays
    costs = {4: 3.0, 3: 2.0, 2: 1.0, 1: 1.6}
    used = machine.run(tuner, costs, 29)
    assert used[:3] == [4, 4, 3]  # 2.0 < 3.0 x 0.9: moves to 3
    # from the middle a probe continues the way the last win went (down): 2 costs 1.0 < 1.8
    assert used[3:8] == [3, 3, 3, 3, 2]
    # at 2, the probe down (1: 1.6) loses, so the next one tries up (3: 2.0) and loses too
    assert used[8:] == [2, 2, 2, 2, 1] + [2] * 8 + [3] + [2] * 7
    assert tuner.current == 2 and tuner.interval == 16 and tuner.downward is True
