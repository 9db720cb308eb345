"""``version``: the decisions as pure functions, then real version folders built in a temp dir.

The per-record outputs are written here in the format the ``store`` stage produces (HDF5 with
``images`` and a compound ``files`` table, plus a JSON metadata file), so these tests need nothing
but h5py. ``make_manifest`` and ``add_record`` are also used by ``test_publish_zenodo.py``.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from pipeline.dataset import (
    FIXED_FILES,
    Changes,
    max_parts_per_volume,
    newest_within,
    with_needs,
)
from pipeline.dataset_card import (
    CHANGELOG_VERSIONS,
    changelog,
    kaggle_title,
    read_index_csv,
    sha256sums,
)
from pipeline.errors import PipelineError
from pipeline.loader import load_all, open_catalog, read_metadata, record_groups
from pipeline.manifest import Manifest, from_dict, validate
from pipeline.research import EXTRA_FILES
from pipeline.state import State
from pipeline.store import SourceArchive, write_record
from pipeline.version import build_version, decide_changes, next_version, version_key

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


def test_newest_parts_within_a_budget_and_parts_per_volume() -> None:
    parts = [("part-000001.h5", 50), ("part-000002.h5", 30), ("part-000003.h5", 40)]
    assert newest_within(parts, 75) == ["part-000003.h5", "part-000002.h5"][::-1]
    assert newest_within(parts, 39) == []                # the newest alone is over: nothing
    assert newest_within(parts, 1000) == ["part-000001.h5", "part-000002.h5", "part-000003.h5"]
    # with contents stored once a part comes with the parts it refers to (Kaggle's subset)
    sizes = [("part-000001.h5", 50), ("part-000002.h5", 40), ("part-000003.h5", 30),
             ("part-000004.h5", 20)]
    needs = {"part-000004.h5": ["part-000002.h5"], "part-000003.h5": ["part-000001.h5"]}
    assert newest_within(sizes, 60, needs) == ["part-000002.h5", "part-000004.h5"]
    assert newest_within(sizes, 60) == ["part-000003.h5", "part-000004.h5"]
    assert newest_within(sizes, 200, needs) == [n for n, _ in sizes]
    assert newest_within(sizes, 10, needs) == []
    assert with_needs(["part-000004.h5"], needs) == {"part-000004.h5", "part-000002.h5"}
    assert max_parts_per_volume(90) == 44                # (100 files - 11 fixed) / 2 per part
    assert max_parts_per_volume(3) == 3
    assert max_parts_per_volume(90, max_files=20) == 4


def test_changelog_and_checksum_texts() -> None:
    from pipeline.dataset_card import changelog_entry

    ch = Changes(added=("4",), updated=("2",), removed={"3": "failed: bad md5"},
                 live=("1", "2", "4"))
    text = changelog_entry("2.20261122", date(2026, 11, 22), ch, {"4": "Tool 4"}, live=3)
    assert text.startswith("## 2.20261122 (2026-11-22)\n\n1 added, 1 updated, 1 removed; 3 ")
    assert "### Added\n- 4 Tool 4\n" in text and "### Updated\n- 2\n" in text
    assert "### Removed\n- 3 (failed: bad md5)\n" in text
    assert changelog(["## 2\n", "## 1\n"]) == "# Changelog\n\n## 2\n\n## 1\n"
    many = changelog([f"## {i}\n" for i in range(100, 0, -1)])   # bounded, newest kept
    assert "## 100\n" in many and f"## {100 - CHANGELOG_VERSIONS + 1}\n" in many
    assert f"## {100 - CHANGELOG_VERSIONS}\n" not in many and "70 older version(s)" in many
    sums = sha256sums({"b.h5": "sha256:" + "b" * 64, "a.csv": "sha256:" + "a" * 64,
                       "SHA256SUMS": "sha256:" + "c" * 64})
    assert sums == f"{'a' * 64}  a.csv\n{'b' * 64}  b.h5\n"
    assert kaggle_title("Tiny") == "Tiny dataset"
    long = kaggle_title("Code Images from Zenodo Software Records, Updated Continuously Forever")
    assert 6 <= len(long) <= 50 and not long.endswith(",")


# -- real folders ---------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _index(built: Any, *folders: Path) -> dict[str, dict[str, Any]]:
    """Every live row of a built version: its part indexes, each read from the folder that
    holds the listed bytes (the version's own folder, or an earlier one it carries from)."""
    rows: dict[str, dict[str, Any]] = {}
    for name in sorted(built.files):
        if not name.endswith(".csv"):
            continue
        path = next(f / name for f in (built.folder, *folders, *sorted(
            built.folder.parent.iterdir(), reverse=True)) if (f / name).is_file() and
            "md5:" + hashlib.md5((f / name).read_bytes()).hexdigest() == built.md5[name])
        for row in read_index_csv(path.read_text()):
            assert row["id"] not in rows, f"{row['id']} is in two part indexes"
            rows[row["id"]] = row
    return rows


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
    assert names == sorted(["part-000001.h5", "part-000001.csv", "catalog.json",
                            "datapackage.json", "dataset-metadata.json", "README.md",
                            "CHANGELOG.md", "SHA256SUMS", "code_images.py", "croissant.json",
                            "figure-extensions.png", "figure-growth.png", "figure-mosaic.png"])
    assert sorted(built.written) == names == sorted(built.files) and built.volume == 1
    assert all(p.is_file() for p in folder.iterdir())
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert _sha256(folder / name) == digest
        assert built.files[name] == f"sha256:{digest}"
    assert built.sizes["part-000001.h5"] == (folder / "part-000001.h5").stat().st_size
    md5 = hashlib.md5((folder / "part-000001.csv").read_bytes()).hexdigest()
    assert built.md5["part-000001.csv"] == f"md5:{md5}"

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

    index = _index(built)
    assert sorted(index) == ["101", "102", "103"]
    assert index["101"]["part"] == "part-000001.h5"
    assert index["101"]["images"] == state.records["101"]["images"] > 0
    assert index["101"]["files"] == 3 and index["101"]["record_version"] == "v1.0"
    assert index["101"]["output_sha256"] == state.records["101"]["sha256"]
    assert index["101"]["added_in"] == "1.20261121" and index["101"]["concept"] == "101"
    assert (folder / "part-000001.csv").read_text().splitlines()[0].startswith(
        "id,concept,doi,")
    catalog = json.loads((folder / "catalog.json").read_text())
    assert catalog["dataset_version"] == built.version and catalog["volume"] == 1
    assert [(v["volume"], v["parts"], v["records"], v["first_record"], v["last_record"])
            for v in catalog["volumes"]] == [(1, ["part-000001.h5"], 3, "101", "103")]
    assert catalog["kaggle"]["parts"] == ["part-000001.h5"] and catalog["withdrawn"] == {}
    package = json.loads((folder / "datapackage.json").read_text())
    assert {r["path"] for r in package["resources"]} == set(names) - {"datapackage.json",
                                                                      "SHA256SUMS"}
    kaggle = json.loads((folder / "dataset-metadata.json").read_text())
    assert kaggle["id"] == "someone/code-images-test" and 6 <= len(kaggle["title"]) <= 50
    assert kaggle["licenses"] == [{"name": "CC-BY-4.0"}]
    readme = (folder / "README.md").read_text()
    assert "h5py" in readme and "How to cite" in readme and "| 3 |" in readme
    assert "## Volumes" in readme and "| 1 | this record | 101 .. 103 | 3 |" in readme

    entry = state.versions[-1]
    assert entry["version"] == built.version and entry["folder"] == "versions/1.20261121"
    assert entry["published"] == {} and entry["counts"]["records"] == 3
    assert entry["files"] == built.files
    assert {state.records[r]["version"] for r in ("101", "102", "103")} == {"1.20261121"}
    assert {state.records[r]["part"] for r in ("101", "102", "103")} == {"part-000001.h5"}
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


def _fresh_runner(tmp_path: Path) -> Path:
    """Move the version folders away, as on a CI runner whose cache was evicted; return where
    they went (the "published" copies a test may hand to the builder as its source)."""
    away = tmp_path / "published-copies"
    shutil.rmtree(away, ignore_errors=True)
    shutil.move(tmp_path / "versions", away)
    return away


def test_second_version_is_its_new_part_plus_a_listing_of_the_old_one(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    for rid in ("101", "102", "103"):
        add_record(tmp_path, state, rid)
    v1 = build_version(manifest, state, tmp_path, now=DAY1)
    away = _fresh_runner(tmp_path)                           # nothing of v1 on disk
    add_record(tmp_path, state, "104")                        # new

    def source(name: str, md5: str) -> Path:
        raise AssertionError(f"nothing should be fetched, {name} was")

    v2 = build_version(manifest, state, tmp_path, now=DAY2, source=source)

    assert v1 is not None and v2 is not None and v2.version == "2.20261122"
    assert v2.files["part-000001.h5"] == v1.files["part-000001.h5"]     # carried, by listing
    assert v2.md5["part-000001.csv"] == v1.md5["part-000001.csv"]
    assert sorted(p.name for p in v2.folder.iterdir()) == sorted(v2.written) == sorted(
        ["part-000002.h5", "part-000002.csv", *FIXED_FILES])
    # what grows with the data is the new part; the rest is the fixed files (the loader and the
    # figures included: constant in size)
    written = sum(v2.sizes[n] for n in v2.written if n not in EXTRA_FILES)
    assert written < v2.sizes["part-000001.h5"] + v2.sizes["part-000002.h5"]
    with h5py.File(v2.folder / "part-000002.h5") as part:
        assert sorted(part["records"]) == ["104"]
    assert sorted(_index(v2, away / v1.version)) == ["101", "102", "103", "104"]
    sums = dict(line.split("  ")[::-1] for line in (v2.folder / "SHA256SUMS").read_text()
                .splitlines())
    assert sums["part-000001.h5"] == v1.files["part-000001.h5"].split(":")[1]   # whole volume
    assert state.versions[-1]["added"] == ["104"] and state.records["104"]["version"] == \
        "2.20261122"
    assert state.records["101"]["version"] == "1.20261121"
    assert "added" not in state.versions[0]                  # per-record lists: newest only
    log = (v2.folder / "CHANGELOG.md").read_text()
    assert log.index("## 2.20261122") < log.index("## 1.20261121")
    shutil.move(away / v1.version, tmp_path / "versions" / v1.version)
    # the reader sees each live record exactly once across the folders
    assert sorted(g.attrs["record_id"] for g in record_groups(tmp_path / "versions")) == \
        ["101", "102", "103", "104"]


def test_updates_and_removals_rewrite_only_the_indexes_they_touch(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    for rid in ("101", "102", "103"):
        add_record(tmp_path, state, rid)
    v1 = build_version(manifest, state, tmp_path, now=DAY1)
    add_record(tmp_path, state, "104")
    add_record(tmp_path, state, "105")
    add_record(tmp_path, state, "106")
    v2 = build_version(manifest, state, tmp_path, now=DAY2)
    away = _fresh_runner(tmp_path)
    add_record(tmp_path, state, "102", seed=1, revision=2)    # updated on Zenodo
    add_record(tmp_path, state, "103", status="failed")       # now failing
    for rid in ("104", "105", "106"):                          # every record of part 2 leaves
        add_record(tmp_path, state, rid, status="failed")
    fetched: list[str] = []

    def source(name: str, md5: str) -> Path:
        fetched.append(name)
        path = next(away.glob(f"*/{name}"))
        assert "md5:" + hashlib.md5(path.read_bytes()).hexdigest() == md5
        return path

    v3 = build_version(manifest, state, tmp_path, now=DAY3, source=source)

    assert v1 is not None and v2 is not None and v3 is not None
    # one small index per part whose records change, by need (part 2's for the card's totals)
    assert fetched == ["part-000001.csv", "part-000002.csv"]
    assert v3.files["part-000001.h5"] == v1.files["part-000001.h5"]    # bytes never rewritten
    assert v3.md5["part-000001.csv"] != v1.md5["part-000001.csv"]     # its index is
    assert "part-000002.h5" not in v3.files and "part-000002.csv" not in v3.files  # all left
    with h5py.File(v3.folder / "part-000003.h5") as part:
        assert sorted(part["records"]) == ["102"]                 # only the new data
        assert part["records/102"].attrs["format"] == "code-images-record"
    index = _index(v3, away / v1.version)
    assert sorted(index) == ["101", "102"]
    assert index["102"]["part"] == "part-000003.h5"
    assert index["102"]["added_in"] == "1.20261121"
    assert index["102"]["dataset_version"] == "3.20261123"
    assert index["102"]["record_version"] == "v2.0"
    assert index["101"]["part"] == "part-000001.h5"
    assert index["101"]["dataset_version"] == "1.20261121"
    assert "### Removed\n- 103 (failed: boom)" in v3.notes
    assert "### Updated\n- 102 Tool 102" in v3.notes
    assert state.versions[-1]["removed"] == ["103", "104", "105", "106"]
    assert state.records["102"]["version"] == "3.20261123"
    assert "part" not in state.records["103"]
    # every live record read once, the dead copies in part 1 skipped through the index
    shutil.move(away / v1.version, tmp_path / "versions" / v1.version)
    shutil.move(away / v2.version, tmp_path / "versions" / v2.version)
    groups = [(g.file.filename.rsplit("/", 1)[1], g.attrs["record_id"])
              for g in record_groups(tmp_path / "versions")]
    assert sorted(groups) == [("part-000001.h5", "101"), ("part-000003.h5", "102")]
    assert len(load_all(tmp_path / "versions")) == sum(row["images"] for row in index.values())


def test_latest_policy_replaces_the_older_version_of_a_concept(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, source={"versions": "latest"})
    state = State(path=tmp_path / "state.json")
    add_record(tmp_path, state, "200", concept="190")
    build_version(manifest, state, tmp_path, now=DAY1)
    add_record(tmp_path, state, "250", concept="190")
    v2 = build_version(manifest, state, tmp_path, now=DAY2)
    assert v2 is not None
    assert sorted(_index(v2)) == ["250"]
    assert "- 200 (superseded by 250)" in v2.notes


def test_volumes_roll_over_at_the_part_cap_and_the_byte_limit(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, dataset={"max_parts": 2})
    state = State(path=tmp_path / "state.json")
    volumes = []
    for i in range(6):
        add_record(tmp_path, state, str(300 + i))
        built = build_version(manifest, state, tmp_path, now=datetime(2026, 11, i + 1,
                                                                      tzinfo=UTC))
        assert built is not None
        assert len(built.parts()) <= 2 and len(built.files) <= 2 * 2 + len(FIXED_FILES)
        volumes.append(built.volume)
    assert volumes == [1, 1, 2, 2, 3, 3]
    catalog = open_catalog(tmp_path / "versions")
    assert catalog is not None and catalog["volume"] == 3
    assert [(v["volume"], v["first_record"], v["last_record"], v["records"])
            for v in catalog["volumes"]] == [(1, "300", "301", 2), (2, "302", "303", 2),
                                             (3, "304", "305", 2)]
    assert sorted(g.attrs["record_id"] for g in record_groups(tmp_path / "versions")) == \
        [str(300 + i) for i in range(6)]
    # an update of a record in a closed volume: new copy in the newest, old one withdrawn
    add_record(tmp_path, state, "300", seed=5, revision=2)
    built = build_version(manifest, state, tmp_path, now=datetime(2026, 11, 9, tzinfo=UTC))
    assert built is not None and built.volume == 4
    catalog = open_catalog(tmp_path / "versions")
    assert catalog is not None and catalog["withdrawn"] == {"1": ["300"]}
    ids = sorted(g.attrs["record_id"] for g in record_groups(tmp_path / "versions"))
    assert ids == [str(300 + i) for i in range(6)]              # once each, the new 300

    # the reserve for the fixed files (twice their size: the loader and figures are ~100 kB)
    LIMIT = 2 * 65536 + 40_000 + 2 * 100_000
    small = make_manifest(tmp_path / "b", destinations={
        "zenodo": {"url": "http://127.0.0.1:9", "volume_max_bytes": LIMIT}})
    other = State(path=tmp_path / "b" / "state.json")
    sizes = []
    for i in range(4):
        add_record(tmp_path / "b", other, str(400 + i), files=40)
        built = build_version(small, other, tmp_path / "b",
                              now=datetime(2026, 11, i + 1, tzinfo=UTC))
        assert built is not None and sum(built.sizes.values()) <= LIMIT
        sizes.append((built.volume, sum(built.sizes.values())))
    assert sizes[-1][0] > 1, sizes


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
