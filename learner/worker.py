"""One data-parallel rank of the learner: a DeepSpeed engine around a Hugging Face causal LM.

``LearnerWorker`` is a plain class (``learner.world`` runs one per Ray actor). The step
math lives in ``learner.algorithms``/``learner.losses``; this file only moves tensors
through DeepSpeed. The one place DeepSpeed's own loss scaling is compensated is
``_backward``: the loss of each micro-batch is already this rank's share of the
optimizer step's global loss (global normalisers), DeepSpeed then averages gradients
over ranks, so the loss is multiplied by the world size; gradient accumulation runs in
DeepSpeed's unmanaged mode, which does not divide by the accumulation steps.
"""

from __future__ import annotations

import math
import os
import socket
import sys
from collections import defaultdict
from contextlib import contextmanager
from datetime import timedelta

import torch

from learner.algorithms import algorithm_loss
from learner.batch import TrainBatch
from learner.cpu_threads import ThreadTuner
from learner.logprobs import ban_tokens, sequence_logprobs
from learner.losses import aggregate
from learner.varlen import pack_rows, packed_attention

# The attention transformers runs on packed rows (learner.padding_free): see learner.varlen.
PACKED_ATTENTION = "bppo_packed_sdpa"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def lr_lambda(warmup_steps: int, total_steps: int, schedule: str):
    """Multiplier of the peak LR at optimizer step ``s`` (0-based): linear warm-up, then flat or cosine."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class LearnerWorker:
    def __init__(
        self,
        *,
        rank: int,
        world_size: int,
        model_path: str,
        learner: dict,
        algo: dict,
        dtype: str,
        temperature: float,
        total_steps: int,
        seed: int,
        top_p: float = 1.0,
        trust_remote_code: bool = False,
        cpu_cores: list[int] | None = None,
    ) -> None:
        from pydantic import TypeAdapter

        from learner.algorithms import AlgoConfig

        self.rank, self.world_size = rank, world_size
        self.model_path, self.learner, self.dtype = model_path, learner, dtype
        self.algo = TypeAdapter(AlgoConfig).validate_python(algo)
        self.temperature, self.top_p, self.total_steps, self.seed = temperature, top_p, total_steps, seed
        self.trust_remote_code = trust_remote_code
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.threads: ThreadTuner | None = None  # the CPU update's thread count, tuned by timing
        if self.device.type == "cpu":
            # Phases run one after another, so the active actor may use every core; when they
            # overlap (trainer.mode async), only ``cpu_cores``, disjoint from the engines'.
            if cpu_cores:
                os.sched_setaffinity(0, cpu_cores)
            cores = len(cpu_cores) if cpu_cores else os.cpu_count() or 1
            if learner["cpu_threads"] == "auto":
                self.threads = ThreadTuner(cores, torch.set_num_threads)
            else:
                torch.set_num_threads(learner["cpu_threads"])

    def address(self) -> tuple[str, int]:
        """Where rank 0 listens for the process group (called on rank 0 only)."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def setup(self, master_addr: str, master_port: int) -> None:
        """Join the process group and build the DeepSpeed engine (all ranks at once)."""
        os.environ.update(
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world_size),
            LOCAL_RANK="0",
            MASTER_ADDR=master_addr,
            MASTER_PORT=str(master_port),
        )
        import deepspeed

        if self.device.type == "cpu":
            # Skip the 40-60 s JIT build of the shared-memory allreduce op; gloo is enough here.
            import deepspeed.comm.torch  # noqa: F401

            sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
        deepspeed.init_distributed(
            dist_backend="nccl" if self.device.type == "cuda" else "gloo",
            timeout=timedelta(seconds=self.learner["collective_timeout_s"]),
        )
        torch.manual_seed(self.seed)
        model = self._load_model(self._ds_config(train=True))
        if self.learner["gradient_checkpointing"]:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=self.learner["lr"], weight_decay=self.learner["weight_decay"]
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(self.learner["warmup_steps"], self.total_steps, self.learner["lr_schedule"])
        )
        self.engine, *_ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=schedule, config=self._ds_config(train=True)
        )
        if self.learner["zero_stage"] == 0 and self.dtype == "float32":
            _record_grad_norm(self.engine)
        self.reference = None
        if self.algo.kl_coef > 0:  # the frozen reference costs memory and a forward: only when used
            config = self._ds_config(train=False)
            reference = self._load_model(config).eval().requires_grad_(False)
            self.reference, *_ = deepspeed.initialize(model=reference, config=config)

    def _load_model(self, ds_config: dict):
        """The Hugging Face model; at ZeRO-3 built under ``deepspeed.zero.Init``, so each rank
        holds only its partition from the start (the weights reach it through gathers)."""
        from transformers import AutoConfig

        from models.classes import is_vision_language, model_class, vision_token_ids

        config = AutoConfig.from_pretrained(self.model_path, trust_remote_code=self.trust_remote_code)
        # a vision-language policy (Qwen2-VL, Qwen2.5-VL): the class with its vision tower. Its
        # rows run padded: Qwen2-VL's rotary positions are 3-D and computed per row from the
        # image grids, and packed rows (one [1, N] row whose 1-D positions restart) would need
        # those per-row positions and the row boundaries carried apart (the vision tower runs
        # its own attention too). So learner.padding_free applies to text models.
        self.packed = self.learner["padding_free"] and not is_vision_language(config)
        # a VLM's vision tokens are never sampled (models.classes.vision_token_ids): excluded here too
        banned = vision_token_ids(config)
        self.banned_token_ids = torch.tensor(banned, dtype=torch.long) if banned else None
        attention = {"attn_implementation": self._packed_attention()} if self.packed else {}

        def load():
            return model_class(config).from_pretrained(
                self.model_path,
                dtype=getattr(torch, self.dtype),
                trust_remote_code=self.trust_remote_code,
                **attention,
            )

        if ds_config["zero_optimization"]["stage"] != 3:
            return load().to(self.device)
        with _zero3_loading(ds_config):
            return load()

    def _packed_attention(self) -> str:
        """The attention packed rows run with. flash-attn's varlen kernel where it runs (a GPU, half
        precision, the ``flash_attn`` package): transformers reads each row's extent from the
        restarting position ids and nothing is re-padded. Elsewhere ``learner.varlen``'s
        ``packed_attention`` (attention alone re-padded per row, exact)."""
        import importlib.util

        if self.device.type == "cuda" and self.dtype != "float32" and importlib.util.find_spec("flash_attn"):
            return "flash_attention_2"
        from transformers import AttentionInterface

        AttentionInterface.register(PACKED_ATTENTION, packed_attention)
        return PACKED_ATTENTION

    def _ds_config(self, *, train: bool) -> dict:
        stage = self.learner["zero_stage"]
        zero = {"stage": stage if train or stage == 3 else 0}
        if stage == 3:
            # Weights under 10 x hidden size (norms, biases) stay whole on every rank, as the
            # HF Trainer's "auto" sets it; DeepSpeed's default (1e5 elements) would keep every
            # weight of the CPU tests' tiny model whole, and nothing would be partitioned.
            hidden_size = _hidden_size(self.model_path, self.trust_remote_code)
            if hidden_size:
                zero["stage3_param_persistence_threshold"] = 10 * hidden_size
        config = {
            "train_micro_batch_size_per_gpu": 1,
            "gradient_accumulation_steps": 1,
            "zero_optimization": zero,
            "bf16": {"enabled": self.dtype == "bfloat16"},
            "fp16": {"enabled": self.dtype == "float16"},
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        if train:
            # Set explicitly: DeepSpeed's default clipping differs between versions.
            config["gradient_clipping"] = self.learner["max_grad_norm"]
            # step() is the accumulation boundary, backward() only accumulates, nothing is
            # divided by the accumulation steps: micro-batch counts vary step to step.
            config["managed_gradient_accumulation"] = False
        return config

    # ---- forward passes -------------------------------------------------------------

    def _logprobs(self, model, batch: TrainBatch) -> torch.Tensor:
        return self._logprobs_and_entropy(model, batch, with_entropy=False)[0]

    def _logprobs_and_entropy(
        self, model, batch: TrainBatch, *, with_entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[B, T]`` log-probs of the batch's tokens and (``with_entropy``) the entropy of the
        distribution each was drawn from, detached; None when not wanted."""
        # The engine samples from softmax(logits / T) within top_p; the ratio must use the same
        # distribution. The raw logits go in (no fp32 copy here): sequence_logprobs upcasts a
        # chunk at a time and, in training, overwrites them with their own gradient.
        options = dict(top_p=self.top_p, with_entropy=with_entropy)
        images = batch.image_inputs()
        if not self.packed:  # padded rows (a vision-language policy's always: _load_model)
            input_ids = batch.input_ids.to(self.device)
            if images:
                images = {name: value.to(self.device) for name, value in images.items()}
                # which tokens are image tokens: the 3-D positions are laid out from them
                images["mm_token_type_ids"] = (input_ids == self._image_token_id(model)).long()
            logits = model(
                input_ids=input_ids, attention_mask=batch.attention_mask.to(self.device), use_cache=False, **images
            ).logits
            if self.banned_token_ids is not None:
                ban_tokens(logits, self.banned_token_ids)
            out = sequence_logprobs(logits, input_ids, self.temperature, **options)  # [B, T] (each)
            return out if with_entropy else (out, None)
        packed = pack_rows(batch.input_ids, batch.attention_mask).to(self.device)
        # use_cache=False: a training forward wants no key/value cache (each layer's keys and values
        # kept for nothing; with one, transformers' own sdpa would also attend across rows).
        logits = model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).logits
        out = sequence_logprobs(logits, packed.input_ids, self.temperature, **options)  # [1, N] (each)
        logprobs, entropy = out if with_entropy else (out, None)

        def per_row(values: torch.Tensor) -> torch.Tensor:  # [1, N] -> [B, T]
            # A row's first token was scored from the previous row's last: 0, as at position 0 padded.
            return packed.unpack(values.masked_fill(packed.starts, 0.0))

        return per_row(logprobs), None if entropy is None else per_row(entropy)

    @staticmethod
    def _image_token_id(model) -> int:
        config = getattr(model, "module", model).config  # a DeepSpeed engine wraps the model
        return config.image_token_id

    @torch.no_grad()
    def logprobs(self, micro_batches: list[TrainBatch], which: str = "policy") -> list[torch.Tensor]:
        """Log-probs of each micro-batch under the current policy or the reference, on CPU."""
        model = self.engine if which == "policy" else self.reference
        if model is None:
            raise ValueError(f"no {which} model on the learner (reference needs algo.kl_coef > 0)")
        model.eval()
        return [self._logprobs(model, batch).cpu() for batch in micro_batches]

    # ---- the optimizer step ------------------------------------------------------------

    def train(
        self, micro_batches: list[TrainBatch], norms: dict, objective: str = "policy", old_from_current: bool = False
    ) -> dict[str, float]:
        """One optimizer step over this rank's micro-batches; metrics are global (summed over ranks).

        ``objective``: ``policy`` = the algorithm's loss; ``sft`` = token-mean negative
        log-likelihood of the ``loss_mask`` tokens (the tiny model's warm start).
        ``old_from_current``: the old log-probs are this forward's own, detached (TRL with one
        iteration): with one optimizer step per batch the weights that sampled are the weights
        being trained, so a separate old pass would recompute the same numbers.
        A non-finite loss on any rank skips the step on every rank: gradients are dropped,
        the optimizer and LR schedule do not move (``learner/skipped_nonfinite`` = 1).
        """
        import torch.distributed as dist

        self.engine.train()
        threads = self.threads.begin() if self.threads else torch.get_num_threads()
        sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64))
        maxima: dict[str, float] = {}
        finite = True
        for batch in micro_batches:
            logprobs, entropy = self._logprobs_and_entropy(self.engine, batch, with_entropy=objective != "sft")
            if objective == "sft":
                loss = -(logprobs * batch.loss_mask.to(self.device)).sum() / max(norms["global_tokens"], 1.0)
                metrics = {"sft/nll": loss.detach()}
            else:
                batch = _to(batch, self.device)
                if old_from_current:
                    batch.old_logprobs = logprobs.detach()
                loss, metrics = algorithm_loss(logprobs, batch, self.algo, **norms)
                # per trained token, normalised as loss/clip_frac is: sums to the step's mean
                metrics["policy/entropy"] = aggregate(
                    entropy, batch.loss_mask, "token-mean", global_tokens=norms.get("global_tokens")
                )
            finite = finite and bool(torch.isfinite(loss))
            # Every rank runs every backward: ZeRO-2/3 reduce gradients inside it (ZeRO-3 gathers
            # weights too), so a rank that left one out would hang the others. Past a non-finite
            # loss this rank's gradients are dropped (the step is skipped on every rank, below):
            # it backwards a zero that reaches every weight; not ``loss * 0``, as 0 * NaN = NaN.
            self._backward(loss if finite else (logprobs * 0).sum())
            for name, value in metrics.items():
                if name.endswith("_max"):  # a maximum over micro-batches and ranks, not a sum
                    maxima[name] = max(maxima.get(name, float("-inf")), float(value))
                else:
                    sums[name] += value.double().cpu()
            # Positions the forward computed (packed: the tokens alone) against the tokens.
            sums["learner/forward_tokens"] += batch.num_tokens if self.packed else batch.input_ids.numel()
            sums["learner/real_tokens"] += batch.num_tokens
        flag = torch.tensor([0.0 if finite else 1.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        skipped = bool(flag.item())
        if skipped:
            self._drop_gradients()
            grad_norm = float("nan")
        else:
            lr = self.engine.get_lr()[0]
            self.engine.step()
            grad_norm = self.engine.get_global_grad_norm()
        names = sorted(sums)
        totals = torch.stack([sums[n] for n in names]).to(self.device) if names else torch.zeros(0)
        if names:
            dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        if self.threads:  # this rank's tokens, summed above before the all-reduce
            self.threads.end(int(sums["learner/real_tokens"]))
        result = {n: float(v) for n, v in zip(names, totals.cpu())}
        if maxima:  # every rank has the same names (the same loss on its micro-batches)
            peaks = sorted(maxima)
            values = torch.tensor([maxima[n] for n in peaks], dtype=torch.float64, device=self.device)
            dist.all_reduce(values, op=dist.ReduceOp.MAX)
            result.update({n: float(v) for n, v in zip(peaks, values.cpu())})
        result["learner/padding_fraction"] = 1.0 - result["learner/real_tokens"] / result["learner/forward_tokens"]
        result["learner/skipped_nonfinite"] = float(skipped)
        if self.device.type == "cpu":
            result["learner/threads"] = float(threads)
        if self.threads:  # a neighbour's mark (learner.cpu_threads); NaN where the system does not say
            waiting = self.threads.last_waiting
            result["learner/cpu_wait_share"] = float("nan") if waiting is None else waiting
        result["learner/grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
        result["learner/lr"] = float("nan") if skipped else lr
        return result

    def _backward(self, loss: torch.Tensor) -> None:
        # The one compensation for DeepSpeed's scaling (see the module docstring).
        self.engine.backward(loss * self.world_size, scale_wrt_gas=False)

    def _drop_gradients(self) -> None:
        """Forget the gradients accumulated since the last step, as if no backward had run."""
        self.engine.zero_grad()
        if hasattr(self.engine.optimizer, "zero_grad"):
            # ZeRO-3: also restarts its accumulation (the next backward copies, not adds).
            self.engine.optimizer.zero_grad(set_to_none=True)
        # ZeRO-3 keeps this rank's reduced gradient partitions in one flat buffer, which the
        # next backward overwrites only for the weights it reaches: zero it all.
        partitions = getattr(self.engine.optimizer, "grad_partitions_flat_buffer", None)
        if partitions is not None:
            partitions.zero_()

    # ---- weights out, checkpoints -------------------------------------------------------

    def export_weights(self, keep: bool = True) -> dict[str, torch.Tensor]:
        """Full Hugging Face-named weights on CPU; ZeRO-3 gathers them, so every rank must
        call this, and ranks that do not ``keep`` the copy return an empty dict."""
        import deepspeed

        params = list(self.engine.module.parameters())
        with deepspeed.zero.GatheredParameters(params, enabled=self.learner["zero_stage"] == 3):
            if not keep:
                return {}
            return {name: t.detach().to("cpu", copy=True) for name, t in self.engine.module.state_dict().items()}

    # ---- weight sync: vLLM's weight-transfer API (weight_sync.transfer) -------------

    def open_weight_transfer(self, init: dict, client) -> None:
        """Join the transfer group with the engines (rank 0 sends; every rank must call this).
        ``init``: backend (nccl | gloo), master_address, master_port, world_size, bucket_bytes,
        timeout_s. An open group is closed first: a rebuild replaces it."""
        from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

        from weight_sync.export import DeepSpeedWeightSource
        from weight_sync.transfer import trainer_init_info

        self.close_weight_transfer()
        source = DeepSpeedWeightSource(self.engine.module, zero3=self.learner["zero_stage"] == 3, keep=self.rank == 0)
        self._transfer = WeightTransferTrainerFactory.trainer_init(
            trainer_init_info(rank=self.rank, **init), client=client, source=source
        )

    def send_weights(self) -> None:
        """One full weight update of every engine (all ranks: ZeRO-3 gathers each parameter)."""
        self._transfer.send_weights()

    def close_weight_transfer(self) -> None:
        transfer = getattr(self, "_transfer", None)
        if transfer is not None:
            self._transfer = None
            transfer.shutdown()

    def save_checkpoint(self, directory: str, client_state: dict) -> None:
        """DeepSpeed checkpoint (weights, optimizer, LR schedule) plus this rank's RNG state."""
        state = dict(client_state, torch_rng=torch.get_rng_state())
        self.engine.save_checkpoint(directory, tag="learner", client_state=state)

    def load_checkpoint(self, directory: str) -> dict:
        _, client_state = self.engine.load_checkpoint(directory, tag="learner")
        if client_state and "torch_rng" in client_state:
            torch.set_rng_state(client_state["torch_rng"])
        return client_state or {}

    def save_pretrained(self, directory: str) -> None:
        """The policy in Hugging Face format (weights gathered on every rank, written by rank 0)."""
        weights = self.export_weights()
        if self.rank == 0:
            from models.classes import preprocessor_class

            self.engine.module.save_pretrained(directory, state_dict=weights)
            # a vision-language model's processor (tokenizer + image processor) travels with it
            preprocessor_class(self.engine.module.config).from_pretrained(
                self.model_path, trust_remote_code=self.trust_remote_code
            ).save_pretrained(directory)


def _record_grad_norm(engine) -> None:
    """At ZeRO-0 in fp32 DeepSpeed clips gradients but throws the norm away (ZeRO-1/2/3 and
    mixed precision keep it): keep it, so ``learner/grad_norm`` is logged at every stage."""
    from deepspeed.runtime.utils import clip_grad_norm_

    def clip_and_record() -> None:
        norm = clip_grad_norm_(engine.module.parameters(), engine.gradient_clipping(), mpu=engine.mpu)
        engine._global_grad_norm = float(norm)

    engine.clip_fp32_gradients = clip_and_record


class _Zero3Config:
    """What transformers reads from its registered ``HfDeepSpeedConfig`` (``is_zero3()`` and
    ``config``): that class needs ``accelerate``, which nothing else here uses."""

    def __init__(self, config: dict) -> None:
        self.config = config

    def is_zero3(self) -> bool:
        return True


@contextmanager
def _zero3_loading(ds_config: dict):
    """``from_pretrained`` inside builds the model under ``deepspeed.zero.Init(config_dict_or_path=
    ds_config)`` and loads each weight by gather, load on rank 0, re-partition: transformers' own
    ZeRO-3 path, switched on while a DeepSpeed config is registered. A bare ``zero.Init`` around
    ``from_pretrained`` fails: transformers 5 builds on the meta device and its weight init indexes
    the empty partitions. Every rank must enter it (the loading gathers)."""
    from transformers.integrations import deepspeed as hf_deepspeed

    registered = _Zero3Config(ds_config)  # transformers keeps only a weak reference
    hf_deepspeed.set_hf_deepspeed_config(registered)
    try:
        yield
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()


def _hidden_size(model_path: str, trust_remote_code: bool) -> int | None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code).get_text_config()
    return getattr(config, "hidden_size", None)


def _to(batch: TrainBatch, device: torch.device) -> TrainBatch:
    from dataclasses import replace

    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return replace(
        batch,
        input_ids=move(batch.input_ids),
        attention_mask=move(batch.attention_mask),
        loss_mask=move(batch.loss_mask),
        advantages=move(batch.advantages),
        old_logprobs=move(batch.old_logprobs),
        ref_logprobs=move(batch.ref_logprobs),
        behavior_logprobs=move(batch.behavior_logprobs),
    )
