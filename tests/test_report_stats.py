"""The compare report's statistics and sentences on constructed runs: intervals by hand, the
paired bootstrap, the time-to-target rule, and the "why" paragraph in each case it must get right."""

import math

import numpy as np
import pytest

from experiments.report import build_report
from experiments.report_stats import choose_target, first_reach, interval, speedup
from experiments.report_text import relation, render_markdown

PROBLEMS = 200


def _run(step_s: float, correct_sets: list[range | set], learner_s: float = 0.5, tokens: float = 1000.0):
    """metrics.jsonl records and evals.jsonl records of a run evaluated at every step; step k's
    evaluation answers exactly the problems in ``correct_sets[k]`` (step 0 = the warm start)."""
    records, evals = [], []
    for step, correct in enumerate(correct_sets):
        bits = "".join("1" if i in correct else "0" for i in range(PROBLEMS))
        record = {"step": step, "eval/accuracy": bits.count("1") / PROBLEMS, "eval/problems": float(PROBLEMS)}
        if step:
            record.update(
                {
                    "time/step": step_s,
                    "time/generate": step_s - learner_s,
                    "time/update": learner_s,
                    "time/train_elapsed": step * step_s,
                    "train/tokens": tokens,
                    "response/len_mean": 50.0,
                    "response/prompt_len_mean": 20.0,
                }
            )
        records.append(record)
        evals.append({"step": step, "train_elapsed_s": step * step_s, "correct": bits})
    return records, evals


def _report(grpo, bppo, **kwargs):
    runs = {"grpo": {0: grpo[0]}, "bppo": {0: bppo[0]}}
    evals = {"grpo": {0: grpo[1]}, "bppo": {0: bppo[1]}}
    return build_report(runs, group_size=8, window=40.0, evals=evals, **kwargs)


def test_interval_speedup_and_first_reach_by_hand():
    # 100 sorted values: the 2.5th percentile rounds down to index floor(0.025 * 99) = 2, the
    # 97.5th up to index ceil(0.975 * 99) = 97
    assert interval([float(v) for v in range(100)]) == (2.0, 97.0)
    assert interval([math.nan] * 60 + [1.0] * 40) is None  # mostly undefined: no interval
    assert interval([math.nan] * 10 + [1.0] * 90) == (1.0, 1.0)
    assert interval([1.0] * 90 + [math.inf] * 10) == (1.0, math.inf)  # unbounded above stays so
    assert speedup(6.0, 3.0) == 2.0 and speedup(math.inf, 3.0) == math.inf and speedup(3.0, math.inf) == 0.0
    assert math.isnan(speedup(math.inf, math.inf))
    curve, times = np.array([0.2, 0.3, 0.5, 0.4]), np.array([0.0, 2.0, 4.0, 6.0])
    assert first_reach(curve, times, 0.3) == 2.0 and first_reach(curve, times, 0.6) == math.inf


def test_target_rule_needs_two_standard_errors_and_every_run():
    # warm 0.2 on 100 problems: SE = sqrt(0.2 * 0.8 / 100) = 0.04, floor = 0.2 + 2 * 0.04 = 0.28
    curves = {"GRPO seed 0": ([0.2, 0.3, 0.27], [0, 1, 2]), "BPPO seed 0": ([0.2, 0.25, 0.27], [0, 1, 2])}
    target, reason = choose_target(curves, 0.2, 0.04, 100, None)
    assert target is None and "0.270" in reason and "2 standard errors" in reason and "0.200 ± 0.040" in reason
    curves["BPPO seed 0"] = ([0.2, 0.29, 0.35], [0, 1, 2])
    assert choose_target(curves, 0.2, 0.04, 100, None) == (0.3, None)  # min(0.3, 0.35)
    target, reason = choose_target(curves, 0.2, 0.04, 100, 0.34)  # configured: GRPO never got there
    assert target is None and reason == "GRPO seed 0 never reached the target 0.340"


def test_pairing_makes_a_pure_time_difference_exact():
    """Same answers at every evaluation, BPPO's steps take half as long: every resample of the
    (shared) eval items moves both curves alike, so each interval collapses to its value."""
    sets = [range(40), range(60), range(90), range(120), range(120)]  # 0.2 -> 0.6
    report = _report(_run(2.0, sets), _run(1.0, sets))
    intervals = report["intervals"]
    assert report["target_accuracy"] == 0.6 and report["speedup"]["time_to_target"] == 2.0
    assert intervals["speedup/time_to_target"] == {"value": 2.0, "ci": (2.0, 2.0)}
    assert intervals["speedup/steps_to_target"] == {"value": 1.0, "ci": (1.0, 1.0)}
    assert intervals["speedup/step"]["ci"] == (2.0, 2.0)
    lift = intervals["grpo/lift"]
    assert lift["value"] == pytest.approx(0.4)
    # the lift's interval is a real one: 0.4 +- ~2 binomial SEs of the 80 items that changed
    assert 0.3 < lift["ci"][0] < 0.4 < lift["ci"][1] < 0.5
    text = render_markdown(report, command="test")
    assert "| lift over the warm start (final − warm) | 0.400 [" in text
    assert "+14.1 SE" in text  # 0.4 / sqrt(0.2 * 0.8 / 200) = 0.4 / 0.02828
    assert (
        "Per step the two were not distinguishable (steps-to-target ratio 1.00× [1.00, 1.00], an interval "
        "that includes 1); the time-to-target speedup ≈ steps-to-target ratio × step speedup = 1.00 × 2.00 = 2.00×."
        in text
    )
    assert "BPPO needed more steps" not in text and "improved by only" not in text


def test_bppo_losing_is_said_plainly():
    grpo = [range(40), range(120), range(120), range(120), range(120)]
    bppo = [range(40), range(40), range(40), range(40), range(120)]  # the same answers, 3 steps later
    report = _report(_run(2.0, grpo), _run(1.25, bppo))
    # GRPO reaches 0.6 at step 1 (2 s), BPPO at step 4 (5 s): 2 / 5 = 0.4; steps 1 / 4
    assert report["speedup"]["time_to_target"] == pytest.approx(0.4)
    assert report["intervals"]["speedup/time_to_target"]["ci"] == pytest.approx((0.4, 0.4))
    text = render_markdown(report, command="test")
    assert "BPPO reached 0.600 later than GRPO" in text and "BPPO loses here" in text
    assert "BPPO needed more steps (steps-to-target ratio 0.25× [0.25, 0.25]): per step the pair carried less" in text
    assert "the time-to-target speedup ≈ steps-to-target ratio × step speedup = 0.25 × 1.60 = 0.40×." in text


def test_indistinguishable_when_the_interval_holds_one():
    """GRPO and BPPO reach the same accuracy one evaluation apart, but on answers that differ in
    only two problems each way: resampling those problems often reverses the order."""
    grpo = [range(40), range(80), set(range(118)), range(120), range(120)]
    bppo = [range(40), range(80), set(range(2, 122)), range(120), range(120)]
    report = _report(_run(2.0, grpo), _run(2.0, bppo))
    assert report["speedup"]["time_to_target"] == pytest.approx(6.0 / 4.0)  # point estimate 1.5
    low, high = report["intervals"]["speedup/time_to_target"]["ci"]
    assert low <= 1.0 <= high
    text = render_markdown(report, command="test")
    assert "the two are indistinguishable" in text and "an interval that includes 1" in text
    assert "Per step the two were not distinguishable (steps-to-target ratio 1.50× [0.67, 1.50]" in text


def test_no_target_when_nothing_rose_beyond_noise():
    flat = [range(40), range(42), range(38), range(44)]  # 0.20 -> 0.22, SE 0.028: floor 0.257
    report = _report(_run(2.0, flat), _run(1.0, flat))
    assert report["target_accuracy"] is None and "standard errors above the warm start" in report["target_reason"]
    assert "speedup/time_to_target" not in report["intervals"]
    text = render_markdown(report, command="test")
    assert "Time to target is not measurable: the highest accuracy every run reached, 0.220, is less than 2" in text
    assert "GRPO did not move beyond noise (0.200 → 0.220 (+0.7 SE))" in text
    assert "| time to target — (s of training) | not measurable | not measurable |" in text


def test_relation_without_intervals_uses_a_tolerance():
    assert relation(1.6, None, 1.55) == "same" and relation(1.9, None, 1.6) == "above"
    assert relation(1.2, None, 1.6) == "below" and relation(1.2, (1.1, 1.7), 1.6) == "same"
    assert relation(None, None, 1.0) is None


def test_fewer_steps_adds_to_the_step_speedup():
    slow = [range(40), range(40), range(40), range(40), range(120)]
    fast = [range(40), range(120), range(120), range(120), range(120)]
    report = _report(_run(2.0, slow), _run(1.25, fast))
    # GRPO at step 4 (8 s), BPPO at step 1 (1.25 s): 6.4x in time, 4x in steps, 1.6x per step
    assert report["speedup"]["time_to_target"] == pytest.approx(6.4)
    text = render_markdown(report, command="test")
    assert "BPPO reached 0.600 sooner: time-to-target speedup 6.40× [6.40, 6.40]." in text
    assert "BPPO also needed fewer steps (steps-to-target ratio 4.00× [4.00, 4.00])" in text
    assert "= 4.00 × 1.60 = 6.40×." in text
