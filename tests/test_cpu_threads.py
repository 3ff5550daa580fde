"""The learner's thread tuner (learner.cpu_threads): which count each update runs with, given
what updates cost per token at each count and how long the threads waited for a CPU. A fake
clock makes every update last exactly ``seconds * tokens``; a fake run-queue clock adds
``waiting * threads`` per wall second. Seconds are the 2-core machine's measured shape (tiny
model, idle: 2 threads 0.76 s, 1 thread 1.37 s per update; beside a one-core burner 2.1 s and
1.36 s); waiting shares as docs/benchmarks.md measured them."""

import pytest

from learner.cpu_threads import ThreadTuner, run_queue_wait

# threads -> (seconds per token, share of the threads' time spent waiting for a CPU)
IDLE = {2: (0.76, 0.08), 1: (1.37, 0.02)}  # a Ray actor's threads wait a little even on free cores
BURNER = {2: (2.1, 0.35), 1: (1.36, 0.08)}  # one of two threads shares its core: waits ~half its time
TOKENS = 100


class Machine:
    """A fake wall clock, a fake run-queue clock and a record of every thread count applied."""

    def __init__(self, *, knows_waits: bool = True) -> None:
        self.now = self.waited = 0.0
        self.knows_waits = knows_waits
        self.applied: list[int] = []

    def tuner(self, cores: int = 2) -> ThreadTuner:
        waited = (lambda: self.waited) if self.knows_waits else (lambda: None)
        return ThreadTuner(cores, self.applied.append, clock=lambda: self.now, waited=waited)

    def run(self, tuner: ThreadTuner, costs: dict[int, tuple[float, float]], phases: int) -> list[int]:
        """``phases`` updates of TOKENS tokens; the thread count each ran with."""
        used = []
        for _ in range(phases):
            threads = tuner.begin()
            seconds, waiting = costs[threads]
            self.now += seconds * TOKENS
            self.waited += seconds * TOKENS * waiting * threads
            tuner.end(TOKENS)
            used.append(threads)
        return used


def test_threads_that_never_wait_for_a_cpu_are_never_probed_with_fewer():
    machine = Machine()
    tuner = machine.tuner()
    assert machine.run(tuner, IDLE, 30) == [2] * 30  # no update pays for a probe
    assert machine.applied == [2] * 31 and tuner.current == 2
    assert list(tuner.waiting) == pytest.approx([0.08] * 3)  # below 0.2: no neighbour


def test_where_the_system_does_not_say_fewer_threads_are_probed_ever_less_often():
    machine = Machine(knows_waits=False)
    tuner = machine.tuner()
    used = machine.run(tuner, IDLE, 20)
    # after two updates (reference 0.76 per token) one runs at 1 thread, costs 1.37, not below
    # 0.76 x 0.9 = 0.684: it loses, and the next probe waits 4 updates, then 8
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
    # reference 2.1, threads waiting 35% of their time; the probe at 1 costs 1.36 < 2.1 x 0.9 =
    # 1.89: moves to 1 thread. From there a probe at 2 (2.1 against 1.36) loses, every 4, then 8
    assert used == [2, 2, 1] + [1] * 4 + [2] + [1] * 8
    assert tuner.current == 1 and tuner.interval == 8
    assert list(tuner.waiting) == pytest.approx([0.08] * 3)


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
    used = machine.run(tuner, {2: (1.0, 0.3), 1: (0.95, 0.0)}, 3)
    assert used == [2, 2, 1] and tuner.current == 2


def test_one_core_never_probes_and_misuse_is_refused():
    machine = Machine()
    assert machine.run(machine.tuner(cores=1), {1: (1.0, 0.5)}, 10) == [1] * 10
    with pytest.raises(RuntimeError, match="end without begin"):
        machine.tuner().end(TOKENS)
    with pytest.raises(ValueError, match="cores must be >= 1, got 0"):
        ThreadTuner(0, print)


def test_between_the_ends_the_tuner_climbs_one_step_at_a_time():
    machine = Machine()
    tuner = machine.tuner(cores=4)
    # four cores, two taken by neighbours: 2 threads is best, and only there do they stop waiting.
    # It steps 4 -> 3 -> 2, from the middle the way the last win went (down)
    costs = {4: (3.0, 0.45), 3: (2.0, 0.3), 2: (1.0, 0.05), 1: (1.6, 0.0)}
    used = machine.run(tuner, costs, 29)
    assert used[:8] == [4, 4, 3, 3, 3, 3, 3, 2]  # 2.0 < 3.0 x 0.9, then 1.0 < 2.0 x 0.9
    # at 2 nothing waits: no probe at 1, only at 3 (losing: 2.0 vs 1.0), 4 then 8 updates apart
    assert used[8:] == [2, 2, 2, 2, 3] + [2] * 8 + [3] + [2] * 7
    assert tuner.current == 2 and tuner.interval == 16


def test_the_run_queue_wait_sums_every_threads_second_schedstat_field(tmp_path):
    # Linux: /proc/self/task/<tid>/schedstat = "<ns on cpu> <ns waiting on a run queue> <slices>"
    for task, text in {"101": "900 2000000000 5\n", "102": "7 500000000 1\n", "103": "garbled\n"}.items():
        (tmp_path / task).mkdir()
        (tmp_path / task / "schedstat").write_text(text)
    (tmp_path / "104").mkdir()  # a thread that exited between the listing and the read
    assert run_queue_wait(str(tmp_path)) == pytest.approx(2.5)
    assert run_queue_wait(str(tmp_path / "absent")) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_queue_wait(str(empty)) is None
