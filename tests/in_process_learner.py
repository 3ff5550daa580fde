"""One learner rank built in the test's own process (no Ray, no process group): its model loading
and its forward (``_load_model``, ``_logprobs``), as the worker runs them."""

from __future__ import annotations


def in_process_worker(
    model_path: str, *, padding_free: bool, dtype: str = "float32", temperature: float = 1.0, top_p: float = 1.0
):
    """``(worker, model)``: a rank-0 ``LearnerWorker`` of GRPO with ``learner.padding_free`` as given,
    and the model it loads."""
    from learner.algorithms import GRPOConfig
    from learner.worker import LearnerWorker
    from orchestrator.config import LearnerConfig

    worker = LearnerWorker(
        rank=0,
        world_size=1,
        model_path=model_path,
        dtype=dtype,
        temperature=temperature,
        top_p=top_p,
        total_steps=1,
        seed=0,
        algo=GRPOConfig().model_dump(),
        learner=LearnerConfig(padding_free=padding_free).model_dump(),
    )
    return worker, worker._load_model(worker._ds_config(train=True))
