"""Prompt scheduling: per-prompt statistics and the schedulers that read them (``sched``)."""

from prompts.scheduling.schedulers import Scheduler, build_scheduler

__all__ = ["Scheduler", "build_scheduler"]
