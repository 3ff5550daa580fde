"""Answer extraction from untrusted text."""

import pytest

from rewards.extract import extract_answer, last_boxed


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so the answer is \\boxed{42}.", ("42", "boxed")),
        ("\\boxed{1} then \\boxed{\\frac{3}{4}}", ("\\frac{3}{4}", "boxed")),  # the last one
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", ("\\frac{\\sqrt{3}}{2}", "boxed")),  # nested braces
        ("\\fbox{7}", ("7", "fbox")),
        ("\\boxed {12}", ("12", "boxed")),  # space before the brace
        ("\\boxed{\\{1, 2\\}}", ("\\{1, 2\\}", "boxed")),  # escaped braces are not groups
        ("\\boxed{3} and later \\boxed{unclosed", ("3", "boxed")),  # cut-off box: the closed one
        ("\\boxed{\\boxed{5}}", ("\\boxed{5}", "boxed")),  # outer box wins
        ("\\boxedx{5}", None),  # a different command
    ],
)
def test_last_boxed(text, expected):
    found = last_boxed(text)
    assert found == expected


def test_fallbacks_in_order():
    text = "Work...\nAnswer: 17 cm\nso maybe 18"
    assert extract_answer(text).answer is None  # boxed only by default
    assert extract_answer(text, ["answer_line"]).answer == "17 cm"
    assert extract_answer(text, ["last_number"]).answer == "18"
    assert extract_answer(text, ["answer_line", "last_number"]).method == "answer_line"
    assert extract_answer("Final answer: 3/4.", ["answer_line"]).answer == "3/4"
    assert extract_answer("no digits here", ["answer_line", "last_number"]).answer is None
    boxed = extract_answer("Answer: 1 \\boxed{2}", ["answer_line"])
    assert (boxed.answer, boxed.boxed) == ("2", True)


def test_empty_box_is_no_answer():
    assert extract_answer("\\boxed{}").answer is None
    assert extract_answer("\\boxed{   }").answer is None


def test_hostile_text_is_linear():
    import time

    hostile = ["\\boxed{" * 200_000, "{" * 500_000 + "}" * 10, "\\" * 1_000_000, "x" * 2_000_000]
    hostile += ["answer is " * 200_000, "answer is $" * 100_000, "answer is \\(" * 100_000, "1=" * 500_000]
    for text in hostile:
        started = time.perf_counter()
        extract_answer(text, ["answer_line", "answer_is", "last_number"])
        assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize(
    "text, expected",
    [
        # how an instruct model ends: the clause after the LAST "answer is", to its sentence's end
        ("7 x 3 is 21. So, the answer is 21 square units.", "21"),
        ("The area is 3 x 4 = 12.\n\nThe answer is 12.", "12"),
        ("The answer is 7 × 3 = 21.", "21"),  # the result after the last "="
        ("Therefore, the final answer is: $\\frac{1}{2}$.", "\\frac{1}{2}"),  # a math span as written
        ("The answer is \\(60^\\circ\\).", "60^\\circ"),
        ("So the answer is 1,000.", "1,000"),  # a thousands separator is not the clause's end
        ("The answer is 2.5 cm.", "2.5"),  # a decimal point is not a sentence's end
        ("First the answer is 5. Then, checking again, the answer is 6.", "6"),
        # no single stated answer: nothing, never a guess
        ("The answer is 3 or 4.", None),
        ("The answer is twenty-one.", None),
        ("The area is 21.", None),
        ("The answer is\n21", None),  # the clause ends at the line's end
    ],
)
def test_answer_is_reads_the_stated_answer_or_nothing(text, expected):
    assert extract_answer(text, ["answer_is"]).answer == expected
    if expected is not None:
        assert extract_answer(text, ["answer_is"]).method == "answer_is"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Area = Length × Width = 9 × 7 = 63. This shows how area works.", "63"),  # the last "=" result
        ("the square of 2, which equals 4.", "4"),
        ("so the area is 7 × 8, which is 56 square units.", "56"),
        ("Therefore, the volume is $7^3 = 343$.", "343"),  # inside a math span too
        ("which equals $\\frac{1}{2}$.", "\\frac{1}{2}"),  # a math span as written
        ("The area is 3 x 4 = 12. Double it: 24.", "12"),  # "Double it: 24" states no result
        # no computed result: nothing
        ("The base is 2 and the height is 6.", None),  # a bare "is" restates the givens
        ("The perimeter = 2 times (length + width).", None),  # an operator word continues it
        ("The area = 2 × 3 + x", None),
    ],
)
def test_last_statement_reads_the_last_computed_result_or_nothing(text, expected):
    assert extract_answer(text, ["last_statement"]).answer == expected
