"""vLLM's worker processes stop spinning when idle, on a CPU host.

vLLM's multiprocess executor hands each step to its workers through a shared-memory queue
(``shm_broadcast.MessageQueue``). A reader that read within the last second does not sleep
until the next message: it spins on ``sched_yield`` (``SpinCondition.busy_loop_s = 1``), which
is right on a GPU node, where the spinning core is a spare host core and a step is
milliseconds. On a CPU host the engines and the learner share the same cores, and every
generate call ends with each worker spinning for a second: measured on the 2-core box, 20-60%
of a core for the first second of the learner phase, which is all of BPPO's learner phase and a
fifth of GRPO's. Here a reader always waits on the queue's notification socket instead (the
writer notifies every write, so no message is missed; a decode step costs one poll syscall).

Imported in every vLLM worker through ``weight_sync.transfer`` (the worker extension);
``patch_idle_wait`` does nothing when CUDA is available.
"""

from __future__ import annotations

IDLE_AFTER_S = 0.02


def patch_idle_wait() -> None:
    import torch

    if torch.cuda.is_available():
        return
    from vllm.distributed.device_communicators.shm_broadcast import SpinCondition

    if getattr(SpinCondition.wait, "_sleeps_when_idle", False):
        return
    spinning_wait = SpinCondition.wait

    def wait(self, timeout_ms: int | None = None) -> None:
        self.busy_loop_s = IDLE_AFTER_S  # an instance attribute set at construction: replaced per call
        spinning_wait(self, timeout_ms)

    wait._sleeps_when_idle = True
    SpinCondition.wait = wait
