"""Geometry answer equivalence through the public entry point, correct and wrong per class."""

import pytest

from rewards.config import RewardConfig
from rewards.verify import score
from tests.reward_tiers import tiered

CASES = [
    # (completion answer, gold, correct?)
    ("\\frac{3}{4}", "0.75", True),
    ("0.75", "\\frac{3}{4}", True),
    ("0.76", "\\frac{3}{4}", False),
    ("3/4", "\\dfrac{3}{4}", True),
    ("\\tfrac{3}{4}", "3/4", True),
    ("\\frac34", "0.75", True),
    ("0.3333", "\\frac{1}{3}", True),
    ("0.33", "\\frac{1}{3}", False),  # rel_tol 1e-4
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\sqrt{12}", "2\\sqrt{3}", True),
    ("3\\sqrt{2}", "2\\sqrt{3}", False),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True),
    ("25\\pi", "25\\pi", True),
    ("25 \\pi", "25\\pi", True),
    ("\\pi \\cdot 25", "25\\pi", True),
    ("24\\pi", "25\\pi", False),
    ("78.5398", "25\\pi", False),  # symbolic-only by default
    ("30^\\circ", "30", True),
    ("30°", "30", True),
    ("30 degrees", "30", True),
    ("30^{\\circ}", "30", True),
    ("31^\\circ", "30", False),
    ("12 cm", "12", True),
    ("12 \\text{ cm}^2", "12", True),
    ("12 square units", "12", True),
    ("12 units", "12", True),
    ("12\\text{ cm}", "13", False),
    ("1,000", "1000", True),
    ("1{,}000", "1000", True),
    ("10,000", "1000", False),
    ("C", "C", True),
    ("(C)", "C", True),
    ("C.", "C", True),
    ("\\text{(C)}", "C", True),
    ("C) 45", "C", True),
    ("B", "C", False),
    ("(B)", "(C)", False),
    ("x = 5", "5", True),
    ("-7", "-7", True),
    ("7", "-7", False),
]


@pytest.mark.parametrize("answer, gold, correct", tiered(CASES, lambda a: f"Reasoning. The answer is \\boxed{{{a}}}."))
def test_equivalence(answer, gold, correct):
    result = score(f"Reasoning. The answer is \\boxed{{{answer}}}.", gold, timeout_s=10)
    assert result.reason == ("correct" if correct else "wrong"), result
    assert result.correct is correct
    assert result.format_ok and result.answer == answer


@pytest.mark.slow  # pi against a decimal: the symbolic checker, in its child process
def test_pi_numeric_is_a_config_choice():
    config = RewardConfig(pi_numeric=True)
    assert score("\\boxed{78.5398}", "25\\pi", config=config).correct
    assert score("\\boxed{78.54}", "25\\pi", config=RewardConfig(pi_numeric=True, rel_tol=1e-3)).correct
    assert not score("\\boxed{78.6}", "25\\pi", config=config).correct
    assert score("\\boxed{25\\pi}", "25\\pi", config=config).correct


def test_score_weights_and_format():
    config = RewardConfig(accuracy_weight=1.0, format_weight=0.1, fallback=["last_number"])
    boxed = score("\\boxed{5}", "5", config=config)
    assert (boxed.correct, boxed.format_ok, boxed.score) == (True, True, pytest.approx(1.1))
    unboxed = score("it is 5", "5", config=config)
    assert (unboxed.correct, unboxed.format_ok, unboxed.score) == (True, False, pytest.approx(1.0))
    wrong = score("\\boxed{6}", "5", config=config)
    assert (wrong.correct, wrong.score, wrong.reason) == (False, pytest.approx(0.1), "wrong")
    none = score("I do not know", "5")
    assert (none.reason, none.answer, none.score, none.format_ok) == ("no_answer", None, 0.0, False)


def test_unreadable_answer_is_a_parse_error_not_wrong():
    # No geometry answer is 600 characters long; refusing it keeps sympy off megabyte inputs.
    result = score("\\boxed{" + "1+" * 300 + "1}", "601", timeout_s=10)
    assert (result.reason, result.correct, result.format_ok) == ("parse_error", False, True)
    assert "longer than 500" in result.detail
