"""The scheduled workflow's decisions as CLI commands (``check-run``, ``shards``,
``check-outcomes``), driven through :func:`pipeline.cli.main` with GitHub's output files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.demo import sandbox_manifest
from pipeline.manifest import load
from pipeline.state import State
from pipeline.workflow import MAX_SHARDS, RECORDS_PER_SHARD, shard_count
from tests.test_actions import parse_github_output


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository folder with a sandbox manifest, as the working directory of a step."""
    sandbox_manifest("http://127.0.0.1:9", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out.txt"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    return tmp_path


def outputs(repo: Path) -> dict[str, str]:
    found = parse_github_output((repo / "out.txt").read_text(encoding="utf-8"))
    (repo / "out.txt").unlink()
    return found


def manifest_name(repo: Path) -> str:
    return next(p.name for p in repo.glob("*.yaml"))


def test_the_default_cap_fills_the_default_matrix_exactly() -> None:
    m = load(Path(__file__).resolve().parent.parent / "data_manifest.yaml")
    assert m.source.max_records_per_run == RECORDS_PER_SHARD * MAX_SHARDS
    assert shard_count(m.source.max_records_per_run) == MAX_SHARDS
    assert [shard_count(n) for n in (0, 1, 50, 51, 10_000)] == [1, 1, 1, 2, 10]
    assert shard_count(7, records_per_shard=5, max_shards=8) == 2


def test_check_run_locates_the_state_and_reports_unfinished_work(repo: Path) -> None:
    name = manifest_name(repo)
    assert main(["--manifest", name, "check-run", "--publish", "sandbox"]) == 0
    out = outputs(repo)
    assert (out["mode"], out["environment"], out["unfinished"]) == ("sandbox", "sandbox", "false")
    assert out["state_path"] == "state/state.json"
    assert out["records_path"] == "state/state.records"
    m = load(repo / name)
    state = State.load(m.state_path)
    state.journal["zenodo"] = {"version": "3.20261129", "step": "uploading"}
    state.save()
    assert main(["--manifest", name, "check-run", "--publish", "none"]) == 0
    out = outputs(repo)
    assert out["unfinished"] == "true" and out["environment"] == ""
    assert "publishing 3.20261129 to zenodo is in progress" in \
        (repo / "summary.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("args", "message"), [
    (["--publish", "staging"], "publish must be one of none, sandbox, production"),
    (["--max-records", "ten"], "max_records must be a positive number"),
    (["--records", "1 --since=1999"], "records must be Zenodo record ids"),
    (["--since", "yesterday; rm -rf /"], "since must be an ISO 8601 time"),
])
def test_check_run_refuses_bad_inputs_with_an_annotation(
        repo: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["--manifest", manifest_name(repo), "check-run", *args]) == 2
    out = capsys.readouterr().out
    assert f"::error title=Invalid input::{message}" in out


def test_check_run_refuses_a_manifest_outside_the_repository(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--manifest", "../elsewhere.yaml", "check-run"]) == 2
    assert "manifest must name a file of this repository" in capsys.readouterr().out


def test_sandbox_mode_refuses_a_manifest_that_publishes_to_zenodo_org(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (repo / manifest_name(repo)).read_text(encoding="utf-8")
    m = load(repo / manifest_name(repo))
    (repo / "prod.yaml").write_text(text.replace(m.destinations.zenodo.url,
                                                 "https://zenodo.org"), encoding="utf-8")
    assert main(["--manifest", "prod.yaml", "check-run", "--publish", "sandbox"]) == 2
    assert "::error title=Sandbox mode::" in capsys.readouterr().out
    assert main(["--manifest", "prod.yaml", "check-run", "--publish", "production"]) == 0


def write_plan(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"records": [
        {"id": i, "action": "new", "reason": "first seen", "record": {}} for i in ids]}),
        encoding="utf-8")


def test_shards_sizes_the_matrix_from_the_plan(repo: Path) -> None:
    name = manifest_name(repo)
    write_plan(repo / "work" / "plan.json", [str(i) for i in range(120)])
    assert main(["--manifest", name, "--workdir", "work", "shards"]) == 0
    out = outputs(repo)
    assert out["count"] == "3" and json.loads(out["shards"]) == [1, 2, 3]
    assert main(["--manifest", name, "--workdir", "work", "shards", "--records-per-shard",
                 "5", "--max-shards", "8"]) == 0
    assert outputs(repo)["count"] == "8"
    assert main(["--manifest", name, "--workdir", "work", "shards", "--plan",
                 "work/none.json"]) == 0
    assert outputs(repo)["count"] == "1"  # no plan: one (idle) shard, never an empty matrix


def test_check_outcomes_names_the_shard_whose_results_are_missing(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = manifest_name(repo)
    ids = [str(1000 + i) for i in range(12)]
    write_plan(repo / "work" / "plan.json", ids)
    m = load(repo / name)
    state = State.load(m.state_path)
    state.pending.update({i: {"record": {}} for i in ids})
    state.save()
    outcomes = repo / "work" / "outcomes"
    outcomes.mkdir(parents=True)
    for i in ids[:-1]:
        (outcomes / f"{i}.json").write_text(json.dumps({"id": i, "status": "done"}))
    code = main(["--manifest", name, "--workdir", "work", "check-outcomes", "--shards", "3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "::error title=Missing shard results::1 planned record(s)" in captured.out
    assert "came back from no shard" in captured.err and ids[-1] in captured.err
    (outcomes / f"{ids[-1]}.json").write_text(json.dumps({"id": ids[-1], "status": "done"}))
    assert main(["--manifest", name, "--workdir", "work", "check-outcomes", "--shards",
                 "3"]) == 0
