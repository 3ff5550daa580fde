"""Issue 12: exact where the gold is exact, and every answer form with a correct and a wrong case.

All through the public entry point, a completion ending in \\boxed{...} (or several). Each
fast-path normalisation rule has the false positive it could create as a 'wrong' row.
"""

import pytest

from rewards.config import RewardConfig
from rewards.verify import score
from tests.reward_tiers import tiered

EXACT = [
    # (boxed answer, gold, correct?)  integers and fractions compare exactly: no rel_tol
    ("9999", "10000", False),
    ("123457", "123456", False),
    ("100001", "100000", False),
    ("10000", "10000", True),
    ("10000.0", "10000", True),
    ("9999.99", "10000", False),
    ("123456.5", "123456", False),  # a decimal of an integer gold is exact too
    ("0.5000001", "0.5", False),
    ("0.50", "\\frac{1}{2}", True),
    ("\\frac{2}{4}", "0.5", True),
    ("\\frac{333}{1000}", "\\frac{1}{3}", False),  # a fraction is exact, never an approximation
    # a decimal against a non-terminating fraction: within one unit of its last digit AND rel_tol 1e-4
    ("0.3333", "\\frac{1}{3}", True),
    ("0.33333", "\\frac{1}{3}", True),
    ("0.3334", "\\frac{1}{3}", False),
    ("0.6667", "\\frac{2}{3}", True),
    ("0.6666", "\\frac{2}{3}", True),
    ("0.33", "\\frac{1}{3}", False),
    ("\\frac{1}{3}", "0.3333", True),  # gold given as a decimal approximation
    ("004", "4", True),  # leading zeros do not change an integer
]

SPACES = [
    ("12 3", "123", "parse_error"),  # two numbers are not silently joined
    ("1 2", "3", "parse_error"),  # math-verify alone would read 1 2 as 1+2
    ("123 456", "123456", "correct"),  # a space between groups of three is a thousands separator
    ("1\\,000", "1000", "correct"),
    ("1{,}000", "1000", "correct"),
    ("32,\\!349", "32349", "correct"),
    ("32, 349", "32349", "wrong"),  # comma + space separates a list
    ("1,2", "12", "wrong"),
    ("10,000", "1000", "wrong"),
    ("\\frac 1 2", "0.5", "correct"),  # TeX's \frac 1 2, not '1 2'
]

RULES = [
    # degrees: dropped only after a number or group
    ("30^\\circ", "30", True),
    ("31^\\circ", "30", False),
    ("f \\circ g", "fg", False),
    # units: dropped after a number, never a variable
    ("12\\text{ cm}^2", "12", True),
    ("12 m", "12", True),
    ("12 square units", "12", True),
    ("13 cm", "12", False),
    ("2x", "2", False),  # (math-verify itself reads 2m as 2 metres)
    # \text{} wrappers
    ("\\text{Evelyn}", "\\text{Evelyn}", True),
    ("\\text{Eve}", "\\text{Evelyn}", False),
    # percent: the sign read as a unit or as /100, never a bare number for another
    ("28\\%", "28\\%", True),
    ("28 percent", "28\\%", True),
    ("28 pct", "28\\%", True),
    ("28", "28\\%", True),
    ("0.28", "28\\%", True),
    ("29\\%", "28\\%", False),
    ("0.28", "28", False),
    ("2.8\\%", "28\\%", False),
    # choice letters: one letter decides; a hedge never matches
    ("C) 45", "C", True),
    ("\\text{(C)}", "C", True),
    ("C or D", "C", False),
    ("(C), (D)", "C", False),
    ("c", "C", True),
    ("B", "C", False),
]

FORMS = [
    # coordinates and tuples: in order
    ("(3, \\frac{\\pi}{2})", "(3,\\frac{\\pi}{2})", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    ("(2, 1)", "(1,2)", False),
    ("(1, 2, 3)", "(1,2)", False),
    # intervals: the brackets matter
    ("[1, 2)", "[1,2)", True),
    ("(1, 2]", "[1,2)", False),
    ("[0, 1]", "(0,1)", False),
    ("(2,12) \\cup (12,102)", "(2, 12) \\cup (12, 102)", True),
    ("(2,12) \\cup (12,103)", "(2,12)\\cup(12,102)", False),
    # sets and lists: any order
    ("\\{1, 2\\}", "\\{2,1\\}", True),
    ("1, 2", "\\{2, 1\\}", True),
    ("2, 3, 5", "\\{2,3,5,7\\}", False),
    ("6 \\text{ and } 8", "6,8", True),
    ("6 \\text{ and } 9", "6,8", False),
    ("-12; -11", "-12,-11", True),
    # symbolic
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\sqrt{13}", "\\sqrt{12}", False),
    ("x = 5", "5", True),
    ("x = 6", "5", False),
]


@pytest.mark.parametrize(
    "answer, gold, correct", tiered(EXACT + RULES + FORMS, lambda a: f"So the answer is \\boxed{{{a}}}.")
)
def test_verdict(answer, gold, correct):
    result = score(f"So the answer is \\boxed{{{answer}}}.", gold, timeout_s=10)
    assert result.reason == ("correct" if correct else "wrong"), result


@pytest.mark.parametrize("answer, gold, reason", tiered(SPACES, lambda a: f"\\boxed{{{a}}}"))
def test_spaces_and_separators(answer, gold, reason):
    result = score(f"\\boxed{{{answer}}}", gold, timeout_s=10)
    assert result.reason == reason, result
    assert result.correct is (reason == "correct")


SEVERAL_BOXES = [
    # a set of solutions: any order, all of them, nothing else
    ("The integers are \\boxed{-2} and \\boxed{1}.", "1,-2", True),
    ("$\\boxed{1}$, $\\boxed{2}$", "\\{2, 1\\}", True),
    ("\\boxed{1} \\quad \\text{and} \\quad \\boxed{3}", "\\{1, 2\\}", False),
    ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "\\{1, 2\\}", False),
    # a pair of coordinates: in order
    ("x = \\boxed{3}, y = \\boxed{4}", "(3, 4)", False),  # 'y =' is not a connector: only the last box
    ("\\boxed{3}, \\boxed{4}", "(3,4)", True),
    ("\\boxed{4}, \\boxed{3}", "(3,4)", False),
    # a hedge against a single gold is wrong, even when one of them is right
    ("\\boxed{2} or \\boxed{3}", "3", False),
    ("\\boxed{3}\\boxed{3}", "3", False),
    # an interval is not two boxes
    ("\\boxed{1}, \\boxed{2}", "[1,2]", False),
    # an earlier box followed by words is an intermediate result: the last box answers
    ("we get \\boxed{3}, so the answer is \\boxed{5}", "5", True),
    ("\\boxed{2\\sqrt{3}} and \\boxed{\\frac{\\pi}{2}}", "(\\sqrt{12}, \\frac{\\pi}{2})", True),  # symbolic elements
]


@pytest.mark.parametrize("completion, gold, correct", tiered(SEVERAL_BOXES, lambda c: c))
def test_several_boxes(completion, gold, correct):
    result = score(completion, gold, timeout_s=10)
    assert result.correct is correct, result
    assert result.reason in ("correct", "wrong")


def test_thousands_separators_in_the_fallbacks():
    config = RewardConfig(fallback=["answer_line", "last_number"])
    minerva = "Final Answer: The final answer is $10,455$. I hope it is correct."
    assert score(minerva, "10455", config=config).correct
    assert score("so she has 10,455 dollars", "10455", config=RewardConfig(fallback=["last_number"])).correct
    # a list of numbers is not a number with separators: the last number is 3
    assert score("the roots are 1,2,3", "123", config=RewardConfig(fallback=["last_number"])).answer == "3"


def test_reward_metrics_by_hand():
    from rewards.verify import RewardResult, reward_metrics

    results = [
        RewardResult(True, 1.1, True, "4", "correct"),
        RewardResult(False, 0.1, True, "5", "wrong"),
        RewardResult(False, 0.0, False, None, "no_answer"),
        RewardResult(True, 1.0, False, "4", "correct"),
    ]
    metrics = reward_metrics(results)
    mean = (1.1 + 0.1 + 0.0 + 1.0) / 4  # 0.55
    assert metrics["reward/mean"] == pytest.approx(mean)
    # population std: deviations 0.55, -0.45, -0.55, 0.45 -> sqrt((0.3025 + 0.2025) * 2 / 4)
    assert metrics["reward/std"] == pytest.approx(((0.3025 + 0.2025) / 2) ** 0.5)
    assert metrics["reward/accuracy"] == 0.5 and metrics["reward/format"] == 0.5
    assert metrics["reward/no_answer_rate"] == 0.25
