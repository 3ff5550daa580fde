"""Diagrams drawn from a problem's numbers (prompts.figures) and the problems that need them
(prompts.diagrams): the geometry by hand, rendering deterministic and unclipped, figure-only
texts that leave the numbers to the picture."""

import json
import math
import re

import numpy as np
import pytest
import sympy

from prompts.diagrams import generate_diagrams
from prompts.figures import LABEL_CELL, Figure, png_bytes, render, triangle_vertices


def test_triangle_vertices_by_hand():
    # 60/60: equilateral with AB = 1, so C = (1/2, sqrt(3)/2)
    a, b, c = triangle_vertices(60, 60)
    assert a == (0.0, 0.0) and b == (1.0, 0.0)
    assert c == pytest.approx((0.5, math.sqrt(3) / 2))
    # 50/70: the angles measured back from the vertices are the ones asked for
    a, b, c = triangle_vertices(50, 70)

    def angle(at, p, q):
        u, v = (p[0] - at[0], p[1] - at[1]), (q[0] - at[0], q[1] - at[1])
        return math.degrees(math.acos((u[0] * v[0] + u[1] * v[1]) / (math.hypot(*u) * math.hypot(*v))))

    assert (angle(a, b, c), angle(b, a, c), angle(c, a, b)) == pytest.approx((50, 70, 60))


@pytest.mark.parametrize(
    "figure",
    [
        Figure("triangle", (50, 70), {"A": "50°", "B": "70°", "C": "x"}),
        Figure("rectangle", (7, 3), {"width": "7", "height": "x"}),
        Figure("circle", (5,), {"radius": "5"}),
        Figure("line", (35, 0), {"a": "35°", "b": "x"}),
    ],
)
def test_rendering_is_deterministic_unclipped_and_shows_its_labels(figure):
    image = render(figure, size=112)
    assert image.size == (112, 112) and image.mode == "RGB"
    assert png_bytes(render(figure, size=112)) == png_bytes(image)  # the same pixels every time
    ink = np.asarray(image).min(axis=-1) < 128  # [H, W] dark pixels
    assert ink.sum() > 100  # something was drawn
    assert not ink[:2].any() and not ink[-2:].any() and not ink[:, :2].any() and not ink[:, -2:].any()  # unclipped
    # a label is visible: another value in its place changes the picture
    key = sorted(figure.labels)[0]
    other = Figure(figure.kind, figure.shape, {**figure.labels, key: "99"})
    assert (np.asarray(render(other, size=112)) != np.asarray(image)).any()
    assert Figure.from_json(json.loads(json.dumps(figure.to_json()))) == figure


def test_bad_figures_name_what_is_wrong():
    with pytest.raises(ValueError, match="kind must be one of"):
        Figure("hexagon", (1,))
    with pytest.raises(ValueError, match="a circle takes 1 positive numbers"):
        Figure("circle", (1, 2))
    with pytest.raises(ValueError, match="leave no third angle"):
        Figure("triangle", (100, 80))
    with pytest.raises(ValueError, match="leaves no angle on its other side"):
        Figure("line", (180, 0))


def test_figure_only_problems_leave_the_numbers_to_the_picture():
    train, test = generate_diagrams(60, 10, seed=3, figure_only=True)
    assert (len(train), len(test)) == (60, 10)
    keys = [p.question + json.dumps(p.meta["figure"], sort_keys=True) for p in train + test]
    assert len(set(keys)) == 70  # distinct problems, no problem in both splits
    families = {p.meta["family"] for p in train}
    assert families == {
        "triangle_angles_figure",
        "supplementary_angle_figure",
        "rectangle_side_figure",
        "circle_area_figure",
    }
    for problem in train:
        figure = Figure.from_json(problem.meta["figure"])
        numbers = set(re.findall(r"\d+", problem.question))
        if figure.kind == "triangle":  # the answer from the drawn angles: 180 - A - B
            assert problem.answer == str(180 - figure.shape[0] - figure.shape[1])
            assert not numbers  # "Find x, the angle at C in the figure, in degrees."
        elif figure.kind == "rectangle":  # x = area / width, the width only in the picture
            assert problem.answer == str(figure.shape[1]) and figure.labels["height"] == "x"
            assert numbers == {str(figure.shape[0] * figure.shape[1])}
        elif figure.kind == "line":  # x = 180 - a, a only in the picture
            assert problem.answer == str(180 - figure.shape[0]) and figure.labels == {
                "a": f"{figure.shape[0]}°",
                "b": "x",
            }
            assert not numbers and figure.shape[1] % 15 == 0
        else:  # area in terms of pi from the radius in the picture
            assert problem.answer == sympy.latex(figure.shape[0] ** 2 * sympy.pi)
            assert not numbers
    again, _ = generate_diagrams(60, 10, seed=3, figure_only=True)
    assert [p.meta["figure"] for p in again] == [p.meta["figure"] for p in train]  # seeded


def test_text_and_figure_problems_state_the_numbers_too():
    train, _ = generate_diagrams(20, 2, seed=0, figure_only=False, families=["triangle_angles_figure"])
    for problem in train:
        a, b = problem.meta["figure"]["shape"]
        assert f"angle A is {a} degrees and angle B is {b} degrees" in problem.question
        assert problem.meta["figure_only"] is False
    with pytest.raises(ValueError, match="unknown diagram families"):
        generate_diagrams(1, 1, families=["hexagon"])


def _label_cell(figure: Figure, key: str, size: int) -> tuple[int, int]:
    """The 28-pixel cell (column, row) where ``figure``'s label ``key`` is drawn: the pixels that
    change when only that label does."""
    other = Figure(figure.kind, figure.shape, {**figure.labels, key: "99"})
    rows, cols = np.nonzero((np.asarray(render(figure, size)) != np.asarray(render(other, size))).any(axis=-1))
    assert rows.size, f"label {key} not drawn"
    cell = {(c // LABEL_CELL, r // LABEL_CELL) for r, c in zip(rows, cols)}
    assert len(cell) == 1, f"label {key} spans cells {sorted(cell)}"  # never across a token's border
    return cell.pop()


def test_a_label_is_the_same_pixels_in_its_own_cell_wherever_the_shape_puts_it():
    size = 224
    # "35°" at A of a wide triangle and at B of a tall one: different cells, the same cell pixels
    wide = Figure("triangle", (35, 30), {"A": "35°", "B": "30°", "C": "x"})
    tall = Figure("triangle", (80, 35), {"A": "80°", "B": "35°", "C": "x"})
    at_a, at_b = _label_cell(wide, "A", size), _label_cell(tall, "B", size)
    assert at_a != at_b

    def cell_pixels(figure, cell):
        col, row = cell
        return np.asarray(render(figure, size))[
            row * LABEL_CELL : (row + 1) * LABEL_CELL, col * LABEL_CELL : (col + 1) * LABEL_CELL
        ]

    assert (cell_pixels(wide, at_a) == cell_pixels(tall, at_b)).all()
    assert (cell_pixels(wide, at_a) < 128).any()  # ink: the label, on its cleared cell
    # every label of a figure in a cell of its own, whatever the shape (two triangles, a rectangle)
    for figure in (wide, tall, Figure("rectangle", (12, 2), {"width": "12", "height": "x"})):
        cells = [_label_cell(figure, key, size) for key in figure.labels]
        assert len(set(cells)) == len(cells)


def test_a_lines_labels_sit_inside_their_own_angles():
    """The line's two angles (a counter-clockwise from its direction, then b = 180 - a up to its
    other half): each label's cell, seen from the point on the line, lies inside its angle."""
    size = 224
    for a, direction in [(35, 0), (80, 135), (60, 270), (20, 90)]:
        figure = Figure("line", (a, direction), {"a": f"{a}°", "b": "x"})
        for key, start, opening in (("a", direction, a), ("b", direction + a, 180 - a)):
            col, row = _label_cell(figure, key, size)
            x, y = (col + 0.5) * LABEL_CELL - size / 2, size / 2 - (row + 0.5) * LABEL_CELL  # y up
            bearing = (math.degrees(math.atan2(y, x)) - start) % 360
            assert 0 < bearing < opening, (a, direction, key, bearing)
