"""A SLURM job array against ``process --jobs N`` on one node (issue 12, "Must show").

The same plan (records of real source put into the embedded sandbox, as in
:mod:`benchmarks.bench_process`) is processed, each time into a fresh work folder (so each
downloads its own copies, through the sandbox, md5-verified):

For each array size T asked:

1. ``process --jobs N`` in one process, N = the machine's CPUs (the one-node baseline);
2. right after it, ``slurm/submit`` on a one-node SLURM cluster (:mod:`tests.slurm_cluster`): a
   job array of T tasks with one CPU each (``--jobs auto`` = 1 worker each; at most N run at
   once). The array's wall time runs from ``slurm/submit`` until its last task ended (polled
   every 0.1 s); the publish job that follows is timed apart, since the baseline does not publish.

Ratios are taken pair by pair, in one run (the machine is shared and noisy). The array pays,
per task, a Python start-up and the plan and manifest loads, plus SLURM's scheduling; what it
buys is that tasks spread over many nodes, which one node cannot show.

Run (as root, with Debian's slurm-wlm and munge): ``python -m benchmarks.bench_slurm``
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_process import put_records, stdlib_files
from pipeline import sandbox as sb
from pipeline.cli import main as cli
from pipeline.demo import patched_environ, sandbox_environ, sandbox_manifest
from tests.slurm_cluster import ROOT, Cluster

WINDOW = ("--since", "2026-11-19T00:00:00Z", "--until", "2026-11-20T00:00:00Z")


def planned_folder(box: sb.Sandbox, root: Path) -> list[str]:
    """A manifest and a plan of the benchmark's records under ``root``; the global options.
    Each folder is its own dataset (its own state, title and Kaggle slug: a first publish adopts
    a Zenodo deposition titled like its own, as after a lost state)."""
    manifest = sandbox_manifest(box.url, root, overrides={
        "dataset.title": f"SLURM benchmark {root.name}",
        "destinations.kaggle.dataset": f"{sb.KAGGLE_USERNAME}/bench-{root.name}"})
    args = ["--manifest", str(manifest), "--workdir", str(root / "work")]
    with patched_environ(sandbox_environ(box.url)):
        assert cli([*args, "detect", *WINDOW]) == 0
    return args


def baseline(box: sb.Sandbox, root: Path, jobs: int, env: dict[str, str]) -> float:
    args = planned_folder(box, root)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", *args, "process", "--jobs", str(jobs)],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def array(cluster: Cluster, box: sb.Sandbox, root: Path, tasks: int, records: int,
          env: dict[str, str]) -> tuple[float, float, float]:
    """(array wall time, sum of the tasks' own run times, publish job wall time)."""
    args = planned_folder(box, root)
    per_task = -(-records // tasks)
    started = time.perf_counter()
    array_id, publish_id = cluster.submit(
        *args, "--logs", str(root / "logs"), "--records-per-task", str(per_task),
        "--max-tasks", str(tasks), "--", "--cpus-per-task=1", env=env, cwd=root)
    jobs = cluster.wait(array_id, timeout=1800, poll=0.1)
    wall = time.perf_counter() - started
    assert {t["JobState"] for t in jobs[array_id].values()} == {"COMPLETED"}, jobs
    assert len(jobs[array_id]) == tasks, jobs
    busy = sum(_seconds(t["RunTime"]) for t in jobs[array_id].values())
    published = cluster.wait(publish_id, timeout=1800, poll=0.1)
    if published[publish_id][publish_id]["JobState"] != "COMPLETED":
        log = (root / "logs" / f"publish-{publish_id}.log").read_text()
        raise RuntimeError(f"the publish job failed:\n{log[-3000:]}")
    return wall, busy, time.perf_counter() - started - wall


def _seconds(runtime: str) -> int:
    """scontrol's RunTime ``[D-]HH:MM:SS`` in seconds."""
    days, _, clock = runtime.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--mb", type=float, default=4.0, help="source MB per record")
    parser.add_argument("--tasks", default="2,4,8", help="array sizes to time, comma-separated")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    print(f"machine: {platform.machine()}, {cpus} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    files = stdlib_files()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster.start(Path(tmp) / "slurm")
        try:
            with sb.Sandbox(seed=0, search_per_minute=None) as box:
                put_records(box, files, args.records, args.mb)
                env = cluster.pipeline_env({**sandbox_environ(box.url), "HOME": tmp})
                source_mb = args.records * args.mb
                print(f"{args.records} records of ~{args.mb:g} MB source ({source_mb:.0f} MB); "
                      f"each array is timed right after its own one-process baseline")
                for tasks in (int(t) for t in args.tasks.split(",")):
                    base = baseline(box, Path(tmp) / f"baseline{tasks}", cpus, env)
                    wall, busy, publish = array(cluster, box, Path(tmp) / f"array{tasks}", tasks,
                                                args.records, env)
                    print(f"process --jobs {cpus} in one process {base:.2f} s "
                          f"({source_mb / base:.1f} MB/s) vs job array of {tasks} tasks x 1 CPU "
                          f"(at most {cpus} at once) {wall:.2f} s ({source_mb / wall:.1f} MB/s): "
                          f"array/one-process {wall / base:.2f}x; tasks ran {busy} s in all; "
                          f"then the version + publish job {publish:.2f} s", flush=True)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
