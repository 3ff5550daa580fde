"""Hostile completions: each returns a RewardResult within timeout_s + 1 s, none raises."""

import threading
import time

import pytest

from rewards.config import RewardConfig
from rewards.sandbox import warm_up
from rewards.verify import REASONS, score

TIMEOUT_S = 2.0
HOSTILE = {
    "power tower": "\\boxed{10^{10^{10^{10}}}}",
    "sqrt x 10000": "\\boxed{" + "\\sqrt{" * 10_000,
    "sqrt x 10000 closed": "\\boxed{" + "\\sqrt{" * 100 + "2" + "}" * 100 + "}",
    "1 MB": "7" * 1_000_000,
    "1 MB boxed": "\\boxed{" + "9" * 1_000_000 + "}",
    "invalid utf-8": b"\\boxed{\xff\xfe\xfa 12}".decode("utf-8", errors="replace"),
    "invalid utf-8 bytes": b"\\boxed{\xc3\x28}",
    "unclosed": "\\boxed{",
    "deep braces": "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "x tower": "\\boxed{x^{x^{x^{x}}} = 5}",
    "def": "\\boxed{\\def\\x{\\x\\x}\\x}",
    "input": "\\boxed{\\input{/etc/passwd}}",
    "python": "\\boxed{__import__('os').system('touch /tmp/bppo_pwned')}",
    "python lambda": "\\boxed{(lambda: [1 for _ in iter(int, 1)])()}",
    "huge factorial": "\\boxed{(10^{100})!}",
    "null bytes": "\\boxed{1\x00\x00}",
    # Regex busters: runs of blanks between tokens that optional quantifiers could split
    # many ways (the unit pattern took 10.75 s on the first one before issue 12).
    "490 spaces unit": "\\boxed{1" + " " * 490 + "x}",
    "490 spaces cm": "\\boxed{1" + " " * 240 + "square" + " " * 240 + "cm}",
    "tabs and newlines": "\\boxed{1" + " \t\n" * 160 + "x}",
    "spacing commands": "\\boxed{1" + "\\, " * 160 + "x}",
    "degree marks": "\\boxed{1" + " ^ " * 160 + "x}",
    "thousands": "\\boxed{" + "1 " * 240 + "x}",
    "commas": "\\boxed{" + "1," * 240 + "}",
    "nested text": "\\boxed{" + "\\text{" * 160 + "1" + "}" * 160 + "}",
    "brackets": "\\boxed{" + "(" * 240 + ")" * 240 + "}",
    "many boxes": "\\boxed{1} and " * 20_000,
    "many boxes no gap": "\\boxed{1}" * 50_000,
    "percent words": "\\boxed{1" + " percent" * 60 + "}",
    "list words": "\\boxed{1" + " and or" * 70 + "}",
}


@pytest.fixture(scope="module", autouse=True)
def warm_checkers():
    """A reward worker warms its checkers at start-up; so does this module."""
    warm_up()


@pytest.mark.slow
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_completion_returns_in_time(name):
    started = time.monotonic()
    result = score(HOSTILE[name], "3", timeout_s=TIMEOUT_S)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT_S + 1.0, f"{name}: {elapsed:.2f} s"
    assert result.reason in REASONS and not result.correct


@pytest.mark.slow
@pytest.mark.parametrize("blanks", [" " * 1990, " \t" * 995])
def test_fallback_answer_line_with_runs_of_blanks_is_fast(blanks):
    config = RewardConfig(fallback=["answer_line", "last_number"])
    for text in ["Answer:" + blanks + "x", "final answer is" + blanks + "x I hope", "1" + blanks + "1,"]:
        started = time.monotonic()
        result = score(text, "3", timeout_s=TIMEOUT_S, config=config)
        assert time.monotonic() - started < TIMEOUT_S + 1.0 and not result.correct


def test_python_in_the_answer_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    score(f"\\boxed{{__import__('os').system('touch {marker}')}}", "5", timeout_s=TIMEOUT_S)
    score(f"\\boxed{{open('{marker}', 'w')}}", "5", timeout_s=TIMEOUT_S)
    assert not marker.exists()


@pytest.mark.slow
def test_timeouts_work_off_the_main_thread():
    """math-verify's own signal.alarm timeout fails in threads (verl PR 5635); ours must not."""
    results = {}

    def work(index):
        completion = HOSTILE["power tower"] if index == 0 else "\\boxed{2\\sqrt{3}}"
        started = time.monotonic()
        results[index] = (score(completion, "\\sqrt{12}", timeout_s=TIMEOUT_S), time.monotonic() - started)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0][0].reason == "timeout" and results[0][1] < TIMEOUT_S + 1.0
    assert all(results[i][0].correct for i in (1, 2))  # not zeroed by a broken timeout


@pytest.mark.slow
def test_a_timeout_does_not_poison_the_next_check():
    assert score(HOSTILE["power tower"], "5", timeout_s=TIMEOUT_S).reason == "timeout"
    assert score("\\boxed{2\\sqrt{3}}", "\\sqrt{12}", timeout_s=TIMEOUT_S).correct
