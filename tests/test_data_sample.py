"""`bppo data sample`: judged completions per prompt and the pass rates per family x level."""

import json
from pathlib import Path

import pytest

from prompts.tools.sample import pass_rates

ROOT = Path(__file__).resolve().parents[1]


def _row(problem, family, correct, length, answer="1", finish="stop"):
    return {
        "id": problem,
        "family": family,
        "level": 0,
        "correct": correct,
        "length": length,
        "answer": answer,
        "finish_reason": finish,
    }


def test_pass_rates_by_hand():
    # rectangle: p1 = [right, wrong] (a pair), p2 = [wrong, wrong]; cube: p3 = [right, right]
    rows = [
        _row("p1", "rectangle", True, 10),
        _row("p1", "rectangle", False, 30, answer=None),
        _row("p2", "rectangle", False, 20),
        _row("p2", "rectangle", False, 40, finish="length"),
        _row("p3", "cube", True, 5),
        _row("p3", "cube", True, 7),
    ]
    rates = pass_rates(rows, group_size=2)
    rectangle, everything = rates["rectangle:0"], rates["all"]
    assert rectangle["pass_rate"] == 0.25 and rectangle["pair_rate"] == 0.5  # 1 of 4; 1 of 2 groups
    assert rectangle["answered_rate"] == 0.75 and rectangle["clipped_rate"] == 0.25
    assert (rectangle["length_mean"], rectangle["length_median"], rectangle["length_p90"]) == (25.0, 25.0, 40)
    assert rates["cube:0"]["pass_rate"] == 1.0 and rates["cube:0"]["pair_rate"] == 0.0  # all right: no pair
    assert everything["pass_rate"] == 0.5 and everything["pair_rate"] == pytest.approx(1 / 3)
    assert everything["completions"] == 6 and rates["group_size"] == 2


@pytest.mark.slow  # a vLLM engine
def test_sample_command_writes_judged_completions_and_pass_rates(tiny_model, tmp_path, capsys):
    from cli.main import main

    args = [
        "data",
        "sample",
        "--config",
        str(ROOT / "configs/tiny_cpu.yaml"),
        "--model",
        tiny_model,
        "--problems",
        "3",
        "--out",
        str(tmp_path),
        "rollout.n=2",
        "rollout.max_tokens=16",
    ]
    assert main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    rates = json.loads((tmp_path / "pass_rates.json").read_text())
    assert (
        len(rows) == 6 and [r["id"] for r in rows] == ["train-000000"] * 2 + ["train-000001"] * 2 + ["train-000002"] * 2
    )
    assert all(0 < r["length"] <= 16 and r["reason"] in ("correct", "wrong", "no_answer", "parse_error") for r in rows)
    assert rates["all"]["completions"] == 6 and rates["group_size"] == 2
    assert rates["all"]["pass_rate"] == sum(r["correct"] for r in rows) / 6
    assert "sampled 6 completions (3 train problems x 2)" in capsys.readouterr().out
