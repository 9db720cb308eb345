"""Incremental detection against the embedded Zenodo sandbox, over real sockets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import manifest as manifest_mod
from pipeline import sandbox as sb
from pipeline.demo import sandbox_manifest
from pipeline.detect import Plan, detect
from pipeline.errors import ServiceError
from pipeline.sandbox.server import FaultRule
from pipeline.state import State
from pipeline.zenodo import ZenodoClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZENODO_TOKEN", sb.ZENODO_TOKEN)


def setup(sandbox: sb.Sandbox, tmp_path: Path, **overrides: object
          ) -> tuple[manifest_mod.Manifest, State]:
    path = sandbox_manifest(sandbox.url, tmp_path, overrides=overrides)
    m = manifest_mod.load(path)
    return m, State.load(m.state_path)


def run(m: manifest_mod.Manifest, state: State, tmp_path: Path, name: str = "plan.json",
        sleeps: list[float] | None = None, **kw: object) -> tuple[Plan, ZenodoClient]:
    client = ZenodoClient(m.source.zenodo, sleep=(sleeps if sleeps is not None else []).append)
    plan = detect(m, state, client, out=tmp_path / name, **kw)
    return plan, client


def mark_done(state: State, plan: Plan) -> None:
    """What ``process`` records for a processed record (its outcome folded into the state)."""
    for e in plan.entries:
        state.apply_outcome({"id": e.id, "status": "done", "revision": e.record["revision"],
                             "concept": e.record["concept_id"], "attempts": 0,
                             "checksums": {f["key"]: f["checksum"] for f in e.record["files"]}})
    state.save()


def software_ids(sandbox: sb.Sandbox, since: str = "2026-11-01") -> set[str]:
    """Software records updated since the manifest's ``source.since`` (older ones are not
    harvested: the corpus has versions from earlier in the year)."""
    return {str(r["id"]) for r in sandbox.zenodo.all()
            if r["metadata"]["resource_type"]["type"] == "software" and r["updated"] >= since}


def search_log(sandbox: sb.Sandbox) -> list[dict]:
    return sandbox.server.requests("GET", "/api/records")


def searches(sandbox: sb.Sandbox) -> list[dict]:
    return [e for e in search_log(sandbox) if e["path"] == "/api/records"]


def test_first_run_plans_every_software_record_once_and_no_other(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    m, state = setup(sandbox, tmp_path)
    plan, _ = run(m, state, tmp_path)
    ids = [e.id for e in plan.entries]
    assert len(ids) == len(set(ids))
    assert set(ids) == software_ids(sandbox)
    assert {e.action for e in plan.entries} == {"new"}
    for entry in searches(sandbox):
        q = entry["query"]
        assert q["type"] == "software" and q["all_versions"] == "true"
        assert q["sort"] == "updated-asc" and q["size"] == "100"
        assert "+00:00" not in q["q"] and 'Z" TO "' in q["q"]
    # The cursor moved to the window's end, only after the plan was written.
    assert State.load(m.state_path).cursor == plan.until
    assert (tmp_path / "plan.json").is_file()


def test_backfill_over_ten_thousand_records_in_one_day_is_complete(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    sandbox.zenodo.add_bulk(10_500, "2026-11-20")
    in_day = {str(r["id"]) for r in sandbox.zenodo.all()
              if r["updated"].startswith("2026-11-20")
              and r["metadata"]["resource_type"]["type"] == "software"}
    assert len(in_day) == 10_500
    m, state = setup(sandbox, tmp_path, **{"source.max_records_per_run": 20_000})
    plan, client = run(m, state, tmp_path, since="2026-11-20T00:00:00Z",
                       until="2026-11-21T00:00:00Z")
    ids = [e.id for e in plan.entries]
    assert len(ids) == len(set(ids)) == 10_500
    assert set(ids) == in_day  # every software record exactly once, no dataset
    statuses = {e["status"] for e in search_log(sandbox)}
    assert statuses == {200}  # never paged into the 10,000-result cap
    assert client.search_requests == len(searches(sandbox)) <= 110


def test_second_run_with_nothing_new_plans_nothing_in_at_most_three_searches(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    m, state = setup(sandbox, tmp_path)
    first, _ = run(m, state, tmp_path)
    mark_done(state, first)
    before = len(searches(sandbox))
    second, client = run(m, State.load(m.state_path), tmp_path, "plan2.json")
    assert second.entries == []
    assert client.search_requests == len(searches(sandbox)) - before <= 3


def test_after_the_sandbox_adds_records_the_next_run_plans_exactly_those(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    m, state = setup(sandbox, tmp_path)
    first, _ = run(m, state, tmp_path)
    mark_done(state, first)
    added = sandbox.zenodo.add_records(4)
    updated = sandbox.zenodo.update_record(int(first.entries[0].id), files=True)
    plan, _ = run(m, State.load(m.state_path), tmp_path, "plan2.json")
    assert {e.id for e in plan.entries} == {str(r["id"]) for r in added} | {str(updated["id"])}
    actions = {e.id: e.action for e in plan.entries}
    assert actions[str(updated["id"])] == "updated"
    assert all(actions[str(r["id"])] == "new" for r in added)


def test_a_run_with_429s_on_a_fifth_of_requests_completes_with_the_same_plan(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    sandbox.zenodo.add_bulk(600, "2026-11-20")
    clean, _ = run(*setup(sandbox, tmp_path / "a"), tmp_path)
    rule = FaultRule("/api/records", 0.2, seed=7)
    sandbox.server.faults.append(rule)
    sleeps: list[float] = []
    faulty, _ = run(*setup(sandbox, tmp_path / "b"), tmp_path, "plan-b.json", sleeps=sleeps)
    assert rule.hits >= 2
    assert [(e.id, e.action) for e in faulty.entries] == [(e.id, e.action) for e in clean.entries]
    assert sleeps.count(1.0) >= rule.hits  # Retry-After: 1 was honoured for each 429


def test_anonymous_harvest_uses_pages_of_25(sandbox: sb.Sandbox, tmp_path: Path) -> None:
    m, state = setup(sandbox, tmp_path)
    plan, _ = run(m, state, tmp_path)
    assert set(e.id for e in plan.entries) == software_ids(sandbox)
    assert {e["query"]["size"] for e in searches(sandbox)} == {"25"}


def test_cursor_does_not_move_when_the_plan_cannot_be_written(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    m, state = setup(sandbox, tmp_path)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "plan.json").mkdir()  # a directory where the plan file should go
    with pytest.raises(OSError):
        run(m, state, blocked)
    assert not m.state_path.exists()  # nothing recorded: the next run starts where this did


def test_max_records_truncates_without_losing_records_past_the_cut(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    m, _ = setup(sandbox, tmp_path)
    seen: list[str] = []
    for i in range(10):
        plan, _ = run(m, State.load(m.state_path), tmp_path, f"p{i}.json", max_records=5)
        if not plan.entries:
            break
        seen += [e.id for e in plan.entries]
        mark_done(State.load(m.state_path), plan)
    assert len(seen) == len(set(seen))
    assert set(seen) == software_ids(sandbox)


def test_record_option_plans_just_that_record_and_keeps_the_cursor(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    m, state = setup(sandbox, tmp_path)
    target = sorted(software_ids(sandbox))[0]
    plan, _ = run(m, state, tmp_path, record_ids=(target,))
    assert [e.id for e in plan.entries] == [target]
    assert State.load(m.state_path).cursor is None
    with pytest.raises(ServiceError) as info:
        run(m, state, tmp_path, record_ids=("999999999",))
    assert "HTTP 404" in str(info.value) and "999999999" in str(info.value)


def test_detect_from_the_command_line_writes_plan_and_status(
        sandbox: sb.Sandbox, tmp_path: Path) -> None:
    path = sandbox_manifest(sandbox.url, tmp_path)
    env = {"PATH": "/usr/bin:/bin", "ZENODO_TOKEN": sb.ZENODO_TOKEN, "HOME": str(tmp_path)}
    base = [sys.executable, "-m", "pipeline", "--manifest", str(path), "--workdir",
            str(tmp_path / "work")]
    out = subprocess.run([*base, "detect", "--out", str(tmp_path / "p.json")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"{len(software_ids(sandbox))} record(s) planned" in out.stdout
    status = subprocess.run([*base, "status"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and "cursor:" in status.stdout
    assert f"{len(software_ids(sandbox))} pending" in status.stdout


def test_records_outside_the_licence_policy_are_skipped_with_the_reason(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    m, state = setup(sandbox, tmp_path, **{"source.licenses": ["MIT", "apache-2.0"]})
    plan, _ = run(m, state, tmp_path)
    licences = {str(r["id"]): r["metadata"]["license"]["id"] for r in sandbox.zenodo.all()}
    planned = {e.id for e in plan.entries}
    assert planned and {licences[r] for r in planned} <= {"mit", "apache-2.0"}
    refused = {r for r in software_ids(sandbox) if licences[r] not in ("mit", "apache-2.0")}
    assert refused and refused.isdisjoint(planned)
    saved = State.load(m.state_path)
    for rid in refused:
        entry = saved.records[rid]
        assert entry["status"] == "skipped"
        assert entry["reason"].startswith(f"licence {licences[rid].upper()[:3]}")
        assert "not in the list in source.licenses" in entry["reason"]
    # the default policy admits the licences that allow redistribution: all of these
    m2, state2 = setup(sandbox, tmp_path / "default")
    plan2, _ = run(m2, state2, tmp_path / "default")
    assert {e.id for e in plan2.entries} == software_ids(sandbox)
