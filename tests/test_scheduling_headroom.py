"""benchmarks/scheduling_headroom.py: the threshold bound and skip's rule, worked by hand."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def headroom_module():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling results_io
    try:
        spec = importlib.util.spec_from_file_location("scheduling_headroom", BENCHMARKS / "scheduling_headroom.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_threshold_bound_and_skip_rule_by_hand(headroom_module):
    groups = [
        {"id": "p0", "correct": 1, "judged": 2, "tokens": 10},  # bin A, useful
        {"id": "p1", "correct": 0, "judged": 2, "tokens": 30},  # bin A, all wrong
        {"id": "p2", "correct": 1, "judged": 2, "tokens": 20},  # bin B, useful
        {"id": "p3", "correct": 1, "judged": 2, "tokens": 20},
    ]  # bin B, useful
    found = headroom_module.headroom(groups, {"p0": 0, "p1": 0, "p2": 1, "p3": 1}, min_explore=0.0)
    # useful shares: A 0.5, B 1.0; all groups: 80 tokens / 3 useful = 26.667 per useful group
    rows = {row["threshold"]: row for row in found["thresholds"]}
    assert rows[0.5] == {
        "threshold": 0.5,
        "kept_share": 1.0,
        "useful_rate": pytest.approx(0.75),
        "tokens_per_useful": pytest.approx(80 / 3),
        "cut": pytest.approx(1.0),
    }
    # >= 0.6 keeps bin B only: 2 of 4 groups, both useful, 40 tokens / 2 = 20 -> 26.667 / 20 = 1.333x
    assert rows[0.6]["kept_share"] == 0.5 and rows[0.6]["useful_rate"] == 1.0
    assert rows[0.6]["tokens_per_useful"] == 20.0 and rows[0.6]["cut"] == pytest.approx(4 / 3)
    # skip's rule: A's groups kept with probability 1 - 0.5 = 0.5, B's always: kept 3 of 4 groups;
    # useful 0.5 + 1 + 1 = 2.5 -> 2.5 / 3 = 0.8333; tokens 5 + 15 + 20 + 20 = 60 -> 24 per useful
    # -> 26.667 / 24 = 1.111x
    assert found["skip_rule"] == {
        "kept_share": 0.75,
        "useful_rate": pytest.approx(2.5 / 3),
        "cut": pytest.approx((80 / 3) / 24),
    }
    empty = headroom_module.headroom(groups[:2], {"p0": 0, "p1": 0}, min_explore=0.0)
    assert {"threshold": 0.6, "kept_share": 0.0, "useful_rate": None, "tokens_per_useful": None, "cut": None} in empty[
        "thresholds"
    ]  # no bin that good: no number, no division by zero


def test_auc_counts_ties_half(headroom_module):
    assert headroom_module.auc([3.0, 1.0], [2.0]) == 0.5  # 3 > 2 wins, 1 < 2 loses
    assert headroom_module.auc([2.0], [2.0]) == 0.5
    assert headroom_module.auc([4.0, 5.0], [1.0, 2.0]) == 1.0
    assert headroom_module.auc([], [1.0]) is None
