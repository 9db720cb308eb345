"""``version``: the decisions as pure functions, then real version folders built in a temp dir.

The per-record outputs are written here in the format the ``store`` stage produces (HDF5 with
``images`` and a compound ``files`` table, plus a JSON metadata file), so these tests need nothing
but h5py. ``make_manifest`` and ``add_record`` are also used by ``test_publish_zenodo.py``.
"""

from __future__ import annotations

import hashlib
import json
import random
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from pipeline.dataset_card import changelog, kaggle_title, sha256sums
from pipeline.errors import PipelineError
from pipeline.loader import load_all, read_metadata, record_groups
from pipeline.manifest import Manifest, from_dict, validate
from pipeline.state import State
from pipeline.store import SourceArchive, write_record
from pipeline.version import (
    Changes,
    PartPlan,
    build_version,
    decide_changes,
    next_version,
    plan_parts,
    version_key,
)

DAY1 = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
DAY3 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def make_manifest(tmp_path: Path, *, dataset: dict[str, Any] | None = None,
                  source: dict[str, Any] | None = None,
                  destinations: dict[str, Any] | None = None) -> Manifest:
    data = {
        "source": source or {},
        "dataset": {"title": "Code Images from Zenodo Software Records",
                    "description": "Source code of research software as code images.",
                    "creators": [{"name": "Doe, Jane", "affiliation": "Somewhere"}],
                    "keywords": ["source code", "zenodo"], **(dataset or {})},
        "destinations": destinations if destinations is not None else {
            "kaggle": {"dataset": "someone/code-images-test"}},
    }
    return from_dict(validate(data), path=tmp_path / "data_manifest.yaml")


PROCESSING = make_manifest(Path("/nonexistent")).processing


def add_record(workdir: Path, state: State, rid: str, *, concept: str | None = None,
               seed: int = 0, revision: int = 1, status: str = "done", files: int = 3) -> None:
    """Process one record as ``process`` does (a real zip through :func:`write_record`, then
    its outcome folded into the state); ``seed`` changes the content, ``revision`` the version."""
    checksums = {f"tool-{rid}.zip": f"md5:{seed:032x}"}
    base = {"id": rid, "status": status, "concept": concept or rid, "revision": revision,
            "updated": "2026-11-20T00:00:00+00:00", "checksums": checksums,
            "processed_at": "2026-11-20T00:00:00Z"}
    if status != "done":
        state.apply_outcome({**base, "attempts": 1, "reason": "boom"})
        return
    rng = random.Random(f"{rid}-{seed}")
    archive = workdir / "archives" / f"{rid}-{seed}.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(files):
            body = "".join(f"def f{j}(x):\n    return x * {rng.random()!r}\n"
                           for j in range(rng.randint(40, 120)))
            zf.writestr(f"tool-{rid}/src/m{i}.py", body)
    raw = {"id": int(rid), "recid": rid, "conceptrecid": concept or rid,
           "doi": f"10.5281/zenodo.{rid}", "title": f"Tool {rid}", "revision": revision,
           "metadata": {"title": f"Tool {rid}", "version": f"v{revision}.0"}}
    out = write_record(workdir / "records", rid, [SourceArchive(f"tool-{rid}.zip", archive)],
                       processing=PROCESSING, record=raw)
    state.apply_outcome({**base, "attempts": 0, "reason": "", "images": out.images,
                         "files": out.files, "output": f"records/{out.hdf5.name}",
                         "metadata": f"records/{out.metadata.name}", "sha256": out.hdf5_sha256,
                         "bytes": out.hdf5_bytes})


# -- pure decisions ------------------------------------------------------------------------------

def test_next_version_counts_from_the_state_not_the_clock() -> None:
    assert next_version([], date(2026, 11, 21)) == "1.20261121"
    versions = [{"version": "1.20261120"}, {"version": "2.20261120"}]
    assert next_version(versions, date(2026, 11, 20)) == "3.20261120"
    assert version_key("10.20260101") > version_key("9.20261231")


def test_decide_changes_added_updated_removed() -> None:
    records = {
        "1": {"status": "done", "concept": "c1", "version": "1.x"},
        "2": {"status": "done", "concept": "c2", "version": None},     # reprocessed, changed
        "3": {"status": "failed", "concept": "c3", "reason": "bad md5", "version": "1.x"},
        "4": {"status": "done", "concept": "c4", "version": None},     # new
        "5": {"status": "done", "concept": "c5", "version": None},     # excluded by concept
    }
    ch = decide_changes(records, ["1", "2", "3", "9"], excluded_concepts=["c5"])
    assert ch.added == ("4",)
    assert ch.updated == ("2",)
    assert ch.removed == {"3": "failed: bad md5", "9": "no longer in the state"}
    assert ch.live == ("1", "2", "4")
    assert not ch.empty
    assert decide_changes({"1": records["1"]}, ["1"]).empty


def test_decide_changes_latest_policy_replaces_older_versions_of_a_concept() -> None:
    records = {
        "10": {"status": "done", "concept": "c", "version": "1.x"},
        "25": {"status": "done", "concept": "c", "version": None},
        "11": {"status": "done", "concept": "d", "version": "1.x"},
    }
    ch = decide_changes(records, ["10", "11"], policy="latest")
    assert ch.added == ("25",)
    assert ch.removed == {"10": "superseded by 25"}
    assert ch.live == ("11", "25")
    assert decide_changes(records, ["10", "11"], policy="all").removed == {}


def test_plan_parts_carries_unchanged_and_packs_new_records() -> None:
    live = {"part-000001.h5": {"1": 100, "2": 100}}
    plan = plan_parts(live, {"part-000001.h5": 210}, {"3": 50, "4": 60, "5": 70},
                      next_number=2, max_parts=10, part_max_bytes=120)
    assert plan.carry == ("part-000001.h5",)
    assert plan.new == (("part-000002.h5", ("3", "4")), ("part-000003.h5", ("5",)))
    assert plan.compacted == () and plan.dropped == ()


def test_plan_parts_drops_dead_parts_and_rewrites_dirty_ones() -> None:
    live = {"part-000001.h5": {}, "part-000002.h5": {"7": 10}, "part-000003.h5": {"8": 90}}
    sizes = {"part-000001.h5": 100, "part-000002.h5": 100, "part-000003.h5": 100}
    plan = plan_parts(live, sizes, {"9": 5}, dirty={"part-000001.h5", "part-000002.h5"},
                      next_number=4, max_parts=10)
    assert plan.dropped == ("part-000001.h5",)
    assert plan.compacted == ("part-000002.h5",)
    assert plan.carry == ("part-000003.h5",)
    assert plan.new == (("part-000004.h5", ("7", "9")),)
    # only removals from a part that is then empty: nothing new to write
    assert plan_parts({"part-000003.h5": {"8": 90}, "part-000004.h5": {}},
                      {"part-000003.h5": 100, "part-000004.h5": 50}, {},
                      dirty={"part-000004.h5"}, next_number=5, max_parts=10
                      ) == PartPlan(carry=("part-000003.h5",), new=(), compacted=(),
                                    dropped=("part-000004.h5",))


def test_plan_parts_merges_smallest_parts_at_the_cap_with_hysteresis() -> None:
    names = [f"part-{i:06d}.h5" for i in range(1, 9)]
    sizes = {n: 100 * (i + 1) for i, n in enumerate(names)}          # part 1 smallest
    live = {n: {str(i): sizes[n]} for i, n in enumerate(names)}
    plan = plan_parts(live, sizes, {"99": 10}, next_number=9, max_parts=8)
    # 8 carried + 1 new > 8: merge the smallest until at most 3/4 of 8 = 6 parts remain
    assert plan.compacted == tuple(names[:3])
    assert len(plan.carry) + len(plan.new) == 6
    assert plan.new[0][1] == ("0", "1", "2", "99")
    # under the cap nothing is merged
    assert plan_parts(live, sizes, {"99": 10}, next_number=9, max_parts=9).compacted == ()
    with pytest.raises(ValueError):
        plan_parts({}, {}, {str(i): 10 for i in range(5)}, next_number=1, max_parts=2,
                   part_max_bytes=10)


def test_changelog_and_checksum_texts() -> None:
    from pipeline.dataset_card import changelog_entry

    ch = Changes(added=("4",), updated=("2",), removed={"3": "failed: bad md5"},
                 live=("1", "2", "4"))
    text = changelog_entry("2.20261122", date(2026, 11, 22), ch, {"4": "Tool 4"}, live=3)
    assert text.startswith("## 2.20261122 (2026-11-22)\n\n1 added, 1 updated, 1 removed; 3 ")
    assert "### Added\n- 4 Tool 4\n" in text and "### Updated\n- 2\n" in text
    assert "### Removed\n- 3 (failed: bad md5)\n" in text
    assert changelog(["## 2\n", "## 1\n"]) == "# Changelog\n\n## 2\n\n## 1\n"
    sums = sha256sums({"b.h5": "sha256:" + "b" * 64, "a.csv": "sha256:" + "a" * 64,
                       "SHA256SUMS": "sha256:" + "c" * 64})
    assert sums == f"{'a' * 64}  a.csv\n{'b' * 64}  b.h5\n"
    assert kaggle_title("Tiny") == "Tiny dataset"
    long = kaggle_title("Code Images from Zenodo Software Records, Updated Continuously Forever")
    assert 6 <= len(long) <= 50 and not long.endswith(",")


# -- real folders ---------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _index(folder: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((folder / "index.json").read_text())
    return {row["id"]: row for row in data["records"]}


def test_first_version_folder_is_flat_complete_and_checksummed(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    for rid in ("101", "102", "103"):
        add_record(tmp_path, state, rid)
    add_record(tmp_path, state, "104", status="failed")

    built = build_version(manifest, state, tmp_path, now=DAY1)

    index_ids = ("101", "102", "103")
    assert built is not None and built.version == "1.20261121"
    folder = tmp_path / "versions" / "1.20261121"
    assert built.folder == folder
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["part-000001.h5", "index.csv", "index.json", "datapackage.json",
                            "dataset-metadata.json", "README.md", "CHANGELOG.md", "SHA256SUMS"])
    assert all(p.is_file() for p in folder.iterdir())
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert _sha256(folder / name) == digest
        assert built.files[name] == f"sha256:{digest}"
    assert built.sizes["part-000001.h5"] == (folder / "part-000001.h5").stat().st_size
    md5 = hashlib.md5((folder / "index.csv").read_bytes()).hexdigest()
    assert built.md5["index.csv"] == f"md5:{md5}"

    with h5py.File(folder / "part-000001.h5") as part, \
            h5py.File(tmp_path / "records" / "101.h5") as src:
        assert sorted(part["records"]) == ["101", "102", "103"]
        group = part["records/101"]
        assert group["images"].compression == src["images"].compression == "gzip"
        assert group["images"].chunks == src["images"].chunks
        assert np.array_equal(group["images"][:], src["images"][:])
        assert dict(group.attrs).keys() == dict(src.attrs).keys()
        assert group.attrs["record_id"] == "101"
        assert read_metadata(group)["record"]["doi"] == "10.5281/zenodo.101"
        assert part.attrs["dataset_version"] == "1.20261121"
    assert len(load_all(folder)) == sum(state.records[r]["images"] for r in index_ids)

    index = _index(folder)
    assert sorted(index) == ["101", "102", "103"]
    assert index["101"]["part"] == "part-000001.h5"
    assert index["101"]["images"] == state.records["101"]["images"] > 0
    assert index["101"]["files"] == 3 and index["101"]["record_version"] == "v1.0"
    assert index["101"]["output_sha256"] == state.records["101"]["sha256"]
    assert index["101"]["added_in"] == "1.20261121" and index["101"]["concept"] == "101"
    assert (folder / "index.csv").read_text().splitlines()[0].startswith("id,concept,doi,")
    package = json.loads((folder / "datapackage.json").read_text())
    assert {r["path"] for r in package["resources"]} == set(names) - {"datapackage.json",
                                                                      "SHA256SUMS"}
    kaggle = json.loads((folder / "dataset-metadata.json").read_text())
    assert kaggle["id"] == "someone/code-images-test" and 6 <= len(kaggle["title"]) <= 50
    assert kaggle["licenses"] == [{"name": "CC-BY-4.0"}]
    readme = (folder / "README.md").read_text()
    assert "h5py" in readme and "How to cite" in readme and "| 3 |" in readme

    entry = state.versions[-1]
    assert entry["version"] == built.version and entry["folder"] == "versions/1.20261121"
    assert entry["published"] == {} and entry["counts"]["records"] == 3
    assert entry["files"] == built.files
    assert {state.records[r]["version"] for r in ("101", "102", "103")} == {"1.20261121"}
    assert state.records["104"]["version"] is None
    assert State.load(state.path).versions[-1]["version"] == "1.20261121"   # saved


def test_nothing_changed_builds_nothing(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    assert build_version(manifest, state, tmp_path, now=DAY1) is None
    add_record(tmp_path, state, "101")
    assert build_version(manifest, state, tmp_path, now=DAY1) is not None
    add_record(tmp_path, state, "101")     # processed again, same checksums and revision
    assert build_version(manifest, state, tmp_path, now=DAY2) is None
    assert len(state.versions) == 1
    assert [p.name for p in (tmp_path / "versions").iterdir()] == ["1.20261121"]


def test_second_version_carries_the_old_part_and_adds_only_changes(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    for rid in ("101", "102", "103"):
        add_record(tmp_path, state, rid)
    v1 = build_version(manifest, state, tmp_path, now=DAY1)
    add_record(tmp_path, state, "104")                        # new

    v2 = build_version(manifest, state, tmp_path, now=DAY2)

    assert v1 is not None and v2 is not None and v2.version == "2.20261122"
    old, new = v1.folder / "part-000001.h5", v2.folder / "part-000001.h5"
    assert new.read_bytes() == old.read_bytes()                   # carried, identical bytes
    assert new.stat().st_ino == old.stat().st_ino                 # hard-linked, not copied
    assert v2.files["part-000001.h5"] == v1.files["part-000001.h5"]
    with h5py.File(v2.folder / "part-000002.h5") as part:
        assert sorted(part["records"]) == ["104"]
    assert sorted(_index(v2.folder)) == ["101", "102", "103", "104"]
    assert state.versions[-1]["added"] == ["104"] and state.records["104"]["version"] == \
        "2.20261122"
    assert state.records["101"]["version"] == "1.20261121"
    log = (v2.folder / "CHANGELOG.md").read_text()
    assert log.index("## 2.20261122") < log.index("## 1.20261121")
    # the first folder is untouched (immutable)
    assert _sha256(v1.folder / "index.json") == v1.files["index.json"].split(":")[1]
    assert sorted(p.name for p in v1.folder.iterdir()) == sorted(v1.files)


def test_updates_and_removals_rewrite_only_the_parts_they_touch(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    for rid in ("101", "102", "103"):
        add_record(tmp_path, state, rid)
    v1 = build_version(manifest, state, tmp_path, now=DAY1)
    add_record(tmp_path, state, "104")
    add_record(tmp_path, state, "105")
    v2 = build_version(manifest, state, tmp_path, now=DAY2)
    add_record(tmp_path, state, "102", seed=1, revision=2)    # updated on Zenodo
    add_record(tmp_path, state, "103", status="failed")       # now failing

    v3 = build_version(manifest, state, tmp_path, now=DAY3)

    assert v1 is not None and v2 is not None and v3 is not None
    assert "part-000001.h5" not in v3.files                       # dirty: rewritten
    assert v3.files["part-000002.h5"] == v2.files["part-000002.h5"]   # untouched: carried
    with h5py.File(v3.folder / "part-000003.h5") as part:
        assert sorted(part["records"]) == ["101", "102"]          # live 101 moved, 102 new data
        assert part["records/102"].attrs["format"] == "code-images-record"
    index = _index(v3.folder)
    assert sorted(index) == ["101", "102", "104", "105"]
    assert index["102"]["part"] == "part-000003.h5"
    assert index["102"]["added_in"] == "1.20261121"
    assert index["102"]["dataset_version"] == "3.20261123"
    assert index["102"]["record_version"] == "v2.0"
    assert index["101"]["part"] == "part-000003.h5"
    assert index["101"]["dataset_version"] == "1.20261121"
    assert "### Removed\n- 103 (failed: boom)" in v3.notes
    assert "### Updated\n- 102 Tool 102" in v3.notes
    assert state.versions[-1]["removed"] == ["103"]
    assert state.versions[-1]["counts"]["compacted"] == 1
    assert state.records["102"]["version"] == "3.20261123"
    # every record group in the folder is live, exactly once: the loader can read it all
    assert sorted(g.attrs["record_id"] for g in record_groups(v3.folder)) == sorted(index)
    assert len(load_all(v3.folder)) == sum(row["images"] for row in index.values())


def test_latest_policy_replaces_the_older_version_of_a_concept(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, source={"versions": "latest"})
    state = State(path=tmp_path / "state.json")
    add_record(tmp_path, state, "200", concept="190")
    build_version(manifest, state, tmp_path, now=DAY1)
    add_record(tmp_path, state, "250", concept="190")
    v2 = build_version(manifest, state, tmp_path, now=DAY2)
    assert v2 is not None
    assert sorted(_index(v2.folder)) == ["250"]
    assert "- 200 (superseded by 250)" in v2.notes


def test_compaction_keeps_zenodo_under_its_file_limit(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, dataset={"max_parts": 3})
    state = State(path=tmp_path / "state.json")
    built = None
    days = [datetime(2026, 11, d, tzinfo=UTC) for d in range(1, 7)]
    for i, day in enumerate(days):
        add_record(tmp_path, state, str(300 + i))
        built = build_version(manifest, state, tmp_path, now=day)
        assert built is not None
        parts = [n for n in built.files if n.startswith("part-")]
        assert len(parts) <= 3
    assert built is not None
    index = _index(built.folder)
    assert sorted(index) == [str(300 + i) for i in range(6)]
    for rid, row in index.items():
        with h5py.File(built.folder / row["part"]) as part:
            assert rid in part["records"]
    assert any(v["counts"]["compacted"] for v in state.versions)


def test_a_crash_mid_build_leaves_no_version_and_the_rerun_is_clean(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.version as version_module

    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    add_record(tmp_path, state, "101")

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(version_module, "_verify_part", crash)
    with pytest.raises(KeyboardInterrupt):
        build_version(manifest, state, tmp_path, now=DAY1)
    assert state.versions == [] and not State.load(state.path).versions
    monkeypatch.undo()
    built = build_version(manifest, state, tmp_path, now=DAY1)
    assert built is not None and built.version == "1.20261121"
    assert [p.name for p in (tmp_path / "versions").iterdir()] == ["1.20261121"]


def test_a_done_record_without_its_output_is_a_clear_error(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    add_record(tmp_path, state, "101")
    (tmp_path / "records" / "101.h5").unlink()
    with pytest.raises(PipelineError, match=r"\[version\] record 101: its output"):
        build_version(manifest, state, tmp_path, now=DAY1)
    assert not state.versions


def test_an_output_changed_since_processing_is_not_packed(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    add_record(tmp_path, state, "101")
    with open(tmp_path / "records" / "101.h5", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(PipelineError, match=r"record 101: its output .* changed since"):
        build_version(manifest, state, tmp_path, now=DAY1)
    assert not state.versions and not (tmp_path / "versions" / "1.20261121").exists()
