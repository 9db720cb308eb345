"""Incremental detection against the embedded Zenodo sandbox, over real sockets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import manifest as manifest_mod
from pipeline import sandbox as sb
from pipeline.demo import sandbox_manifest
from pipeline.detect import Plan, detect, load_plan
from pipeline.errors import ServiceError
from pipeline.sandbox.server import FaultRule
from pipeline.state import State, ingest_outcomes, write_outcome
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
    assert f"detect: {len(software_ids(sandbox))} records planned" in out.stdout
    status = subprocess.run([*base, "status"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and "cursor:" in status.stdout
    assert f"{len(software_ids(sandbox))} pending" in status.stdout


def day_software(sandbox: sb.Sandbox, day: str) -> list[dict]:
    """The day's software records in the order search serves them (updated, then id)."""
    return sorted((r for r in sandbox.zenodo.all() if r["updated"].startswith(day)
                   and r["metadata"]["resource_type"]["type"] == "software"),
                  key=lambda r: (r["updated"], r["id"]))


def fold_as_processed(workdir: Path, plan_path: Path) -> None:
    """What ``process`` leaves for each planned record: one outcome file, folded into the state
    by the next command (here the next ``detect``'s :func:`ingest_outcomes`)."""
    for entry in load_plan(plan_path):
        write_outcome(workdir, {"id": entry.id, "status": "done", "attempts": 0, "reason": "",
                                "revision": entry.record["revision"],
                                "concept": entry.record["concept_id"],
                                "checksums": {f["key"]: f["checksum"]
                                              for f in entry.record["files"]}})


def test_four_cycles_over_a_1600_record_day_cover_it_exactly_once_at_9_searches_a_run(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    sandbox.zenodo.add_bulk(1_600, "2026-11-20")
    m, _ = setup(sandbox, tmp_path, **{"source.since": "2026-11-20T00:00:00Z"})
    assert m.source.max_records_per_run == 500  # the default cap
    workdir = tmp_path / "work"
    planned: list[str] = []
    per_run = []
    for cycle in range(5):
        state = State.load(m.state_path)
        ingest_outcomes(state, workdir)  # what every command does first
        before = len(searches(sandbox))
        plan, client = run(m, state, tmp_path, f"plan{cycle}.json")
        per_run.append(len(searches(sandbox)) - before)
        assert client.search_requests == per_run[-1]
        planned += [e.id for e in plan.entries]
        fold_as_processed(workdir, tmp_path / f"plan{cycle}.json")
        if cycle < 4:
            assert len(plan.entries) == (500 if cycle < 3 else 100)
    assert per_run[-1] <= 2 and not plan.entries  # a fifth run finds nothing
    assert max(per_run) <= 500 // 100 + 4, per_run
    assert len(planned) == len(set(planned))
    assert set(planned) == {str(r["id"]) for r in day_software(sandbox, "2026-11-20")}


def test_a_cut_between_records_sharing_a_timestamp_loses_neither(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    sandbox.zenodo.add_bulk(600, "2026-11-20")
    day = day_software(sandbox, "2026-11-20")
    tie = next(i for i in range(len(day) - 1) if day[i]["updated"] == day[i + 1]["updated"])
    # No overlap: the cursor alone must bring the second record of the tie back.
    m, _ = setup(sandbox, tmp_path, **{"source.since": "2026-11-20T00:00:00Z",
                                       "source.overlap_minutes": 0})
    first, _ = run(m, State.load(m.state_path), tmp_path, "p1.json", max_records=tie + 1)
    assert first.entries[-1].id == str(day[tie]["id"])
    assert str(day[tie + 1]["id"]) not in {e.id for e in first.entries}
    mark_done(State.load(m.state_path), first)
    second, _ = run(m, State.load(m.state_path), tmp_path, "p2.json")
    ids = [e.id for e in first.entries] + [e.id for e in second.entries]
    assert len(ids) == len(set(ids))
    assert set(ids) == {str(r["id"]) for r in day}


def test_a_backfill_in_capped_runs_costs_about_one_search_per_hundred_records(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    sandbox.zenodo.add_bulk(10_500, "2026-11-20")
    # More than one query's 10,000-hit window: the harvest goes on from the last timestamp.
    m, _ = setup(sandbox, tmp_path, **{"source.since": "2026-11-20T00:00:00Z",
                                       "source.max_records_per_run": 5_000})
    planned: list[str] = []
    costs = []
    for i in range(4):
        plan, client = run(m, State.load(m.state_path), tmp_path, f"p{i}.json")
        costs.append(client.search_requests)
        planned += [e.id for e in plan.entries]
        mark_done(State.load(m.state_path), plan)
    assert len(planned) == len(set(planned)) == 10_500
    assert set(planned) == {str(r["id"]) for r in day_software(sandbox, "2026-11-20")}
    assert max(costs) <= 5_000 // 100 + 4, costs
    assert sum(costs) <= 10_500 // 100 + 4 * 4, costs  # linear, not quadratic, in the backlog
    assert {e["status"] for e in search_log(sandbox)} == {200}


def test_carried_over_records_count_towards_the_cap(
        sandbox: sb.Sandbox, tmp_path: Path, token: None) -> None:
    sandbox.zenodo.add_bulk(300, "2026-11-20")
    m, _ = setup(sandbox, tmp_path, **{"source.since": "2026-11-20T00:00:00Z",
                                       "source.max_records_per_run": 100})
    first, _ = run(m, State.load(m.state_path), tmp_path, "p1.json")
    assert len(first.entries) == 100
    # Nothing was processed: the next plan is the same 100 records, and it harvests nothing.
    before = len(searches(sandbox))
    second, client = run(m, State.load(m.state_path), tmp_path, "p2.json")
    assert [e.id for e in second.entries] == [e.id for e in first.entries]
    assert {e.action for e in second.entries} == {"retry"}
    assert client.search_requests == len(searches(sandbox)) - before == 0


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
