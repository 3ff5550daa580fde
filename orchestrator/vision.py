"""A vision-language policy's images on the driver: the engines get each prompt's PIL images
(``prompts.images.prompt_images``); the learner gets what the model's own processor makes of
them, and prompts whose image pads are expanded to one token per merged patch, the token ids
vLLM's processor gave the engine (``tests/test_tiny_vl.py`` checks the two agree through the
log-probs)."""

from __future__ import annotations

from dataclasses import replace

from learner.batch import RolloutGroups, RowImages, expand_image_pads
from models.classes import has_vision_tower
from prompts.images import image_count, image_sizes, problem_images


def vision_inputs(model_path: str, problems: list, *, trust_remote_code: bool = False) -> VisionInputs | None:
    """A run's ``VisionInputs`` for a vision-language policy, None for a text model; a text model
    asked to read images is refused before anything starts."""
    if has_vision_tower(model_path, trust_remote_code=trust_remote_code):
        return VisionInputs(model_path, trust_remote_code=trust_remote_code)
    with_images = sum(1 for p in problems if image_count(p))
    if with_images:
        raise ValueError(
            f"{with_images} of the {len(problems)} prompts carry images (data.source), but {model_path} has no "
            "vision tower: use a vision-language model (model.path=tiny-vl on CPU, Qwen2.5-VL on GPUs)"
        )
    return None


class VisionInputs:
    """The model's image processor and image token, loaded once per run."""

    def __init__(self, model_path: str, *, trust_remote_code: bool = False) -> None:
        from transformers import AutoConfig, AutoProcessor

        config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.image_token_id = config.image_token_id
        self.image_processor = AutoProcessor.from_pretrained(
            model_path, trust_remote_code=trust_remote_code
        ).image_processor
        self.merge = self.image_processor.merge_size

    def image_tokens(self, problem) -> int:
        """The language tokens the problem's images become (what its prompt grows by)."""
        return sum(
            self.image_processor.get_number_of_image_patches(height, width) // self.merge**2
            for width, height in image_sizes(problem)
        )

    def encode(self, images: list) -> RowImages | None:
        """One prompt's images as the learner's forward takes them (None: no images)."""
        if not images:
            return None
        out = self.image_processor(images=images, return_tensors="pt")
        return RowImages(pixel_values=out["pixel_values"], image_grid_thw=out["image_grid_thw"])

    def expand(self, prompt: list[int], images: RowImages | None) -> list[int]:
        """The prompt with each image pad repeated once per merged patch of its image."""
        if images is None:
            return expand_image_pads(prompt, self.image_token_id, [])
        counts = [t * h * w // self.merge**2 for t, h, w in images.image_grid_thw.tolist()]
        return expand_image_pads(prompt, self.image_token_id, counts)

    def attach(self, groups: RolloutGroups, problems: list) -> RolloutGroups:
        """``groups`` (one per problem, in order) with their images and expanded prompts."""
        images = [self.encode(problem_images(p)) for p in problems]
        prompts = [self.expand(prompt, row) for prompt, row in zip(groups.prompt_ids, images, strict=True)]
        return replace(groups, prompt_ids=prompts, images=images)
