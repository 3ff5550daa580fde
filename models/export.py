"""``bppo export <checkpoint>``: any training checkpoint as a Hugging Face model directory.

A checkpoint's ``learner/`` is DeepSpeed's: under ZeRO 1-3 the fp32 master weights lie in each
rank's optimizer partition (``zero_pp_rank_*_optim_states.pt``) and DeepSpeed's own
``zero_to_fp32`` merges them; without ZeRO the whole module is in ``mp_rank_00_model_states.pt``.
The architecture and tokenizer come from the model the run trained (its ``config.yaml``'s
``model.path``, resolved as the run resolved it), so the export loads with ``from_pretrained``
or as another run's ``model.path``, like the ``final/`` a finished run writes.
"""

from __future__ import annotations

from pathlib import Path

import torch

TAG = "learner"  # the tag LearnerWorker.save_checkpoint gives DeepSpeed


def checkpoint_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The full fp32 weights of a training checkpoint (``<run_dir>/checkpoints/step_N``)."""
    learner = checkpoint / "learner"
    tagged = learner / TAG
    if not tagged.is_dir():
        raise FileNotFoundError(f"{checkpoint}: no DeepSpeed learner state in {tagged} (is this a checkpoint?)")
    if any(tagged.glob("*zero_pp_rank_*optim_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return get_fp32_state_dict_from_zero_checkpoint(str(learner), tag=TAG)
    states = torch.load(tagged / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
    return {name: tensor.float() for name, tensor in states["module"].items()}


def export_checkpoint(checkpoint: Path, out: Path, model_path: str) -> Path:
    """Write ``checkpoint``'s weights into ``out`` as a Hugging Face model with ``model_path``'s
    architecture and tokenizer (written to ``out.tmp`` first, renamed when complete)."""
    import shutil

    from transformers import AutoConfig

    from models.classes import model_class, preprocessor_class

    weights = checkpoint_state_dict(checkpoint)
    config = AutoConfig.from_pretrained(model_path)
    model = model_class(config).from_config(config, dtype=torch.float32)  # a VLM with its vision tower
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # a tied output layer is one tensor: the checkpoint may name it once
    missing = [name for name in missing if not (config.tie_word_embeddings and name == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint}: its weights do not fit {model_path} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    preprocessor_class(config).from_pretrained(model_path).save_pretrained(staging)  # a VLM's image processor too
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out
