"""Level 0 of the synthetic families: one step, one-digit operands, plain wording.

Levels 1-3 ask for 73 x 98 or the hypotenuse of 120 and 350; a small pretrained instruct model
(SmolLM2-135M-Instruct) was right on 1 of 312 of those before any RL. On one-digit problems in
plain words it states an answer most of the time and is right on some: mixed groups, which RL
needs. Each draft carries a worked solution in full sentences, the kind of text an instruct
model writes, for the warm start's SFT, and a check of its result (the same number reached
another way), from which the elaborate solution -- the long end of the SFT data's lengths --
is written.
"""

from __future__ import annotations

import random

import sympy

from prompts.draft import Draft


def _one_of(rng: random.Random, options: list[str]) -> str:
    return options[rng.randrange(len(options))]


def triangle_angle_sum(rng: random.Random) -> Draft:
    a = 10 * rng.randint(2, 9)
    b = 10 * rng.randint(1, (170 - a) // 10)
    c = 180 - a - b
    q = _one_of(
        rng,
        [
            f"A triangle has two angles of {a} degrees and {b} degrees. What is the third angle in degrees?",
            f"Two angles of a triangle are {a} degrees and {b} degrees. How many degrees is the third angle?",
        ],
    )
    return Draft(
        q,
        sympy.Integer(c),
        (f"the angles {a} and {b} degrees",),
        ("The angles of a triangle add up to 180 degrees.", f"So the third angle is 180 - {a} - {b} = {c} degrees."),
        f"Adding the three angles, {a} + {b} + {c} = 180 degrees, as it must be.",
    )


def _pair(total: int, name: str, noun: str):
    def family(rng: random.Random) -> Draft:
        x = 10 * rng.randint(1, total // 10 - 1)
        q = _one_of(
            rng,
            [
                f"Two angles are {name}. One angle is {x} degrees. What is the other angle in degrees?",
                f"What is the {noun} of an angle of {x} degrees?",
            ],
        )
        return Draft(
            q,
            sympy.Integer(total - x),
            (f"one angle of {x} degrees",),
            (
                f"{name.capitalize()} angles add up to {total} degrees.",
                f"So the other angle is {total} - {x} = {total - x} degrees.",
            ),
            f"Adding them back, {x} + {total - x} = {total} degrees, so the two angles are {name}.",
        )

    return family


supplementary_angles = _pair(180, "supplementary", "supplement")
complementary_angles = _pair(90, "complementary", "complement")


def rectangle(rng: random.Random) -> Draft:
    w, h = rng.randint(2, 9), rng.randint(2, 9)
    if rng.random() < 0.5:
        return Draft(
            f"A rectangle has length {w} and width {h}. What is its area?",
            sympy.Integer(w * h),
            (f"length {w}", f"width {h}"),
            ("The area of a rectangle is length times width.", f"So the area is {w} × {h} = {w * h}."),
            f"Dividing back, {w * h} / {w} = {h}, which is the width.",
        )
    return Draft(
        f"A rectangle has length {w} and width {h}. What is its perimeter?",
        sympy.Integer(2 * (w + h)),
        (f"length {w}", f"width {h}"),
        (
            "The perimeter of a rectangle is 2 times (length + width).",
            f"So the perimeter is 2 × ({w} + {h}) = {2 * (w + h)}.",
        ),
        f"Going around the four sides, {w} + {h} + {w} + {h} = {2 * (w + h)}.",
    )


def triangle_area(rng: random.Random) -> Draft:
    b, h = rng.randint(2, 9), rng.randint(2, 9)
    if (b * h) % 2:
        return triangle_area(rng)
    return Draft(
        f"A triangle has base {b} and height {h}. What is its area?",
        sympy.Integer(b * h // 2),
        (f"base {b}", f"height {h}"),
        ("The area of a triangle is half of base times height.", f"So the area is {b} × {h} / 2 = {b * h // 2}."),
        f"Two such triangles make a rectangle of area {b} × {h} = {b * h}, and 2 × {b * h // 2} = {b * h}.",
    )


def solid_volume(rng: random.Random) -> Draft:
    s = rng.randint(2, 9)
    return Draft(
        f"A cube has edges of length {s}. What is its volume?",
        sympy.Integer(s**3),
        (f"edge {s}",),
        ("The volume of a cube is edge × edge × edge.", f"So the volume is {s} × {s} × {s} = {s**3}."),
        f"Step by step, {s} × {s} = {s * s}, and {s * s} × {s} = {s**3}.",
    )


PLAIN = {
    "triangle_angle_sum": triangle_angle_sum,
    "supplementary_angles": supplementary_angles,
    "complementary_angles": complementary_angles,
    "rectangle": rectangle,
    "triangle_area": triangle_area,
    "solid_volume": solid_volume,
}
"""The families that have a level 0."""
