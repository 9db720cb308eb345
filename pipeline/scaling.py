"""Sizing parallel work: how many worker processes one task may run (how many shards a plan is
split into is :func:`pipeline.workflow.shard_count`, shared by the matrix and the job array).

Why here: a GitHub Actions matrix and a SLURM job array both split a plan into
``process --shard K/N`` jobs, and a job scheduler decides how many CPUs each of them gets. These
are decisions, so they are made by the pure functions below (tested with plain asserts) and
reached from the command line (``python -m pipeline shards`` and ``process --jobs auto``), never
computed in shell arithmetic inside a workflow or a batch script.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping


def available_cpus(environ: Mapping[str, str] | None = None) -> int:
    """How many CPUs this process may keep busy.

    In order: ``SLURM_CPUS_PER_TASK`` (set when the job asked ``--cpus-per-task``), then
    ``SLURM_CPUS_ON_NODE`` (the CPUs of the job's allocation on this node), then the CPUs the
    process may run on (``sched_getaffinity``: cpusets, cgroups, ``taskset``), then
    ``os.cpu_count()``. The SLURM variables come first because a cluster without the task/affinity
    plugin lets a task run on every CPU of a node it shares with other jobs.
    """
    env = os.environ if environ is None else environ
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = env.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_jobs(text: str) -> int:
    """The ``--jobs`` value: a number, or ``auto`` for :func:`available_cpus` (argparse type)."""
    if text.strip().lower() == "auto":
        return available_cpus()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a number of worker processes (at least 1) or 'auto', got {text!r}")
    return value
