"""Geometry problems that come with a diagram (``prompts.figures``), drawn from the same numbers
as the text. Each family has two forms: ``figure_only=False`` states the numbers in the text
too (the figure illustrates), ``figure_only=True`` leaves them out ("Find x." with x, and the
values it needs, only in the picture), so that a model must read the image to answer.

The figure travels in the problem's ``meta["figure"]`` (``Figure.to_json``); the train/test split
hashes the text and the figure together, since figure-only texts repeat across problems.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import sympy
from sympy import pi

from prompts.draft import Draft, worked_solutions
from prompts.figures import Figure
from prompts.problems import Problem
from prompts.synthetic import fill_splits

Family = Callable[[random.Random, bool], tuple[Draft, Figure]]


def triangle_angles(rng: random.Random, figure_only: bool) -> tuple[Draft, Figure]:
    # two-digit angles (a label fits one 28-pixel cell: prompts.figures), C at least 20 degrees:
    # ~3,000 triangles, so that a small model's SFT cannot get by on remembering figures
    a = rng.randint(20, 99)
    b = rng.randint(20, min(99, 160 - a))
    c = 180 - a - b
    figure = Figure("triangle", (a, b), {"A": f"{a}°", "B": f"{b}°", "C": "x"})
    question = (
        "Find x, the angle at C in the figure, in degrees."
        if figure_only
        else f"In the triangle in the figure, angle A is {a} degrees and angle B is {b} degrees. Find x, the angle C, in degrees."
    )
    steps = ("The angles of a triangle add up to 180 degrees.", f"So x = 180 - {a} - {b} = {c}.")
    return Draft(question, sympy.Integer(c), (f"angle A = {a}°", f"angle B = {b}°"), steps), figure


def supplementary_angle(rng: random.Random, figure_only: bool) -> tuple[Draft, Figure]:
    # one subtraction (a triangle's third angle takes two): a two-digit angle, the line in one
    # of 24 directions, ~2,000 figures of ~90 answers
    a, direction = rng.randint(10, 99), 15 * rng.randrange(24)
    figure = Figure("line", (a, direction), {"a": f"{a}°", "b": "x"})
    question = (
        "The line in the figure is straight. Find x, in degrees."
        if figure_only
        else f"A ray from a point on a straight line makes an angle of {a} degrees with it. "
        "Find x, the other angle, in degrees."
    )
    steps = ("Angles on a straight line add up to 180 degrees.", f"So x = 180 - {a} = {180 - a}.")
    return Draft(question, sympy.Integer(180 - a), (f"the angle is {a}°",), steps), figure


def rectangle_side(rng: random.Random, figure_only: bool) -> tuple[Draft, Figure]:
    w, h = rng.randint(2, 19), rng.randint(2, 19)
    figure = Figure("rectangle", (w, h), {"width": str(w), "height": "x"})
    question = (
        f"The rectangle in the figure has area {w * h}. Find x."
        if figure_only
        else f"The rectangle in the figure is {w} wide and has area {w * h}. Find its height x."
    )
    steps = (f"Area = width * height, so x = {w * h} / {w} = {h}.",)
    return Draft(question, sympy.Integer(h), (f"width {w}", f"area {w * h}"), steps), figure


def circle_area(rng: random.Random, figure_only: bool) -> tuple[Draft, Figure]:
    r = rng.randint(1, 19)
    figure = Figure("circle", (r,), {"radius": str(r)})
    question = (
        "What is the area of the circle in the figure? Express it in terms of \\pi."
        if figure_only
        else f"The circle in the figure has radius {r}. What is its area, in terms of \\pi?"
    )
    steps = (f"Area = \\pi r^2 = \\pi * {r}^2 = {sympy.latex(r * r * pi)}.",)
    return Draft(question, r * r * pi, (f"radius {r}",), steps), figure


DIAGRAM_FAMILIES: dict[str, Family] = {
    "triangle_angles_figure": triangle_angles,
    "supplementary_angle_figure": supplementary_angle,
    "rectangle_side_figure": rectangle_side,
    "circle_area_figure": circle_area,
}


def generate_diagrams(
    num_train: int,
    num_test: int,
    *,
    seed: int = 0,
    figure_only: bool = True,
    families: list[str] | None = None,
    test_buckets: int = 20,
    image_size: int = 224,
) -> tuple[list[Problem], list[Problem]]:
    """``num_train`` and ``num_test`` distinct problems with figures, families drawn uniformly;
    each figure is rendered at ``image_size`` pixels when a prompt needs it
    (``prompts.images.problem_images``). Raises ValueError when the families cannot supply that
    many distinct problems."""
    names = families or list(DIAGRAM_FAMILIES)
    unknown = sorted(set(names) - set(DIAGRAM_FAMILIES))
    if unknown:
        raise ValueError(f"unknown diagram families {unknown}; allowed: {sorted(DIAGRAM_FAMILIES)}")
    rng = random.Random(seed)

    def draw() -> tuple[str, Callable[[str], Problem]]:
        family = rng.choice(names)
        draft, figure = DIAGRAM_FAMILIES[family](rng, figure_only)
        answer = sympy.latex(draft.answer)

        def build(problem_id: str) -> Problem:
            solutions = worked_solutions(draft, answer)
            meta = {
                "family": family,
                "level": 1,
                "figure": figure.to_json(),
                "image_size": image_size,
                "figure_only": figure_only,
                "verbose_solution": solutions["verbose"],
            }
            return Problem(
                id=problem_id, question=draft.question, answer=answer, solution=solutions["concise"], meta=meta
            )

        # the problem is its text and its picture (figure-only texts repeat across problems)
        return draft.question + json.dumps(figure.to_json(), sort_keys=True), build

    return fill_splits(
        draw, num_train, num_test, test_buckets=test_buckets, source=f"families {names}", id_prefix="fig-"
    )
