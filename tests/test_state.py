"""The state on disk: small ``state.json``, records in per-id-range files read on demand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import StateError
from pipeline.state import IDS_PER_FILE, State, records_folder


def done(version: str | None = "1.20261120", revision: int = 1) -> dict:
    return {"status": "done", "revision": revision, "checksums": {"o/r.zip": "md5:" + "a" * 32},
            "attempts": 0, "reason": "", "version": version}


def test_records_live_in_id_range_files_one_sorted_line_each(tmp_path: Path) -> None:
    state = State(path=tmp_path / "state" / "state.json", cursor="2026-11-20T00:00:00Z")
    for rid in ("20000005", "20000001", str(20000000 + IDS_PER_FILE), "abc"):
        state.records[rid] = done()
    state.records["20000003"] = {"status": "failed", "attempts": 2, "reason": "x", "record": {}}
    state.save()
    folder = records_folder(state.path)
    assert folder == tmp_path / "state" / "state.records"
    assert sorted(p.name for p in folder.iterdir()) == ["002000.jsonl", "002001.jsonl",
                                                        "other.jsonl"]
    lines = (folder / "002000.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["20000001", "20000003", "20000005"]
    assert lines[0].startswith('{"id":"20000001","attempts":0,')
    top = json.loads(state.path.read_text(encoding="utf-8"))
    assert "records" not in top and top["schema"] == 2
    assert top["record_files"]["002000"] == {"done": 2, "failed": {"20000003": 2}, "skipped": 0}


def test_a_lookup_reads_one_file_and_counts_come_from_the_summaries(tmp_path: Path) -> None:
    state = State(path=tmp_path / "state.json")
    for i in range(5):
        state.records[str(i * IDS_PER_FILE)] = done()
    state.records[str(3 * IDS_PER_FILE + 1)] = {"status": "failed", "attempts": 3,
                                                "reason": "gave up", "record": {}}
    state.records[str(4 * IDS_PER_FILE + 1)] = {"status": "failed", "attempts": 1,
                                                "reason": "retry me", "record": {}}
    state.save()
    again = State.load(state.path)
    assert again.counts() == {"done": 5, "failed": 2, "skipped": 0}
    assert again.records._files == {}                     # nothing read yet
    assert again.records.get(str(2 * IDS_PER_FILE))["status"] == "done"
    assert set(again.records._files) == {"000002"}
    # Retryable failures read only their own file; records given up on cost nothing.
    assert list(again.failed(attempts_below=3)) == [str(4 * IDS_PER_FILE + 1)]
    assert set(again.records._files) == {"000002", "000004"}
    assert len(again.records) == 7


def test_only_changed_files_are_rewritten_including_changes_made_in_place(
        tmp_path: Path) -> None:
    state = State(path=tmp_path / "state.json")
    for i in range(3):
        state.records[str(i * IDS_PER_FILE)] = done(version=None)
    state.save()
    folder = records_folder(state.path)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = State.load(state.path)
    assert again.records.get("0")["status"] == "done"      # read, unchanged
    again.records[str(IDS_PER_FILE)]["version"] = "2.20261121"   # as `version` assigns it
    assert again.records.save() == 1
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert [n for n in before if before[n] != after[n]] == ["000001.jsonl"]
    assert State.load(state.path).records[str(IDS_PER_FILE)]["version"] == "2.20261121"


def test_a_schema_1_state_loads_and_moves_its_records_out_on_save(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    old = {"schema": 1, "cursor": "2026-11-20T00:00:00Z", "pending": {}, "versions": [],
           "destinations": {}, "journal": {}, "notifications": {}, "last_run": {},
           "records": {"17": {**done(), "processed_at": "2026-11-20T01:00:00Z"}}}
    path.write_text(json.dumps(old), encoding="utf-8")
    state = State.load(path)
    assert state.records["17"]["status"] == "done" and state.cursor == old["cursor"]
    assert "processed_at" not in state.records["17"]   # a per-run field, no longer kept
    state.save()
    top = json.loads(path.read_text(encoding="utf-8"))
    assert top["schema"] == 2 and "records" not in top
    assert json.loads((records_folder(path) / "000000.jsonl").read_text())["id"] == "17"
    assert State.load(path).records["17"]["version"] == "1.20261120"


def test_a_damaged_records_file_names_its_line(tmp_path: Path) -> None:
    state = State(path=tmp_path / "state.json")
    state.records["5"] = done()
    state.save()
    path = records_folder(state.path) / "000000.jsonl"
    path.write_text(path.read_text() + '{"id":"6","status":\n', encoding="utf-8")
    with pytest.raises(StateError, match=r"000000\.jsonl:2: not a record line"):
        State.load(state.path).records.get("5")
