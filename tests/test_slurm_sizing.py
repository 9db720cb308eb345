"""The decisions behind a job array, without a cluster: how many shards a plan needs
(``shards``), how many workers a task runs (``process --jobs auto``), and a task that only lost
records still succeeding (``--allow-record-failures``), so SLURM's ``afterok`` publish job runs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from pipeline import sandbox as sb
from pipeline.cli import main, validate_workflows
from pipeline.demo import sandbox_manifest
from pipeline.errors import UsageError
from pipeline.sandbox.server import FaultRule
from pipeline.scaling import available_cpus, parse_jobs
from pipeline.workflow import shard_count


def test_shard_count_fits_the_plan_within_bounds() -> None:
    assert shard_count(14, records_per_shard=4, max_shards=8) == 4
    assert shard_count(16, records_per_shard=4, max_shards=8) == 4
    assert shard_count(17, records_per_shard=4, max_shards=8) == 5
    assert shard_count(0, records_per_shard=25, max_shards=8) == 1  # an empty plan: one job
    assert shard_count(1_000_000, records_per_shard=25, max_shards=1000) == 1000
    assert shard_count(100) == 2  # the defaults: 50 per shard, at most 10
    with pytest.raises(UsageError, match="at least 1"):
        shard_count(10, records_per_shard=0, max_shards=8)


def test_available_cpus_prefers_what_slurm_gave_the_task() -> None:
    assert available_cpus({"SLURM_CPUS_PER_TASK": "6", "SLURM_CPUS_ON_NODE": "32"}) == 6
    assert available_cpus({"SLURM_CPUS_ON_NODE": "3"}) == 3
    # Outside SLURM (or garbage): the CPUs this process may run on.
    here = len(os.sched_getaffinity(0))
    assert available_cpus({}) == here
    assert available_cpus({"SLURM_CPUS_PER_TASK": "0", "SLURM_CPUS_ON_NODE": "x"}) == here


def test_jobs_auto_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "5")
    assert parse_jobs("auto") == 5 and parse_jobs("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="'auto'"):
        parse_jobs("many")


def write_plan(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"records": [
        {"id": str(1000 + i), "action": "new", "reason": "first seen", "record": {}}
        for i in range(n)]}))


def test_shards_command_prints_the_array_size_and_step_outputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = sandbox_manifest("http://127.0.0.1:9", tmp_path)
    base = ["--manifest", str(manifest), "--workdir", str(tmp_path / "work")]
    assert main([*base, "shards"]) == 0  # no plan yet: one (idle) shard, never none
    assert capsys.readouterr().out == "1\n"
    write_plan(tmp_path / "work" / "plan.json", 14)
    outputs = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    assert main([*base, "shards", "--records-per-shard", "4"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "4\n"  # alone on stdout: `N=$(python -m pipeline shards)`
    assert "14 planned record(s) in 4 shard(s)" in captured.err
    lines = outputs.read_text().splitlines()
    assert "count=4" in lines and "shards=[1, 2, 3, 4]" in lines
    write_plan(tmp_path / "other.json", 300)
    assert main([*base, "shards", "--plan", str(tmp_path / "other.json"),
                 "--max-shards", "5"]) == 0
    assert capsys.readouterr().out == "5\n"


def test_allow_record_failures_keeps_a_task_successful(
        sandbox: sb.Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ZENODO_TOKEN", sb.ZENODO_TOKEN)
    manifest = sandbox_manifest(sandbox.url, tmp_path)
    base = ["--manifest", str(manifest), "--workdir", str(tmp_path / "work")]
    assert main([*base, "detect", "--max-records", "2"]) == 0
    plan = json.loads((tmp_path / "work" / "plan.json").read_text())["records"]
    broken = next(r["id"] for r in plan if r["record"]["files"])
    # The archive is gone (404 is not retried): the record fails, the other one is processed.
    sandbox.server.faults.append(FaultRule(path_prefix=f"/api/records/{broken}/files/",
                                           rate=1.0, status=404))
    assert main([*base, "process", "--allow-record-failures"]) == 0
    assert "1 done, 1 failed" in capsys.readouterr().out
    # Without the flag the same situation is exit code 1 (SPEC: a stage reported failures).
    assert main([*base, "detect", "--record", broken]) == 0
    assert main([*base, "process"]) == 1
    assert "0 done, 1 failed" in capsys.readouterr().out


def test_validate_accepts_jobs_auto_and_jobs_variables(tmp_path: Path) -> None:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "cluster.yml").write_text(
        "jobs:\n  p:\n    steps:\n"
        "      - run: python -m pipeline process --shard \"$K/$N\" --jobs auto\n"
        "      - run: python -m pipeline process --jobs \"$JOBS\" --allow-record-failures\n"
        "      - run: python -m pipeline shards --records-per-shard \"$PER\" --max-shards 9\n")
    assert validate_workflows(workflows) == []
    (workflows / "bad.yml").write_text(
        "jobs:\n  p:\n    steps:\n      - run: python -m pipeline process --jobs lots\n")
    assert len(validate_workflows(workflows)) == 1
