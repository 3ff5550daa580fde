"""The CPU path's tiny vision-language policy: a Qwen2-VL built here from a config, nothing
downloaded.

The text side is the tiny Qwen2 of ``models.tiny`` (the same byte-level BPE trained on
geometry text, digits one token each) with Qwen2-VL's four vision tokens added; the vision
tower is Qwen2-VL's (14-pixel patches, 2x2 patch merging into one language token, 3-D rotary
positions), a block or two deep. Images go through Qwen2-VL's image processor (its PIL
backend) resized to ``image_size`` pixels, so a 112x112 diagram is 8x8 patches = 16 language
tokens. Saved in Hugging Face format with its processor, so the learner (transformers) and the
engines (vLLM) load the very same directory as they would Qwen2.5-VL.
"""

from __future__ import annotations

from pathlib import Path

from models.cache import built_from_config
from models.tiny import EOS_TOKEN, build_tokenizer, tokenizer_corpus
from prompts.images import IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START

PATCH, MERGE, TEMPORAL = 14, 2, 2  # Qwen2-VL's patch size, spatial merge and temporal patch


def ensure_tiny_vl_model(tiny_vl, *, root: Path | None = None) -> Path:
    """The tiny VLM of this config, built once (``tiny-vl-<hash of the config>``)."""
    return built_from_config("tiny-vl", tiny_vl, build_tiny_vl_model, root=root)


def image_tokens(image_size: int) -> int:
    """Language tokens one ``image_size`` x ``image_size`` image becomes."""
    side = image_size // PATCH
    return (side // MERGE) ** 2


def build_tiny_vl_model(out_dir: Path, tiny_vl) -> None:
    """Tokenizer + processor + randomly initialised Qwen2VLForConditionalGeneration (seeded)."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    text = tiny_vl.text
    tokenizer = build_tokenizer(tokenizer_corpus(text.tokenizer_problems, text.seed), text.vocab_size)
    tokenizer.add_tokens([VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD], special_tokens=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (EOS_TOKEN, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)}
    head_dim = text.hidden_size // text.num_heads
    # 3-D rotary positions (time, height, width) share a head's rotary frequencies: head_dim / 2 of
    # them, split as Qwen2-VL splits its 64 ([16, 24, 24]), scaled to this head_dim
    quarter = head_dim // 8
    mrope_section = [quarter, (head_dim // 2 - quarter) // 2, head_dim // 2 - quarter - (head_dim // 2 - quarter) // 2]
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": text.hidden_size,
            "intermediate_size": 4 * text.hidden_size,
            "num_hidden_layers": text.num_layers,
            "num_attention_heads": text.num_heads,
            "num_key_value_heads": text.num_heads,
            "max_position_embeddings": text.max_position_embeddings,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section},
            "bos_token_id": ids[EOS_TOKEN],
            "eos_token_id": ids[EOS_TOKEN],
            "pad_token_id": ids[EOS_TOKEN],
        },
        vision_config={
            "depth": tiny_vl.vision_layers,
            "embed_dim": tiny_vl.vision_width,
            "num_heads": tiny_vl.vision_width // 32,
            "hidden_size": text.hidden_size,  # the merger projects patches to the language width
            "patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "temporal_patch_size": TEMPORAL,
        },
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[VIDEO_PAD],
        vision_start_token_id=ids[VISION_START],
        vision_end_token_id=ids[VISION_END],
        tie_word_embeddings=False,
        dtype="float32",
    )
    torch.manual_seed(text.seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids[EOS_TOKEN]
    model.generation_config.pad_token_id = ids[EOS_TOKEN]
    model.save_pretrained(out_dir)
    pixels = tiny_vl.image_size**2  # every image resized to exactly this many pixels
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=pixels,
        max_pixels=pixels,
        patch_size=PATCH,
        merge_size=MERGE,
        temporal_patch_size=TEMPORAL,
        image_mean=list(tiny_vl.image_mean),  # paper = 0 (orchestrator.config.TinyVLModelConfig)
        image_std=list(tiny_vl.image_std),
    )
    # the processor insists on a video processor; this model is never given videos
    video_processor = Qwen2VLVideoProcessor(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=TEMPORAL)
    Qwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor
    ).save_pretrained(out_dir)
