"""The learner's peak memory for one micro-batch at Qwen's vocabulary, before and after the
chunked log-probs (learner/logprobs.py).

    .venv/bin/python benchmarks/learner_memory.py [--dtypes float32] [--temperature 1.0] [--name learner_memory]

One micro-batch of 4 x 1,024 = 4,096 tokens through a Qwen2 built from a config (vocabulary
151,936, hidden size 64, one layer: the logits dominate, as they do for a 1.5B model),
forward and backward through the policy-loss path: logits -> log-probs -> ``policy_loss``.
``before`` is the old code path, reproduced here (``logits.float() / T`` in the worker, then a
log-softmax over the whole vocabulary); ``after`` is ``sequence_logprobs``. Each variant runs
in a fresh process (CPU), which reports
- peak RSS growth: ``ru_maxrss`` after the step minus the RSS just before it, with the model,
  its gradients and the inputs already allocated (a warm-up step on 8 tokens made them), so it
  is what one micro-batch adds, kernel-internal temporaries included;
- peak live tensor bytes: every tensor an aten op allocated during the step, counted until its
  storage is freed (a dispatch-mode tracker; it cannot see temporaries inside one kernel).
Both are given in GB and as multiples of one fp32 [4,096 x 151,936] tensor (2.49 GB). The
target (issue 10): after <= 1.5 of those. Prints a table, writes benchmarks/results/<name>.json.
The model's dtype: float32 as configs/tiny_cpu.yaml (the default, ~2 min); bfloat16 as the
GPU presets (``--dtypes bfloat16 --name learner_memory_bf16``: ~15 min, bf16 matmuls are slow
on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import weakref
from pathlib import Path

from results_io import save_result  # benchmarks/ is the script's own directory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VOCAB, ROWS, COLUMNS, HIDDEN = 151_936, 4, 1_024, 64
FP32_LOGITS_BYTES = ROWS * COLUMNS * VOCAB * 4  # one fp32 [tokens x vocab] tensor
TARGET_MULTIPLE = 1.5
GB = 1e9


def before_logprobs(logits, input_ids, temperature):
    """The old path, verbatim: worker.py's fp32 copy divided by T, then the old
    ``sequence_logprobs`` (log-softmax over the vocabulary, gathered)."""
    import torch

    scaled = logits.float() / temperature
    predicted = torch.log_softmax(scaled[:, :-1].float(), dim=-1)  # [B, T-1, V]
    taken = predicted.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # [B, T-1]
    return torch.cat([torch.zeros_like(taken[:, :1]), taken], dim=1)  # [B, T]


def after_logprobs(logits, input_ids, temperature):
    from learner.logprobs import sequence_logprobs

    return sequence_logprobs(logits, input_ids, temperature)


VARIANTS = {"before": before_logprobs, "after": after_logprobs}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _live_tensor_tracker(existing: set[int]):
    """A dispatch mode counting the bytes of storages that aten ops allocate while it is on,
    each until the storage is freed (storages keep their Python object, so a finalizer on it
    fires when the memory goes). ``existing``: data pointers never to count (weights, inputs)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveTensorBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = self.peak = 0
            self.counted: set[int] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            results, returns = tree_leaves(out), func._schema.returns
            # A return annotated as aliasing an input (a view, an in-place or out= result) is
            # no new memory; a list return (split, unbind) has one annotation for all.
            aliased = (
                [r.alias_info is not None for r in returns]
                if len(returns) == len(results)
                else [any(r.alias_info is not None for r in returns)] * len(results)
            )
            for result, alias in zip(results, aliased):
                if isinstance(result, torch.Tensor) and not alias:
                    self._count(result.untyped_storage())
            return out

        def _count(self, storage) -> None:
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in existing or key in self.counted:
                return
            self.counted.add(key)
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, size)

        def _free(self, key: int, size: int) -> None:
            self.counted.discard(key)
            self.live -= size

    return LiveTensorBytes()


def child(variant: str, dtype_name: str, temperature: float) -> dict:
    """One variant in this (fresh) process; returns its numbers."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from learner.losses import LossSettings, policy_loss

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=COLUMNS,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype_name)).train()
    input_ids = torch.randint(VOCAB, (ROWS, COLUMNS))  # [B, T]
    advantages = torch.randn(ROWS)  # [B]
    loss_mask = torch.ones(ROWS, COLUMNS)  # [B, T]
    loss_mask[:, 0] = 0.0  # position 0 has no log-prob

    def learner_logprobs(ids):  # LearnerWorker._logprobs: the logits die with this frame
        logits = model(input_ids=ids).logits  # [B, T, V]
        return VARIANTS[variant](logits, ids, temperature)  # [B, T]

    def step(ids, advantages, mask):
        logprobs = learner_logprobs(ids)
        loss, _ = policy_loss(logprobs, logprobs.detach(), advantages, mask, LossSettings(agg_mode="token-mean"))
        loss.backward()
        return loss.detach()

    step(input_ids[:, :8], advantages, loss_mask[:, :8])  # warm-up: gradients allocated, kernels loaded
    model.zero_grad(set_to_none=False)
    existing = {
        t.untyped_storage().data_ptr()
        for t in [
            *model.parameters(),
            *(p.grad for p in model.parameters()),
            *model.buffers(),
            input_ids,
            advantages,
            loss_mask,
        ]
    }
    rss_before, maxrss_before = _rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracker = _live_tensor_tracker(existing)
    started = time.perf_counter()
    with tracker:
        loss = step(input_ids, advantages, loss_mask)
    wall_s = time.perf_counter() - started
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    rss_growth = maxrss_after - rss_before
    return {
        "rss_growth_gb": round(rss_growth / GB, 3),
        "rss_growth_x_fp32_logits": round(rss_growth / FP32_LOGITS_BYTES, 3),
        "peak_live_tensors_gb": round(tracker.peak / GB, 3),
        "peak_live_tensors_x_fp32_logits": round(tracker.peak / FP32_LOGITS_BYTES, 3),
        # The warm-up's high-water mark stayed below the step's, so the growth is the step's own.
        "maxrss_before_below_step_peak": maxrss_before < maxrss_after,
        "wall_s": round(wall_s, 2),
        "loss": float(loss),
        "grad_norm": float(grad_norm),
    }


def run_child(variant: str, dtype_name: str, temperature: float) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--dtypes", dtype_name, "--temperature", str(temperature)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} {dtype_name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        choices=["float32", "bfloat16"],
        help="model dtypes: float32 as configs/tiny_cpu.yaml, bfloat16 as the GPU presets",
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--name", default="learner_memory", help="results file benchmarks/results/<name>.json")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.dtypes[0], args.temperature)))
        return

    results: dict = {}
    print(f"one fp32 [{ROWS * COLUMNS} x {VOCAB}] tensor = {FP32_LOGITS_BYTES / GB:.2f} GB")
    print(f"{'dtype':<10}{'variant':<8}{'RSS growth':>18}{'live tensors':>20}{'wall':>8}")
    for dtype_name in args.dtypes:
        results[dtype_name] = {}
        for variant in ("before", "after"):
            numbers = run_child(variant, dtype_name, args.temperature)
            results[dtype_name][variant] = numbers
            print(
                f"{dtype_name:<10}{variant:<8}"
                f"{numbers['rss_growth_gb']:>8.2f} GB ({numbers['rss_growth_x_fp32_logits']:.2f}x)"
                f"{numbers['peak_live_tensors_gb']:>10.2f} GB ({numbers['peak_live_tensors_x_fp32_logits']:.2f}x)"
                f"{numbers['wall_s']:>7.1f}s"
            )
        before, after = results[dtype_name]["before"], results[dtype_name]["after"]
        # Same loss and gradients both ways: the saving changes no number.
        results[dtype_name]["same_loss_and_grad_norm"] = (
            abs(before["loss"] - after["loss"]) <= 1e-4 * max(1.0, abs(before["loss"]))
            and abs(before["grad_norm"] - after["grad_norm"]) <= 1e-3 * before["grad_norm"]
        )
        results[dtype_name]["after_within_target"] = (
            max(after["rss_growth_x_fp32_logits"], after["peak_live_tensors_x_fp32_logits"]) <= TARGET_MULTIPLE
        )
    results.update(
        fp32_logits_gb=round(FP32_LOGITS_BYTES / GB, 3),
        target_x_fp32_logits=TARGET_MULTIPLE,
        shape={"rows": ROWS, "columns": COLUMNS, "vocab": VOCAB, "hidden": HIDDEN, "layers": 1},
        temperature=args.temperature,
        machine=f"{os.cpu_count()} CPUs",
        command=" ".join(
            [
                "benchmarks/learner_memory.py",
                "--dtypes",
                *args.dtypes,
                "--temperature",
                str(args.temperature),
                "--name",
                args.name,
            ]
        ),
    )
    for dtype_name in args.dtypes:
        print(
            f"{dtype_name}: same loss and grad norm: {results[dtype_name]['same_loss_and_grad_norm']}, "
            f"after <= {TARGET_MULTIPLE}x: {results[dtype_name]['after_within_target']}"
        )
    out = save_result(args.name, results)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
