"""The checker child: custom reward functions under the deadline, a CPU-time limit, death
with its parent, and a warm-up that is never charged to a check."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewards.config import RewardConfig
from rewards.sandbox import warm_up
from rewards.verify import score_with_function

ROOT = Path(__file__).resolve().parents[1]
POWER_TOWER = "10^{10^{10^{10}}}"  # sympy spins on this far longer than any test waits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def warm_checkers():
    """As a reward worker does at start-up: the deadline below is then the check's alone."""
    warm_up()


def test_a_custom_reward_function_that_never_returns_times_out():
    started = time.monotonic()
    result = score_with_function("tests.slow_reward:spin_reward", "x", "1", timeout_s=1.0)
    assert time.monotonic() - started < 1.0 + 1.0
    assert (result.reason, result.correct, result.score) == ("timeout", False, 0.0)


def test_a_custom_reward_function_runs_in_the_child_and_its_result_comes_back():
    ok = score_with_function("tests.slow_reward:exact_reward", " 7 ", "7", timeout_s=5.0)
    assert (ok.correct, ok.score, ok.answer, ok.reason) == (True, 1.0, "7", "correct")
    bad = score_with_function("tests.slow_reward:not_a_result_reward", "7", "7", timeout_s=5.0)
    assert bad.reason == "parse_error" and "not a RewardResult" in bad.detail


def _start_child() -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BPPO_REWARD_PARENT_PID": str(os.getpid())}
    child = subprocess.Popen(
        [sys.executable, "-m", "rewards.check_child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    assert json.loads(child.stdout.readline()) == {"ready": True}
    return child


def test_the_child_kills_itself_after_its_cpu_budget_even_if_nobody_kills_it():
    child = _start_child()
    request = {"kind": "match", "parts": [POWER_TOWER], "gold": "3", "rel_tol": 1e-4, "pi_numeric": False, "cpu_s": 1.0}
    child.stdin.write((json.dumps(request) + "\n").encode())
    child.stdin.flush()
    try:
        # 1 s of CPU (+ the limit's rounding up to whole seconds) then SIGXCPU; generous
        # wall time for a machine shared with other work.
        returncode = child.wait(timeout=30)
    finally:
        child.kill()
    assert returncode == -signal.SIGXCPU


PARENT = """
import sys, time
from rewards import sandbox
from rewards.verify import score
sandbox.warm_up(2)
print(" ".join(str(c.process.pid) for c in sandbox._POOL._idle), flush=True)
score("\\\\boxed{POWER_TOWER}", "3", timeout_s=120)  # busy in a check when the parent is killed
""".replace("POWER_TOWER", POWER_TOWER)


def test_children_die_with_their_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        time.sleep(1.0)  # the check is running in one of them
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"checker children {alive} outlived their parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


COLD = """
import time
from rewards.verify import score
started = time.monotonic()
result = score("\\\\boxed{2\\\\sqrt{3}}", "\\\\sqrt{12}", timeout_s=0.3)  # needs the symbolic checker
print(result.reason, round(time.monotonic() - started, 2))
"""


def test_a_cold_checker_warm_up_is_not_charged_to_the_first_check():
    # Starting a checker (imports + a warm-up parse) takes ~1-2 s, far over this check's 0.3 s.
    out = subprocess.run(
        [sys.executable, "-c", COLD],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    reason, seconds = out.stdout.split()
    assert reason == "correct", out.stderr[-2000:]
    assert float(seconds) > 0.3  # it did wait for the warm-up, and the verdict still counted


def test_custom_function_gets_the_config():
    config = RewardConfig(format_weight=0.5)
    result = score_with_function("tests.custom_reward:length_reward", "abc", "3", timeout_s=5.0, config=config)
    assert result.correct and result.reason == "correct"
