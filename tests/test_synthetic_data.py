"""The offline geometry generator: distinct, reproducible, disjoint splits, verifiable answers."""

import hashlib
import time

import pytest

from prompts.problems import Problem, format_prompt
from prompts.synthetic import FAMILIES, generate
from rewards.equivalence import answers_match
from rewards.verify import score


@pytest.fixture(scope="module")
def full_set():
    started = time.perf_counter()
    train, test = generate(10_000, 500, seed=0)
    return train, test, time.perf_counter() - started


def test_ten_thousand_distinct_train_and_500_test(full_set):
    train, test, elapsed = full_set
    assert (len(train), len(test)) == (10_000, 500)
    assert elapsed < 30, f"generation took {elapsed:.1f} s"
    questions = [p.question for p in train]
    assert len(set(questions)) == len(questions)
    assert not {p.question for p in test} & set(questions)  # train and test share no problem
    assert len({p.id for p in train + test}) == 10_500


def test_at_least_ten_families_with_every_level(full_set):
    train, _, _ = full_set
    assert len(FAMILIES) >= 10
    seen = {(p.meta["family"], p.meta["level"]) for p in train}
    assert seen == {(family, level) for family in FAMILIES for level in (1, 2, 3)}


def test_reproducible_for_a_seed():
    first, second, other = generate(300, 20, seed=7), generate(300, 20, seed=7), generate(300, 20, seed=8)
    assert first == second
    assert [p.question for p in first[0]] != [p.question for p in other[0]]


def test_split_is_stable_across_sizes():
    """A problem's split depends on its parameters, so a bigger set never moves a test problem to train."""
    _, small_test = generate(200, 30, seed=3)
    big_train, _ = generate(5000, 100, seed=4)
    assert not {p.question for p in small_test} & {p.question for p in big_train}


def test_every_gold_answer_and_worked_solution_scores_correct(full_set):
    train, test, _ = full_set
    for problem in train + test:  # fast paths in-process; symbolic answers through the checker
        assert answers_match(problem.answer, problem.answer), problem
    for problem in train[:300] + test:
        for solution in (problem.solution, problem.meta["verbose_solution"]):
            result = score(solution, problem.answer, timeout_s=10)
            assert result.correct, (problem, result)


def test_symbolic_answers_are_exact():
    train, _ = generate(1000, 10, seed=1, families=["circle", "right_triangle", "isosceles_base_angle"])
    answers = {p.answer for p in train}
    assert any("\\pi" in a for a in answers)
    assert any("\\sqrt" in a for a in answers)
    assert any("\\frac" in a for a in answers)  # odd apex angles give halves
    circle = next(p for p in train if p.meta["family"] == "circle" and p.meta["level"] == 1)
    radius = int(circle.question.split("radius ")[1].split()[0].rstrip("?"))
    assert circle.answer == f"{radius * radius} \\pi"


def test_bad_requests_name_the_problem():
    with pytest.raises(ValueError, match="unknown families \\['hexagons'\\]"):
        generate(10, 1, families=["hexagons"])
    with pytest.raises(ValueError, match="levels"):
        generate(10, 1, levels=(4,))
    with pytest.raises(ValueError, match="distinct problems"):
        generate(5000, 10, families=["vertical_angles"], levels=(1,))


def test_prompt_template_fills_question_and_choices():
    problem = Problem(id="1", question="Find x.", answer="B", choices=("30", "45", "60"))
    text = format_prompt(problem, "Q: {question}{choices}\nPut it in \\boxed{}.")
    assert text == "Q: Find x.\n(A) 30 (B) 45 (C) 60\nPut it in \\boxed{}."
    assert format_prompt(Problem(id="2", question="Find y.", answer="1"), "{question}{choices}") == "Find y."


def test_chat_template_wraps_the_prompt():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from prompts.problems import render_prompt

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    problem = Problem(id="1", question="Find x.", answer="1")
    assert render_prompt(problem, "{question}") == "Find x."
    with pytest.raises(ValueError, match="chat template"):
        render_prompt(problem, "{question}", tokenizer=tokenizer, chat_template=True)
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    assert (
        render_prompt(problem, "{question}", tokenizer=tokenizer, chat_template=True) == "<|user|>Find x.<|assistant|>"
    )


def test_a_mix_of_family_level_pairs_and_a_larger_held_out_share():
    from collections import Counter

    from prompts.config import SyntheticSource
    from prompts.synthetic import is_test_question

    source = SyntheticSource(
        num_train=400, num_test=100, test_buckets=5, mix=["triangle_angle_sum:1", "supplementary_angles:2"]
    )
    assert source.pairs() == [("triangle_angle_sum", 1), ("supplementary_angles", 2)]
    train, test = generate(400, 100, seed=0, mix=source.pairs(), test_buckets=5)
    drawn = Counter((p.meta["family"], p.meta["level"]) for p in train + test)
    assert set(drawn) == {("triangle_angle_sum", 1), ("supplementary_angles", 2)}  # never triangle level 2
    assert all(is_test_question(p.question, 5) for p in test)
    assert not any(is_test_question(p.question, 5) for p in train)
    assert not {p.question for p in train} & {p.question for p in test}
    # the default draw is pinned: a change to it must bump GENERATOR_VERSION (cached warm starts are
    # keyed on it). This digest: GENERATOR_VERSION 2.
    default_train, default_test = generate(50, 5, seed=2)
    text = "\n".join(p.question + p.answer for p in default_train + default_test)
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == "10fdf5e8d44819bf"
    with pytest.raises(ValueError, match="'circle:4' is not family:level"):
        SyntheticSource(mix=["circle:4"])
    with pytest.raises(ValueError, match="'hexagon:1' is not family:level"):
        SyntheticSource(mix=["hexagon:1"])


def test_pair_angle_questions_name_the_supplement_and_the_complement():
    from prompts.synthetic import generate

    train, _ = generate(120, 5, seed=0, families=["supplementary_angles", "complementary_angles"], levels=(1,))
    named = {word for p in train for word in ("supplement ", "complement ") if f"Find the {word}" in p.question}
    assert named == {"supplement ", "complement "}
    assert not any("menment" in p.question for p in train)


def test_level_zero_is_one_digit_plain_problems_of_the_families_that_have_it():
    import re

    from prompts.config import SyntheticSource
    from prompts.plain import PLAIN

    train, test = generate(300, 20, seed=0, levels=(0,))
    assert {p.meta["family"] for p in train} == set(PLAIN) and {p.meta["level"] for p in train + test} == {0}
    for problem in train + test:
        operands = [int(n) for n in re.findall(r"\d+", problem.question)]
        # one-digit sides, or angles in tens
        assert all(n <= 9 or n % 10 == 0 for n in operands), problem.question
        for solution in (problem.solution, problem.meta["verbose_solution"], problem.meta["elaborate_solution"]):
            assert score(solution, problem.answer, timeout_s=10).correct, problem  # integers: the fast path
    with pytest.raises(ValueError, match="level 0 exists for .* only, not circle"):
        generate(10, 2, families=["circle"], levels=(0,))
    with pytest.raises(ValueError, match="data.source.levels: level 0 exists for .* only, not circle"):
        SyntheticSource(families=["circle", "rectangle"], levels=[0, 1])
    with pytest.raises(ValueError, match="level 0 with other levels needs data.source.families"):
        SyntheticSource(levels=[0, 1])
    assert SyntheticSource(mix=["rectangle:0", "circle:1"]).pairs() == [("rectangle", 0), ("circle", 1)]


def test_elaborate_solutions_check_the_result_with_true_arithmetic_and_run_longer():
    import re

    from prompts.plain import PLAIN, rectangle, supplementary_angles

    train, _ = generate(300, 0, seed=1, levels=(0,))
    families = set()
    for problem in train:
        elaborate = problem.meta["elaborate_solution"]
        families.add(problem.meta["family"])
        lines = elaborate.split("\n")
        assert lines[1].startswith("Step 1: ") and lines[2].startswith("Step 2: ")
        check = next(line for line in lines if line.startswith("Let me check"))
        # every "a op b ... = c" in the check is true arithmetic (× is *, one-digit and tens operands)
        for left, right in re.findall(r"([\d+×/ -]+?) = (\d+)", check):
            assert eval(left.replace("×", "*")) == int(right), check  # digits and operators only, matched above
        assert len(elaborate) > 1.5 * len(problem.meta["verbose_solution"]) > 1.5 * len(problem.solution)
    assert families == set(PLAIN)
    # the rectangle's check divides back to a side; the supplementary check adds back to 180
    import random

    area = rectangle(random.Random(3))
    assert area.question == "A rectangle has length 5 and width 4. What is its area?"
    assert area.check == "Dividing back, 20 / 5 = 4, which is the width."
    angles = supplementary_angles(random.Random(0))
    x = int(re.search(r"(\d+) degrees", angles.question).group(1))
    assert angles.check == f"Adding them back, {x} + {180 - x} = 180 degrees, so the two angles are supplementary."
    # levels 1-3 have no check, hence no elaborate solution: the tiny model's data is unchanged
    hard, _ = generate(20, 0, seed=0)
    assert not any("elaborate_solution" in p.meta for p in hard)
