"""``version`` decides from the records touched since the last version (issue 8).

At a million records reading every records file costs about a minute, so the state remembers
which records changed since the last version (``touched``, with what each was then) and a
concept index (every done record by concept); ``version`` reads only those records' files and
carries the counts forward. These tests check that this gives exactly what a scan of every
record gives, and that the untouched records files are never read.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from pipeline import state as state_mod
from pipeline.state import IDS_PER_FILE, State, concepts_folder, records_folder
from pipeline.version import _decide_all, build_version, decide
from tests.test_version import DAY1, DAY2, DAY3, add_record, make_manifest

FAR = str(5 * IDS_PER_FILE + 7)      # a record alone in its records file


def _same_as_full_scan(state: State, source: object) -> None:
    """The touched-only decision equals the decision from every record."""
    quick, full = decide(state, source), _decide_all(state, source)
    assert not quick.full
    assert (quick.changes.added, quick.changes.updated, quick.changes.removed) == \
        (full.changes.added, full.changes.updated, full.changes.removed)
    assert quick.counts == full.counts


def _break_untouched(state_path: Path, keep: set[str]) -> list[Path]:
    """Make every records file except ``keep``'s unreadable: reading one then fails loudly."""
    broken = []
    for path in records_folder(state_path).glob("*.jsonl"):
        if path.stem not in keep:
            path.write_text("this file must not be read\n", encoding="utf-8")
            broken.append(path)
    return broken


def test_next_version_is_built_without_reading_the_untouched_records_files(
        tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, source={"versions": "latest"})
    state = State(path=tmp_path / "state" / "state.json")
    add_record(tmp_path, state, "101", concept="100")
    add_record(tmp_path, state, FAR, concept="200")
    add_record(tmp_path, state, str(2 * IDS_PER_FILE + 1), concept="300")
    v1 = build_version(manifest, state, tmp_path, now=DAY1)
    assert v1 is not None and v1.counts["records"] == 3 and v1.counts["concepts"] == 3
    state = State.load(state.path)
    assert state.records.touched == {}

    # the day: a new version of concept 100 (supersedes 101) and a new concept
    new_ids = (str(6 * IDS_PER_FILE + 1), str(6 * IDS_PER_FILE + 2))
    add_record(tmp_path, state, new_ids[0], concept="100")
    add_record(tmp_path, state, new_ids[1], concept="400")
    state.save()
    state = State.load(state.path)
    broken = _break_untouched(state.path, keep={"000000", "000006"})
    assert len(broken) == 2            # the files of FAR and of 20001: unreadable
    v2 = build_version(manifest, state, tmp_path, now=DAY2,
                       source=lambda name, md5: tmp_path / "versions" / v1.version / name)

    assert v2 is not None
    assert json.loads(json.dumps(state.versions[-1]["added"])) == list(new_ids)
    assert state.versions[-1]["removed"] == ["101"]
    assert "- 101 (superseded by 60001)" in v2.notes
    assert v2.counts["records"] == 4 and v2.counts["concepts"] == 4
    assert v2.counts["images"] == sum(int(state.records[r]["images"]) for r in
                                      (*new_ids,)) + v1.counts["images"] \
        - int(state.records["101"]["images"])
    assert "part" not in state.records["101"]
    assert all(p.read_text() == "this file must not be read\n" for p in broken)
    assert State.load(state.path).records.touched == {}


@pytest.mark.parametrize("policy", ["latest", "all"])
def test_random_days_decide_and_count_exactly_as_a_full_scan(tmp_path: Path,
                                                             policy: str) -> None:
    """Random days of new, updated, failing and re-processed records over a few concepts:
    before every version the touched-only decision equals the full scan's. (No record is
    deleted: the pipeline never deletes one, and a full scan could not see where it was.)"""
    rng = random.Random(policy)
    manifest = make_manifest(tmp_path, source={"versions": policy,
                                               "exclusions": {"records": ["7"]}})
    state = State(path=tmp_path / "state.json")
    seeds: dict[str, int] = {}
    ids = [str(i) for i in range(1, 16)]
    for day in range(6):
        for rid in rng.sample(ids, 5):
            concept = str(100 + int(rid) % 4)
            roll = rng.random()
            if roll < 0.35:
                add_record(tmp_path, state, rid, concept=concept, status="failed")
            else:
                seeds[rid] = seeds.get(rid, 0) + int(roll < 0.6)
                add_record(tmp_path, state, rid, concept=concept, seed=seeds[rid],
                           revision=1 + seeds[rid], files=1)
        state.save()
        state = State.load(state.path)
        if day:
            _same_as_full_scan(state, manifest.source)
        build_version(manifest, state, tmp_path, now=DAY1.replace(day=1 + day))


def test_an_exclusion_added_to_the_manifest_scans_every_record_once(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    for rid in ("101", "102", FAR):
        add_record(tmp_path, state, rid)
    v1 = build_version(manifest, state, tmp_path, now=DAY1)
    assert v1 is not None
    excluding = make_manifest(tmp_path, source={"exclusions": {"records": [FAR]}})
    assert decide(state, excluding.source).full          # nothing touched, yet FAR leaves
    v2 = build_version(excluding, state, tmp_path, now=DAY2,
                       source=lambda name, md5: tmp_path / "versions" / v1.version / name)
    assert v2 is not None and state.versions[-1]["removed"] == [FAR]
    assert "excluded by the manifest" in v2.notes and v2.counts["records"] == 2
    add_record(tmp_path, state, "103")
    assert not decide(state, excluding.source).full      # same exclusions: touched only
    assert build_version(excluding, state, tmp_path, now=DAY3) is not None
    state.records["900"] = {"status": "skipped", "reason": "not software", "attempts": 0}
    add_record(tmp_path, state, "103")                   # processed again, unchanged
    assert set(state.records.touched or {}) == {"900", "103"}
    assert build_version(excluding, state, tmp_path, now=DAY3) is None
    assert State.load(state.path).records.touched == {}  # nothing left to examine next time


def test_a_state_without_the_index_or_with_too_many_touched_scans_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    add_record(tmp_path, state, "101")
    assert build_version(manifest, state, tmp_path, now=DAY1) is not None
    raw = json.loads(state.path.read_text())
    del raw["touched"]                                   # written before the index existed
    state.path.write_text(json.dumps(raw))
    old = State.load(state.path)
    add_record(tmp_path, old, "102")
    assert old.records.touched is None and decide(old, manifest.source).full
    v2 = build_version(manifest, old, tmp_path, now=DAY2)
    assert v2 is not None and v2.counts["records"] == 2
    assert State.load(state.path).records.touched == {}   # known again from now on

    shutil.rmtree(concepts_folder(state.path))           # records copied without the index
    again = State.load(state.path)
    add_record(tmp_path, again, "110")
    assert decide(again, manifest.source).full and "110" in decide(
        again, manifest.source).changes.added

    monkeypatch.setattr(state_mod, "TOUCHED_MAX", 2)
    for rid in ("103", "104", "105"):
        add_record(tmp_path, old, rid, files=1)
    assert old.records.touched is None                   # a backfill without versions
    v3 = build_version(manifest, old, tmp_path, now=DAY3)
    assert v3 is not None and v3.counts["records"] == 5 and old.records.touched == {}
