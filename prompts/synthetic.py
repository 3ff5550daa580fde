"""Synthetic geometry problems with exact answers: the offline default prompt set.

Each family draws parameters for a difficulty level (0 = one step, one-digit operands, plain
words: ``prompts.plain``, for some families; 1 = one step with round numbers, 2 = one step with
any numbers or a second quantity, 3 = two steps or solving for an unknown) and returns the question, the exact answer (sympy) and worked-solution steps.
Reproducible for a seed; train and test never share a problem, because the split is a
hash of the problem text, not of the draw order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import sympy
from sympy import Rational, pi, sqrt

from prompts.draft import Draft, worked_solutions
from prompts.plain import PLAIN
from prompts.problems import Problem

LEVELS = (0, 1, 2, 3)
DEFAULT_LEVELS = (1, 2, 3)  # level 0 is asked for by name
# Bumped whenever a change alters the generated text or answers (caches keyed on the data, such
# as the warm start, are then rebuilt). 2: "supplement"/"complement" (were "supplemenment").
GENERATOR_VERSION = 2
TEST_BUCKETS = 20  # 1 in 20 parameter sets is reserved for the test split


def _pick(rng: random.Random, options: list[str]) -> tuple[int, str]:
    index = rng.randrange(len(options))
    return index, options[index]


def _deg(value) -> str:
    return f"{sympy.latex(sympy.nsimplify(value))}^\\circ"


def triangle_angle_sum(rng: random.Random, level: int) -> Draft:
    if level == 3:  # exterior angle theorem
        a = rng.randint(10, 120)
        e = rng.randint(a + 5, 175)
        t, q = _pick(
            rng,
            [
                f"In triangle ABC the exterior angle at C measures {e} degrees and angle A measures {a} degrees. Find angle B in degrees.",
                f"An exterior angle of a triangle is {e}°. One remote interior angle is {a}°. What is the other remote interior angle, in degrees?",
            ],
        )
        return Draft(
            q,
            sympy.Integer(e - a),
            (f"exterior angle {e}°", f"angle A = {a}°"),
            (f"An exterior angle equals the sum of the two remote interior angles, so B = {e} - {a} = {e - a}.",),
        )
    step = 5 if level == 1 else 1
    a = rng.randrange(step, 170, step)
    b = rng.randrange(step, 180 - a, step) if 180 - a > step else step
    c = 180 - a - b
    if c <= 0:
        return triangle_angle_sum(rng, level)
    t, q = _pick(
        rng,
        [
            f"In triangle ABC, angle A is {a} degrees and angle B is {b} degrees. What is the measure of angle C in degrees?",
            f"Two angles of a triangle measure {a}° and {b}°. Find the third angle in degrees.",
            f"A triangle has angles of {a} and {b} degrees. How many degrees is its third angle?",
        ],
    )
    return Draft(
        q,
        sympy.Integer(c),
        (f"angle A = {a}°", f"angle B = {b}°"),
        ("The angles of a triangle add up to 180 degrees.", f"So C = 180 - {a} - {b} = {c}."),
    )


def _pair_angles(total: int, name: str) -> Callable[[random.Random, int], Draft]:
    def family(rng: random.Random, level: int) -> Draft:
        if level == 3:  # one angle is k degrees more than m times the other
            m = rng.randint(1, 4)
            small = rng.randint(1, (total - 1) // (m + 1))
            k = total - small * (m + 1)
            if k <= 0:
                return family(rng, level)
            large = m * small + k
            t, q = _pick(
                rng,
                [
                    f"Two angles are {name}. One is {k} degrees more than {m} times the other. Find the larger angle in degrees.",
                    f"Angles P and Q are {name}, and P = {m}Q + {k} degrees. What is P in degrees?",
                ],
            )
            return Draft(
                q,
                sympy.Integer(large),
                (f"the angles are {name}", f"P = {m}Q + {k}"),
                (
                    f"{name.capitalize()} angles add to {total}, so {m + 1}Q + {k} = {total} and Q = {small}.",
                    f"Then P = {m} * {small} + {k} = {large}.",
                ),
            )
        x = rng.randrange(5, total, 5) if level == 1 else Rational(rng.randrange(2, 2 * total - 1), 2)
        answer = total - x
        t, q = _pick(
            rng,
            [
                f"Two angles are {name}. One measures {sympy.latex(x)} degrees. What is the other, in degrees?",
                f"Find the {name.removesuffix('ary')} of an angle of {sympy.latex(x)}°, in degrees.",
                f"Angle X and angle Y are {name}. If X = {sympy.latex(x)} degrees, find Y in degrees.",
            ],
        )
        return Draft(
            q,
            sympy.nsimplify(answer),
            (f"the angles are {name}", f"X = {_deg(x)}"),
            (
                f"{name.capitalize()} angles add to {total} degrees.",
                f"So Y = {total} - {sympy.latex(x)} = {sympy.latex(answer)}.",
            ),
        )

    family.__name__ = name
    return family


supplementary_angles = _pair_angles(180, "supplementary")
complementary_angles = _pair_angles(90, "complementary")


def vertical_angles(rng: random.Random, level: int) -> Draft:
    if level == 3:  # (a x + b) and (c x + d) are vertical angles
        x = rng.randint(2, 30)
        a, c = rng.sample(range(1, 8), 2)
        b = rng.randint(0, 40)
        d = a * x + b - c * x
        if not 0 < a * x + b < 180:
            return vertical_angles(rng, level)
        q = f"Two lines cross. A pair of vertical angles measure ({a}x + {b}) degrees and ({c}x + {d}) degrees. Find x."
        return Draft(
            q,
            sympy.Integer(x),
            (f"vertical angles {a}x + {b} and {c}x + {d}",),
            ("Vertical angles are equal.", f"{a}x + {b} = {c}x + {d}, so {a - c}x = {d - b} and x = {x}."),
        )
    x = rng.randint(1, 179)
    if level == 1:
        q = f"Two lines intersect and one of the angles formed is {x} degrees. What is the angle vertical to it, in degrees?"
        return Draft(
            q, sympy.Integer(x), (f"one angle is {x}°",), ("Vertical angles are equal, so it is also", f"{x} degrees.")
        )
    q = f"Two lines intersect and one of the angles formed is {x} degrees. What is an angle adjacent to it, in degrees?"
    return Draft(
        q,
        sympy.Integer(180 - x),
        (f"one angle is {x}°",),
        ("Adjacent angles on a line are supplementary.", f"So it is 180 - {x} = {180 - x}."),
    )


def isosceles_base_angle(rng: random.Random, level: int) -> Draft:
    if level == 3:
        base = rng.randint(1, 89)
        q = f"Each base angle of an isosceles triangle is {base} degrees. What is the vertex angle in degrees?"
        return Draft(
            q,
            sympy.Integer(180 - 2 * base),
            (f"base angles {base}°",),
            ("The two base angles are equal.", f"Vertex = 180 - 2 * {base} = {180 - 2 * base}."),
        )
    apex = rng.randrange(2, 179, 2) if level == 1 else rng.randint(1, 179)
    answer = Rational(180 - apex, 2)
    t, q = _pick(
        rng,
        [
            f"The vertex angle of an isosceles triangle is {apex} degrees. Find one base angle in degrees.",
            f"An isosceles triangle has an apex angle of {apex}°. What is each base angle, in degrees?",
        ],
    )
    return Draft(
        q,
        answer,
        (f"vertex angle {apex}°",),
        (
            "The base angles are equal and the angles sum to 180.",
            f"Each base angle = (180 - {apex}) / 2 = {sympy.latex(answer)}.",
        ),
    )


def polygon_angles(rng: random.Random, level: int) -> Draft:
    n = rng.randint(3, 60)
    total = (n - 2) * 180
    if level == 1:
        t, q = _pick(
            rng,
            [
                f"What is the sum of the interior angles of a polygon with {n} sides, in degrees?",
                f"Find the interior angle sum of a {n}-gon in degrees.",
            ],
        )
        return Draft(
            q, sympy.Integer(total), (f"{n} sides",), (f"The sum is (n - 2) * 180 = ({n} - 2) * 180 = {total}.",)
        )
    if level == 2:
        each = Rational(total, n)
        q = f"What is the measure of each interior angle of a regular polygon with {n} sides, in degrees?"
        return Draft(
            q,
            each,
            (f"regular, {n} sides",),
            (f"The sum is ({n} - 2) * 180 = {total}.", f"Each angle is {total} / {n} = {sympy.latex(each)}."),
        )
    q = f"The interior angles of a convex polygon add up to {total} degrees. How many sides does it have?"
    return Draft(
        q, sympy.Integer(n), (f"angle sum {total}°",), (f"(n - 2) * 180 = {total}, so n - 2 = {n - 2}.", f"n = {n}.")
    )


def rectangle(rng: random.Random, level: int) -> Draft:
    w, h = rng.randint(1, 99), rng.randint(1, 99)
    if level == 1:
        t, q = _pick(
            rng,
            [
                f"A rectangle is {w} cm wide and {h} cm tall. What is its area in square centimeters?",
                f"Find the area of a rectangle with sides {w} and {h}.",
            ],
        )
        return Draft(q, sympy.Integer(w * h), (f"width {w}", f"height {h}"), (f"Area = {w} * {h} = {w * h}.",))
    if level == 2:
        q = f"What is the perimeter of a rectangle with length {w} and width {h}?"
        return Draft(
            q,
            sympy.Integer(2 * (w + h)),
            (f"length {w}", f"width {h}"),
            (f"Perimeter = 2 * ({w} + {h}) = {2 * (w + h)}.",),
        )
    q = f"A rectangle has area {w * h} and width {w}. What is its perimeter?"
    return Draft(
        q,
        sympy.Integer(2 * (w + h)),
        (f"area {w * h}", f"width {w}"),
        (f"Length = {w * h} / {w} = {h}.", f"Perimeter = 2 * ({w} + {h}) = {2 * (w + h)}."),
    )


def triangle_area(rng: random.Random, level: int) -> Draft:
    b, h = rng.randint(1, 99), rng.randint(1, 99)
    area = Rational(b * h, 2)
    if level == 3:
        q = f"A triangle has area {sympy.latex(area)} and base {b}. What is its height?"
        return Draft(
            q,
            sympy.Integer(h),
            (f"area {sympy.latex(area)}", f"base {b}"),
            (f"Height = 2 * area / base = 2 * {sympy.latex(area)} / {b} = {h}.",),
        )
    if level == 1 and (b * h) % 2:
        return triangle_area(rng, level)
    t, q = _pick(
        rng,
        [
            f"A triangle has base {b} and height {h}. What is its area?",
            f"Find the area of a triangle whose base is {b} cm and whose height is {h} cm, in square cm.",
        ],
    )
    return Draft(
        q, area, (f"base {b}", f"height {h}"), (f"Area = base * height / 2 = {b} * {h} / 2 = {sympy.latex(area)}.",)
    )


def trapezoid_area(rng: random.Random, level: int) -> Draft:
    a, b, h = rng.randint(1, 60), rng.randint(1, 60), rng.randint(1, 40)
    area = Rational((a + b) * h, 2)
    if level == 1 and ((a + b) * h) % 2:
        return trapezoid_area(rng, level)
    q = f"A trapezoid has parallel sides {a} and {b} and height {h}. What is its area?"
    return Draft(
        q,
        area,
        (f"bases {a} and {b}", f"height {h}"),
        (f"Area = (a + b) * h / 2 = ({a} + {b}) * {h} / 2 = {sympy.latex(area)}.",),
    )


_TRIPLES = ((3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (9, 40, 41), (12, 35, 37))


def right_triangle(rng: random.Random, level: int) -> Draft:
    if level == 3:  # legs that are not a triple: a surd answer
        a, b = rng.randint(1, 30), rng.randint(1, 30)
        c = sqrt(a * a + b * b)
        q = f"A right triangle has legs {a} and {b}. What is the length of the hypotenuse? Give an exact answer."
        return Draft(
            q,
            c,
            (f"legs {a}, {b}",),
            (f"c^2 = {a}^2 + {b}^2 = {a * a + b * b}.", f"c = \\sqrt{{{a * a + b * b}}} = {sympy.latex(c)}."),
        )
    k = rng.randint(1, 15)
    a, b, c = (k * s for s in rng.choice(_TRIPLES))
    if level == 1:
        q = f"The legs of a right triangle are {a} and {b}. How long is the hypotenuse?"
        return Draft(q, sympy.Integer(c), (f"legs {a}, {b}",), (f"c^2 = {a}^2 + {b}^2 = {c * c}.", f"c = {c}."))
    q = f"A right triangle has hypotenuse {c} and one leg {a}. Find the other leg."
    return Draft(q, sympy.Integer(b), (f"hypotenuse {c}", f"leg {a}"), (f"b^2 = {c}^2 - {a}^2 = {b * b}.", f"b = {b}."))


def circle(rng: random.Random, level: int) -> Draft:
    r = rng.randint(1, 50)
    if level == 1:
        t, q = _pick(
            rng,
            [
                f"What is the area of a circle with radius {r}? Express your answer in terms of \\pi.",
                f"A circle has radius {r} cm. Find its area in terms of pi.",
            ],
        )
        return Draft(q, r * r * pi, (f"radius {r}",), (f"Area = \\pi r^2 = \\pi * {r}^2 = {sympy.latex(r * r * pi)}.",))
    if level == 2:
        d = 2 * r
        q = f"A circle has diameter {d}. What is its circumference, in terms of \\pi?"
        return Draft(q, d * pi, (f"diameter {d}",), (f"Circumference = \\pi d = {sympy.latex(d * pi)}.",))
    q = f"A circle has circumference {sympy.latex(2 * r * pi)}. What is its area, in terms of \\pi?"
    return Draft(
        q,
        r * r * pi,
        (f"circumference {sympy.latex(2 * r * pi)}",),
        (f"r = {sympy.latex(2 * r * pi)} / (2\\pi) = {r}.", f"Area = \\pi r^2 = {sympy.latex(r * r * pi)}."),
    )


def similar_triangles(rng: random.Random, level: int) -> Draft:
    side = rng.randint(2, 40)
    k = sympy.Integer(rng.randint(2, 6)) if level == 1 else Rational(rng.randint(2, 9), rng.randint(2, 5))
    if level == 3:
        area = rng.randint(2, 60)
        answer = area * k**2
        q = f"Two triangles are similar with scale factor {sympy.latex(k)}. The smaller has area {area}. What is the area of the larger?"
        return Draft(
            q,
            answer,
            (f"scale {sympy.latex(k)}", f"area {area}"),
            (
                "Areas scale with the square of the scale factor.",
                f"Area = {area} * ({sympy.latex(k)})^2 = {sympy.latex(answer)}.",
            ),
        )
    answer = side * k
    q = f"Triangle DEF is similar to triangle ABC with scale factor {sympy.latex(k)}. If AB = {side}, what is DE?"
    return Draft(
        q,
        answer,
        (f"scale {sympy.latex(k)}", f"AB = {side}"),
        (f"DE = {sympy.latex(k)} * {side} = {sympy.latex(answer)}.",),
    )


def solid_volume(rng: random.Random, level: int) -> Draft:
    if level == 2:
        r, h = rng.randint(1, 20), rng.randint(1, 30)
        v = r * r * h * pi
        q = f"A cylinder has radius {r} and height {h}. What is its volume, in terms of \\pi?"
        return Draft(
            q, v, (f"radius {r}", f"height {h}"), (f"V = \\pi r^2 h = \\pi * {r}^2 * {h} = {sympy.latex(v)}.",)
        )
    length, w, h = rng.randint(1, 30), rng.randint(1, 30), rng.randint(1, 30)
    if level == 1:
        q = f"A box is {length} by {w} by {h}. What is its volume?"
        return Draft(
            q,
            sympy.Integer(length * w * h),
            (f"dimensions {length}, {w}, {h}",),
            (f"V = {length} * {w} * {h} = {length * w * h}.",),
        )
    q = f"A box has volume {length * w * h}, length {length} and width {w}. What is its height?"
    return Draft(
        q,
        sympy.Integer(h),
        (f"volume {length * w * h}", f"length {length}", f"width {w}"),
        (f"h = {length * w * h} / ({length} * {w}) = {h}.",),
    )


FAMILIES: dict[str, Callable[[random.Random, int], Draft]] = {
    "triangle_angle_sum": triangle_angle_sum,
    "supplementary_angles": supplementary_angles,
    "complementary_angles": complementary_angles,
    "vertical_angles": vertical_angles,
    "isosceles_base_angle": isosceles_base_angle,
    "polygon_angles": polygon_angles,
    "rectangle": rectangle,
    "triangle_area": triangle_area,
    "trapezoid_area": trapezoid_area,
    "right_triangle": right_triangle,
    "circle": circle,
    "similar_triangles": similar_triangles,
    "solid_volume": solid_volume,
}


def is_test_question(question: str, buckets: int = TEST_BUCKETS) -> bool:
    """The split is a hash of the problem text: stable whatever the seed or set size
    (1 in ``buckets`` questions is held out)."""
    digest = hashlib.sha256(question.encode()).digest()
    return int.from_bytes(digest[:4], "big") % buckets == 0


def generate(
    num_train: int,
    num_test: int,
    *,
    seed: int = 0,
    families: list[str] | None = None,
    levels: tuple[int, ...] = DEFAULT_LEVELS,
    mix: list[tuple[str, int]] | None = None,
    test_buckets: int = TEST_BUCKETS,
) -> tuple[list[Problem], list[Problem]]:
    """``num_train`` and ``num_test`` distinct problems, families and levels drawn uniformly
    (or, with ``mix``, (family, level) pairs drawn uniformly).

    Raises ValueError when the requested families and levels cannot supply that many
    distinct problems (after 50x as many draws as problems asked for).
    """
    if mix:
        families, levels = sorted({f for f, _ in mix}), tuple(sorted({v for _, v in mix}))
    names = list(FAMILIES) if not families else families
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; allowed: {sorted(FAMILIES)}")
    bad_levels = sorted(set(levels) - set(LEVELS))
    if bad_levels or not levels:
        raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {list(levels)}")
    if not families and not mix and tuple(levels) == (0,):
        names = list(PLAIN)  # every family at level 0: every family that has one
    plainless = sorted({f for f, v in (mix or [(f, v) for f in names for v in levels]) if v == 0} - set(PLAIN))
    if plainless:
        raise ValueError(
            f"level 0 exists for {', '.join(PLAIN)} only, not {', '.join(plainless)}: choose "
            "data.source.families among them, or a data.source.mix of family:level pairs"
        )
    rng = random.Random(seed)

    def draw() -> tuple[str, Callable[[str], Problem]]:
        # (the families x levels draw keeps its two calls: the default data stays what it was)
        family, level = rng.choice(mix) if mix else (rng.choice(names), rng.choice(levels))
        draft = PLAIN[family](rng) if level == 0 else FAMILIES[family](rng, level)
        answer = sympy.latex(draft.answer)

        def build(problem_id: str) -> Problem:
            solutions = worked_solutions(draft, answer)
            meta = {"family": family, "level": level, "verbose_solution": solutions["verbose"]}
            if "elaborate" in solutions:
                meta["elaborate_solution"] = solutions["elaborate"]
            return Problem(
                id=problem_id, question=draft.question, answer=answer, solution=solutions["concise"], meta=meta
            )

        return draft.question, build  # a problem is its text: equal texts are one problem

    where = f"the mix {mix}" if mix else f"families {names} and levels {list(levels)}"
    return fill_splits(draw, num_train, num_test, test_buckets=test_buckets, source=where)


def fill_splits(
    draw: Callable[[], tuple[str, Callable[[str], Problem]]],
    num_train: int,
    num_test: int,
    *,
    test_buckets: int,
    source: str,
    id_prefix: str = "",
) -> tuple[list[Problem], list[Problem]]:
    """Draw until both splits are full: ``draw()`` gives a problem's identity (its text, plus its
    figure where it has one) and how to build it; a repeated identity is drawn again, and the
    identity's hash picks the split (``is_test_question``). Raises ValueError naming ``source``
    when 50x as many draws as problems asked for do not suffice."""
    train: list[Problem] = []
    test: list[Problem] = []
    seen: set[str] = set()
    budget = 50 * (num_train + num_test) + 1000
    while len(train) < num_train or len(test) < num_test:
        budget -= 1
        if budget < 0:
            raise ValueError(
                f"only {len(train)} train / {len(test)} test distinct problems found for {source}: "
                "ask for fewer or allow more"
            )
        key, build = draw()
        if key in seen:
            continue
        in_test = is_test_question(key, test_buckets)
        split = test if in_test else train
        if len(split) >= (num_test if in_test else num_train):
            continue
        seen.add(key)
        split.append(build(f"{'test' if in_test else 'train'}-{id_prefix}{len(split):06d}"))
    return train, test
