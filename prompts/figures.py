"""Geometry diagrams drawn from a problem's own parameters (PIL, no fonts to install): a triangle
with its angles labelled at the vertices, a rectangle with its sides, a circle with its radius,
a straight line with a ray from a point on it and the two angles they make.

A ``Figure`` is plain data (kind + labels + the numbers that fix the shape), so it travels in a
problem's ``meta`` as JSON and is rendered where an image is needed; the same figure always
renders to the same pixels (Pillow's bundled font, no anti-aliasing choices left to the machine).

Labels sit in cells of the image's 28-pixel grid (``LABEL_CELL``), on a cleared background, each
written from its cell's corner: a vision-language model in the Qwen2-VL family cuts an image
into 14-pixel patches merged 2 x 2 into one language token, so a label is one token whose
pixels depend on the label alone, wherever the shape puts it. A label written across token
boundaries at any offset is a different picture at every position, which a small vision tower
learning from a few hundred figures cannot read (docs/images.md, measured).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

FIGURE_VERSION = 2  # bump when the same figure renders differently (cached warm starts are keyed on it)
KINDS = ("triangle", "rectangle", "circle", "line")
MARGIN = 0.14  # of the canvas, kept clear around the shape for the labels
LABEL_CELL = 28  # pixels: a Qwen2-VL language token's square (14-pixel patches merged 2 x 2)


@dataclass(frozen=True)
class Figure:
    """``triangle``: ``shape`` = (angle A, angle B) in degrees, ``labels`` for A, B, C (at the
    vertices); ``rectangle``: ``shape`` = (width, height), labels for width, height;
    ``circle``: ``shape`` = (radius,), label for radius; ``line``: ``shape`` = (angle a, the
    line's direction), both in degrees, labels for a (between the line's direction and the ray,
    counter-clockwise) and b (between the ray and the line's other half). A label is what the
    picture shows: a value ("50°", "7") or the unknown ("x")."""

    kind: str
    shape: tuple[float, ...]
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"figure kind must be one of {KINDS}, got {self.kind!r}")
        wanted = {"triangle": 2, "rectangle": 2, "circle": 1, "line": 2}[self.kind]
        sizes = self.shape[:1] if self.kind == "line" else self.shape  # a direction may be anything
        if len(self.shape) != wanted or not all(v > 0 for v in sizes):
            raise ValueError(f"a {self.kind} takes {wanted} positive numbers, got {self.shape}")
        if self.kind == "line" and self.shape[0] >= 180:
            raise ValueError(f"a ray at {self.shape[0]} degrees from a line leaves no angle on its other side")
        if self.kind == "triangle" and self.shape[0] + self.shape[1] >= 180:
            raise ValueError(f"triangle angles {self.shape} leave no third angle")

    def to_json(self) -> dict:
        return {"kind": self.kind, "shape": list(self.shape), "labels": dict(self.labels)}

    @classmethod
    def from_json(cls, data: dict) -> Figure:
        return cls(kind=data["kind"], shape=tuple(data["shape"]), labels=dict(data["labels"]))


def triangle_vertices(angle_a: float, angle_b: float) -> tuple[tuple[float, float], ...]:
    """A, B, C of a triangle with these angles at A and B, AB = 1 along the x axis, C above it
    (y up): C = A + |AC| (cos A, sin A), |AC| = sin B / sin C by the law of sines."""
    angle_c = 180.0 - angle_a - angle_b
    side_ac = math.sin(math.radians(angle_b)) / math.sin(math.radians(angle_c))
    c = (side_ac * math.cos(math.radians(angle_a)), side_ac * math.sin(math.radians(angle_a)))
    return (0.0, 0.0), (1.0, 0.0), c


def render(figure: Figure, size: int = 224) -> Image.Image:
    """The figure on a white ``size`` x ``size`` RGB canvas, black lines and labels."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=min(16, max(10, size // 14)))  # "95°" fits a cell
    width = max(1, size // 112)
    draw_shape = {"triangle": _triangle, "rectangle": _rectangle, "circle": _circle, "line": _line}[figure.kind]
    _draw_labels(draw, draw_shape(draw, figure, size, width), size, font)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _fit(points: list[tuple[float, float]], size: int) -> list[tuple[float, float]]:
    """Scale and centre shape coordinates (y up) into the canvas inside its margins (y down)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    room = size * (1 - 2 * MARGIN)
    scale = room / span
    offset_x = (size - (max(xs) - min(xs)) * scale) / 2
    offset_y = (size - (max(ys) - min(ys)) * scale) / 2
    return [((x - min(xs)) * scale + offset_x, size - ((y - min(ys)) * scale + offset_y)) for x, y in points]


Label = tuple[tuple[float, float], str]  # where the shape wants a label (its centre), the text


def _draw_labels(draw: ImageDraw.ImageDraw, labels: list[Label], size: int, font) -> None:
    """Each label in the free grid cell nearest to where the shape wants it (cleared to white,
    the text from its corner), so that no two labels share a cell."""
    cells = size // LABEL_CELL
    taken: set[tuple[int, int]] = set()
    for (x, y), text in labels:
        free = [(col, row) for col in range(cells) for row in range(cells) if (col, row) not in taken]
        col, row = min(free, key=lambda c: ((c[0] + 0.5) * LABEL_CELL - x) ** 2 + ((c[1] + 0.5) * LABEL_CELL - y) ** 2)
        taken.add((col, row))
        left, top = col * LABEL_CELL, row * LABEL_CELL
        draw.rectangle([left, top, left + LABEL_CELL - 1, top + LABEL_CELL - 1], fill="white")
        draw.text((left + 2, top + 2), text, fill="black", font=font, anchor="la")


def _triangle(draw, figure: Figure, size: int, width: int) -> list[Label]:
    a, b, c = _fit(list(triangle_vertices(*figure.shape)), size)
    draw.polygon([a, b, c], outline="black", width=width)
    centre = ((a[0] + b[0] + c[0]) / 3, (a[1] + b[1] + c[1]) / 3)
    angles = (*figure.shape, 180.0 - sum(figure.shape))
    labels: list[Label] = []
    for name, vertex, others, angle in zip("ABC", (a, b, c), ((b, c), (a, c), (a, b)), angles):
        # the angle's label inside, on the bisector, farther in for a narrow angle so that it
        # sits between the two sides (placed first: the values matter more than the names);
        # the vertex's name outside the shape
        if figure.labels.get(name):
            bisector = _bisector(vertex, *others)
            depth = size * 0.07 / max(math.sin(math.radians(angle) / 2), 0.25)
            labels.insert(0, ((vertex[0] + bisector[0] * depth, vertex[1] + bisector[1] * depth), figure.labels[name]))
        labels.append((_towards(vertex, centre, -size * 0.06), name))
    return labels


def _rectangle(draw, figure: Figure, size: int, width: int) -> list[Label]:
    w, h = figure.shape
    (x0, y0), (x1, y1) = _fit([(0.0, 0.0), (w, h)], size)
    draw.rectangle([x0, y1, x1, y0], outline="black", width=width)
    labels: list[Label] = []
    if figure.labels.get("width"):
        labels.append((((x0 + x1) / 2, y0 + size * 0.06), figure.labels["width"]))
    if figure.labels.get("height"):
        labels.append(((x1 + size * 0.07, (y0 + y1) / 2), figure.labels["height"]))
    return labels


def _circle(draw, figure: Figure, size: int, width: int) -> list[Label]:
    centre, radius = size / 2, size * (0.5 - MARGIN)
    draw.ellipse([centre - radius, centre - radius, centre + radius, centre + radius], outline="black", width=width)
    draw.line([(centre, centre), (centre + radius, centre)], fill="black", width=width)
    draw.ellipse([centre - 2, centre - 2, centre + 2, centre + 2], fill="black")
    return (
        [((centre + radius / 2, centre - size * 0.05), figure.labels["radius"])] if figure.labels.get("radius") else []
    )


def _line(draw, figure: Figure, size: int, width: int) -> list[Label]:
    angle, direction = figure.shape
    centre, reach = size / 2, size * (0.5 - MARGIN)

    def point(degrees: float, distance: float) -> tuple[float, float]:  # from the centre, y down
        return centre + distance * math.cos(math.radians(degrees)), centre - distance * math.sin(math.radians(degrees))

    end, other_end, tip = point(direction, reach), point(direction + 180, reach), point(direction + angle, reach)
    draw.line([end, other_end], fill="black", width=width)
    draw.line([(centre, centre), tip], fill="black", width=width)
    draw.ellipse([centre - 2, centre - 2, centre + 2, centre + 2], fill="black")
    labels: list[Label] = []
    # each angle's label on its bisector, farther out for a narrow one (between its two lines)
    for name, middle, opening in (("a", direction + angle / 2, angle), ("b", direction + 90 + angle / 2, 180 - angle)):
        if figure.labels.get(name):
            depth = size * 0.09 / max(math.sin(math.radians(opening) / 2), 0.3)
            labels.append((point(middle, depth), figure.labels[name]))
    return labels


def _bisector(at, p, q) -> tuple[float, float]:
    """The unit vector halving the angle at ``at`` between the rays to ``p`` and ``q``."""
    u = _towards((0.0, 0.0), (p[0] - at[0], p[1] - at[1]), 1.0)
    v = _towards((0.0, 0.0), (q[0] - at[0], q[1] - at[1]), 1.0)
    return _towards((0.0, 0.0), (u[0] + v[0], u[1] + v[1]), 1.0)


def _towards(point: tuple[float, float], target: tuple[float, float], distance: float) -> tuple[float, float]:
    dx, dy = target[0] - point[0], target[1] - point[1]
    norm = math.hypot(dx, dy) or 1.0
    return point[0] + dx / norm * distance, point[1] + dy / norm * distance
