"""Which transformers classes load a checkpoint: a vision-language model (Qwen2-VL, Qwen2.5-VL,
the tiny VLM: its config has a ``vision_config``) loads with its vision tower and travels with
its processor (tokenizer + image processor); a text model with its tokenizer. One rule for the
learner, the engines, the driver's image inputs and ``bppo export``, so that none of them
treats a VLM as text."""

from __future__ import annotations


def is_vision_language(config) -> bool:
    """``config`` (a transformers config) describes a model with a vision tower."""
    return getattr(config, "vision_config", None) is not None


VISION_TOKEN_KEYS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def vision_token_ids(config) -> list[int]:
    """A vision-language model's vision tokens (image and video placeholders, their delimiters):
    only a prompt holds them, where the processor put them for its images. A response that
    holds one would be a row with an image slot and no image (transformers refuses it: "Image
    features and image tokens do not match"), so the policy never writes them: the engines
    ban them (``rollout.engine``) and the learner's log-probs exclude them likewise. Empty for
    a text model."""
    if not is_vision_language(config):
        return []
    return sorted({getattr(config, key) for key in VISION_TOKEN_KEYS if getattr(config, key, None) is not None})


def has_vision_tower(model_path: str, *, trust_remote_code: bool = False) -> bool:
    """The checkpoint at ``model_path`` (a directory or hub name) is a vision-language model."""
    from transformers import AutoConfig

    return is_vision_language(AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code))


def model_class(config):
    """The Auto class that builds this config's model, vision tower included."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    return AutoModelForImageTextToText if is_vision_language(config) else AutoModelForCausalLM


def preprocessor_class(config):
    """The Auto class that loads what turns this model's inputs into ids (and pixels)."""
    from transformers import AutoProcessor, AutoTokenizer

    return AutoProcessor if is_vision_language(config) else AutoTokenizer
