"""Images in prompts: which problems carry them, and how a prompt marks where they go.

A problem carries images in its ``meta``: ``figure`` (a ``prompts.figures.Figure``, rendered at
``meta["image_size"]`` pixels when needed: the diagram families) or ``images`` (encoded image
files, e.g. PNG bytes from Geometry3K's parquet). Its prompt text then starts with one
placeholder per image, Qwen2-VL's ``<|vision_start|><|image_pad|><|vision_end|>`` (Qwen2.5-VL
uses the same): the engine's processor expands each pad token to the image's tokens, and the
learner does the same with the processor's patch grid (``learner.batch.expand_image_pads``).
"""

from __future__ import annotations

import io

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
IMAGE_PLACEHOLDER = VISION_START + IMAGE_PAD + VISION_END


def image_count(problem) -> int:
    """How many images the problem's prompt carries."""
    meta = problem.meta
    return (1 if meta.get("figure") else 0) + len(meta.get("images") or ())


def problem_images(problem) -> list:
    """The problem's images as RGB PIL images, in prompt order (empty for a text problem)."""
    from PIL import Image

    meta, images = problem.meta, []
    if meta.get("figure"):
        from prompts.figures import Figure, render

        images.append(render(Figure.from_json(meta["figure"]), size=int(meta.get("image_size", 224))))
    for encoded in meta.get("images") or ():
        images.append(Image.open(io.BytesIO(encoded)).convert("RGB"))
    return images


def image_sizes(problem) -> list[tuple[int, int]]:
    """``(width, height)`` of each of the problem's images, without decoding them."""
    from PIL import Image

    meta, sizes = problem.meta, []
    if meta.get("figure"):
        side = int(meta.get("image_size", 224))
        sizes.append((side, side))
    for encoded in meta.get("images") or ():
        with Image.open(io.BytesIO(encoded)) as image:  # reads the header only
            sizes.append(image.size)
    return sizes


def prompt_images(problems: list) -> list[list] | None:
    """One image list per problem for the engines; None when no problem has any (text prompts)."""
    if not any(image_count(p) for p in problems):
        return None
    return [problem_images(p) for p in problems]


def with_placeholders(question: str, count: int) -> str:
    """``question`` after one image placeholder per image."""
    return IMAGE_PLACEHOLDER * count + question
