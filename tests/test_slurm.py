"""The README's SLURM recipe on a real one-node SLURM cluster, against the embedded sandbox.

``detect``, then ``slurm/submit``: a job array of ``process --shard K/N`` over a shared work
folder (N derived from the plan) and a job that runs ``version`` + ``publish`` once every task
succeeded (``--dependency=afterok``). Also the failure path: one array index cancelled mid-way
(``scancel``) leaves its unfinished records pending and publishes nothing; resubmitting just that
index completes them and publishes a version holding every planned record exactly once.

The cluster (:mod:`tests.slurm_cluster`) is started once per session. Where SLURM cannot run
(not installed, not root) these tests are skipped with the reason; with
``PIPELINE_REQUIRE_SLURM=1`` (set by ``.ci/run``) that is a failure instead, so CI always runs them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pipeline import sandbox as sb
from pipeline.demo import KAGGLE_DATASET, sandbox_environ, sandbox_manifest
from pipeline.process import in_shard
from pipeline.sandbox.server import Request
from pipeline.state import outcome_path
from tests.slurm_cluster import Cluster, ClusterUnavailable

RECORDS_PER_TASK = 4  # the sandbox's 14 records -> an array of 4 tasks


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        cluster = Cluster.start(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as exc:
        reason = f"no one-node SLURM cluster on this machine: {exc}"
        if os.environ.get("PIPELINE_REQUIRE_SLURM") == "1":
            pytest.fail(f"{reason} (PIPELINE_REQUIRE_SLURM=1: CI must run the SLURM tests)",
                        pytrace=False)
        pytest.skip(reason)
    try:
        yield cluster
    finally:
        cluster.stop()


class Backfill:
    """One backfill's folder, manifest and environment against one sandbox."""

    def __init__(self, cluster: Cluster, box: sb.Sandbox, folder: Path) -> None:
        self.cluster, self.box, self.folder = cluster, box, folder
        self.manifest = sandbox_manifest(box.url, folder)
        self.work, self.logs = folder / "work", folder / "logs"
        # The credentials the manifest names, exported in the submitting shell.
        self.env = cluster.pipeline_env({**sandbox_environ(box.url), "HOME": str(folder)})

    def pipeline(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline", "--manifest",
                               str(self.manifest), "--workdir", str(self.work), *args],
                              cwd=self.folder, env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)

    def submit(self, *extra: str) -> tuple[str, str]:
        """``slurm/submit``; returns (array job id, publish job id)."""
        return self.cluster.submit("--manifest", str(self.manifest), "--workdir", str(self.work),
                                   "--logs", str(self.logs), "--records-per-task",
                                   str(RECORDS_PER_TASK), *extra, env=self.env, cwd=self.folder)

    def plan(self) -> list[dict]:
        return json.loads((self.work / "plan.json").read_text())["records"]

    def log(self, name: str) -> str:
        return (self.logs / name).read_text(encoding="utf-8", errors="replace")

    def status(self) -> dict:
        done = self.pipeline("status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def assert_published_once(self, planned: list[str]) -> None:
        """Version 1 is published to the sandbox's Zenodo and Kaggle and its index holds every
        planned record exactly once."""
        info = self.status()
        assert [v["version"].split(".")[0] for v in info["versions"]] == ["1"]
        assert info["versions"][0]["published"] == "kaggle, zenodo"
        assert info["pending"] == 0 and info["counts"]["done"] == len(planned)
        published = [d for d in self.box.deposit.depositions() if d["submitted"]]
        assert len(published) == 1
        record = requests.get(published[0]["links"]["record"], timeout=30).json()
        counts: Counter[str] = Counter()
        for f in record["files"]:   # the part indexes list every live record of the volume
            if re.fullmatch(r"part-\d{6}\.csv", f["key"]):
                text = requests.get(f["links"]["self"], timeout=30).text
                counts.update(row["id"] for row in csv.DictReader(io.StringIO(text)))
        assert sorted(counts) == sorted(planned) and set(counts.values()) == {1}
        kaggle = self.box.kaggle.datasets[KAGGLE_DATASET]
        assert len(kaggle.versions) == 1 and "catalog.json" in kaggle.versions[0].files


@pytest.fixture
def backfill(slurm: Cluster, sandbox: sb.Sandbox, tmp_path: Path) -> Backfill:
    job = Backfill(slurm, sandbox, tmp_path)
    detected = job.pipeline("detect")
    assert detected.returncode == 0, detected.stderr
    return job


def test_job_array_processes_the_plan_once_and_publishes_version_1(backfill: Backfill) -> None:
    planned = [r["id"] for r in backfill.plan()]
    assert len(planned) == 14
    array, publish = backfill.submit("--", "--cpus-per-task=1")
    jobs = backfill.cluster.wait(array, publish)

    # An array of 4 tasks (14 records, 4 per task), each one shard, each with its own log.
    tasks = jobs[array]
    assert sorted(tasks) == ["1", "2", "3", "4"]
    assert {t["JobState"] for t in tasks.values()} == {"COMPLETED"}
    assert jobs[publish][publish]["JobState"] == "COMPLETED"
    processed: Counter[str] = Counter()
    for k in range(1, 5):
        text = backfill.log(f"process-{array}_{k}.log")
        shard = [rid for rid in planned if in_shard(rid, (k, 4))]
        assert f"shard {k}/4 with 1 worker process(es)" in text  # --jobs auto: 1 CPU per task
        assert f"process: shard {k}/4: {len(shard)} planned, {len(shard)} done, 0 failed" in text
        processed.update(re.findall(r"record (\d+) done, \d+ images", text))
    # Every planned record was processed by exactly one task.
    assert sorted(processed) == sorted(planned) and set(processed.values()) == {1}
    publish_log = backfill.log(f"publish-{publish}.log")
    assert "version: built 1." in publish_log and "zenodo: published 10.5072/" in publish_log
    backfill.assert_published_once(planned)


def test_cancelled_task_leaves_its_records_pending_and_a_resubmission_completes_them(
        backfill: Backfill) -> None:
    plan = backfill.plan()
    planned = [r["id"] for r in plan]
    # The index to cancel: the shard with the most records. Its first record is processed;
    # the download of the next one with a Zenodo archive is held until the task is cancelled.
    k = max(range(1, 5), key=lambda i: sum(in_shard(rid, (i, 4)) for rid in planned))
    shard = [r for r in plan if in_shard(r["id"], (k, 4))]
    held = next(r["id"] for r in shard[1:]
                if any(f["key"].endswith((".zip", ".tar.gz")) for f in r["record"]["files"]))
    reached, release = threading.Event(), threading.Event()

    def hold(request: Request) -> None:
        if request.path.startswith(f"/api/records/{held}/files/") and not release.is_set():
            reached.set()
            release.wait(timeout=60)
        return None

    backfill.box.server.before.append(hold)
    try:
        array, publish = backfill.submit("--", "--cpus-per-task=1")
        assert reached.wait(timeout=60), backfill.cluster.log_tail()
        assert outcome_path(backfill.work, shard[0]["id"]).is_file()  # mid-way: one done
        backfill.cluster.run("scancel", f"{array}_{k}")
        jobs = backfill.cluster.wait(array, publish)
    finally:
        release.set()

    states = {i: t["JobState"] for i, t in jobs[array].items()}
    assert states == {**{str(i): "COMPLETED" for i in range(1, 5)}, str(k): "CANCELLED"}
    # afterok can never be met: SLURM cancelled the publish job before it ran.
    assert jobs[publish][publish]["JobState"] == "CANCELLED"
    assert not (backfill.logs / f"publish-{publish}.log").exists()
    unfinished = [r["id"] for r in shard if not outcome_path(backfill.work, r["id"]).exists()]
    assert held in unfinished and len(unfinished) < len(shard)
    info = backfill.status()  # folds the outcomes the tasks wrote into the state
    assert info["versions"] == [] and info["pending"] == len(unfinished)
    assert info["counts"]["done"] == len(planned) - len(unfinished)
    assert not any(d["submitted"] for d in backfill.box.deposit.depositions())

    # Resubmit just that index, with 2 CPUs: the same N comes from the same plan.
    again, publish = backfill.submit("--only", str(k), "--", "--cpus-per-task=2")
    jobs = backfill.cluster.wait(again, publish)
    assert {i: t["JobState"] for i, t in jobs[again].items()} == {str(k): "COMPLETED"}
    assert jobs[publish][publish]["JobState"] == "COMPLETED"
    text = backfill.log(f"process-{again}_{k}.log")
    assert f"shard {k}/4 with 2 worker process(es)" in text  # --jobs auto: SLURM's 2 CPUs
    assert (f"process: shard {k}/4: {len(shard)} planned, {len(unfinished)} done, 0 failed, "
            f"{len(shard) - len(unfinished)} already done") in text
    backfill.assert_published_once(planned)
