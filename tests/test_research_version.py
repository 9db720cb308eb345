"""A dataset version as researchers get it (issue 9), built by ``version`` from a corpus with
realistic version chains: every record loads completely through the folder's own loader (every
path, every page, equal to converting it afresh) while each content is stored once; both
standard validators accept the folder; the card shows the figures; the index has the columns.

The records are the sandbox's release chains (a new version edits a few files), converted and
stored by ``process``'s writer and folded into the state as ``process`` does; a version per
"month" adds the next version of every concept. What a user downloads is the volume's Zenodo
record: every file the newest version lists, from whichever version folder wrote it.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline import code_images
from pipeline.convert import convert_archive
from pipeline.dataset_card import INDEX_COLUMNS
from pipeline.figures import FIGURES
from pipeline.fsutil import file_digest
from pipeline.manifest import default_processing
from pipeline.provenance import record_labels, splits
from pipeline.research import CROISSANT, LOADER
from pipeline.sandbox.corpus import Corpus
from pipeline.state import State
from pipeline.store import SourceArchive, write_record
from pipeline.version import build_version
from tests.test_version import make_manifest

P = default_processing()
BIN = Path(sys.executable).parent


def process_chain_version(workdir: Path, state: State, rec, manifest) -> list[SourceArchive]:
    """What ``process`` does for one corpus record: fetch (here: build) its archives, convert
    and store it complete with its labels, and fold its outcome into the state."""
    rid = str(rec.record["id"])
    archives = [SourceArchive(key, path) for key, path in
                rec.write_archives(workdir / "downloads")]
    out = write_record(workdir / "records", rid, archives, processing=manifest.processing,
                       record=rec.record, labels=record_labels(rec.record, splits(manifest)))
    state.apply_outcome({
        "id": rid, "status": "done", "concept": str(rec.record["conceptrecid"]), "revision": 1,
        "updated": rec.record["updated"], "checksums": {a.key: "md5:x" for a in archives},
        "processed_at": "2026-11-20T00:00:00Z", "attempts": 0, "reason": "",
        "images": out.images, "files": out.files, "output": f"records/{out.hdf5.name}",
        "metadata": f"records/{out.metadata.name}", "sha256": out.hdf5_sha256,
        "bytes": out.hdf5_bytes})
    return archives


def download(workdir: Path, state: State, into: Path, entry: dict | None = None) -> Path:
    """The volume as Zenodo serves it: every file its newest version (``entry``) lists."""
    entry = entry or state.versions[-1]
    into.mkdir(parents=True)
    for name, digest in entry["files"].items():
        for folder in sorted((workdir / "versions").iterdir(), reverse=True):
            if (folder / name).is_file() and file_digest(folder / name) == digest:
                shutil.copyfile(folder / name, into / name)
                break
        else:
            raise AssertionError(f"{name} is in no version folder")
    return into


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("research")
    manifest = make_manifest(tmp)
    state = State(path=tmp / "state.json")
    chains = Corpus(seed=21).chains(concepts=3, versions=3)
    archives: dict[str, list[SourceArchive]] = {}
    for k in range(3):
        for chain in chains:
            rec = chain[k]
            archives[str(rec.record["id"])] = process_chain_version(tmp, state, rec, manifest)
        assert build_version(manifest, state, tmp, now=datetime(2026, 11, 10 + k, tzinfo=UTC))
    return {"tmp": tmp, "state": state, "archives": archives, "chains": chains,
            "folder": download(tmp, state, tmp / "download")}


def test_every_record_loads_completely_and_contents_are_stored_once(built: dict) -> None:
    folder, archives = built["folder"], built["archives"]
    got: dict[tuple[str, str], np.ndarray] = {}
    for labels, pages in code_images.iter_files(folder):
        got[(labels["record"], labels["path"])] = pages
    expected: dict[tuple[str, str], np.ndarray] = {}
    for rid, its in archives.items():
        for archive in its:
            for f in convert_archive(archive.path, processing=P, prefix=archive.key).files:
                expected[(rid, f.path)] = f.images
    assert got.keys() == expected.keys()                 # every path of every record
    for key, pages in expected.items():
        assert np.array_equal(got[key], pages), key      # every page
    stored = referred = 0
    for part in folder.glob("part-*.h5"):
        with h5py.File(part, "r") as h5:
            for group in h5["records"].values():
                stored += len(group["images"])
                holders = group["files"]["holder"]
                referred += int(sum(1 for h in holders if h))
    assert referred > 0 and stored < sum(len(p) for p in expected.values()) * 0.6


def test_the_index_has_the_provenance_columns(built: dict) -> None:
    folder = built["folder"]
    rows = []
    for index in sorted(folder.glob("part-*.csv")):
        with open(index, newline="", encoding="utf-8") as fh:
            rows += list(csv.DictReader(fh))
    assert rows and set(INDEX_COLUMNS) <= set(rows[0])
    for column in ("licence", "creators", "publication_date", "concept", "record_version",
                   "doi", "repository", "split", "shared_files"):
        assert column in rows[0]
    by_id = {r["id"]: r for r in rows}
    for chain in built["chains"]:
        for rec in chain:
            row = by_id[str(rec.record["id"])]
            labels = record_labels(rec.record)
            assert row["licence"] == labels["licence"] and row["licence"]
            assert row["split"] == code_images.split_of(row["concept"])
            assert row["repository"].startswith("https://github.com/")
            assert row["doi"] == rec.record["doi"]
    # every version of one software in the same split
    assert all(len({by_id[str(r.record["id"])]["split"] for r in chain}) == 1
               for chain in built["chains"])


def test_card_shows_figures_licences_splits_and_the_loader(built: dict) -> None:
    folder = built["folder"]
    card = (folder / "README.md").read_text(encoding="utf-8")
    for name in FIGURES:
        assert f"]({name})" in card
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    assert "each file keeps the\nlicence of its record" in card or \
        "**each file keeps the\nlicence of its record**" in card
    assert "| licence (SPDX) | records | files |" in card
    assert "| split | share | records | images |" in card
    assert "code_images.iter_files" in card and (folder / LOADER).is_file()


def test_frictionless_and_croissant_validators_accept_the_version(built: dict) -> None:
    folder = built["folder"]
    done = subprocess.run([str(BIN / "frictionless"), "validate", "--json",
                           "datapackage.json"], cwd=folder, capture_output=True, text=True,
                          timeout=240)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["valid"], done.stdout[-3000:]
    done = subprocess.run([str(BIN / "mlcroissant"), "validate", "--jsonld", CROISSANT],
                          cwd=folder, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "error" not in done.stderr.lower(), done.stderr[-3000:]
    done = subprocess.run([str(BIN / "mlcroissant"), "load", "--jsonld", CROISSANT,
                           "--record_set", "records", "--num_records", "3"], cwd=folder,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and "records/licence" in done.stdout, done.stderr[-3000:]


def expected_pages(archives: list[SourceArchive]) -> dict[str, np.ndarray]:
    return {f.path: f.images for a in archives
            for f in convert_archive(a.path, processing=P, prefix=a.key).files}


def loads_completely(folder: Path, archives: dict[str, list[SourceArchive]]) -> None:
    got: dict[str, dict[str, np.ndarray]] = {}
    for labels, pages in code_images.iter_files(folder):
        got.setdefault(labels["record"], {})[labels["path"]] = pages
    assert got.keys() == archives.keys()
    for rid, its in archives.items():
        want = expected_pages(its)
        assert got[rid].keys() == want.keys()
        assert all(np.array_equal(got[rid][p], want[p]) for p in want), rid


def test_a_fresh_runner_refers_to_the_previous_version_through_one_fetched_index(
        tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    state = State(path=tmp_path / "state.json")
    chains = Corpus(seed=22).chains(concepts=2, versions=2)
    archives = {str(c[0].record["id"]): process_chain_version(tmp_path, state, c[0], manifest)
                for c in chains}
    assert build_version(manifest, state, tmp_path, now=datetime(2026, 11, 10, tzinfo=UTC))
    away = tmp_path / "published"
    shutil.move(tmp_path / "versions", away)          # a CI runner whose cache was evicted
    for c in chains:
        archives[str(c[1].record["id"])] = process_chain_version(tmp_path, state, c[1],
                                                                  manifest)
    fetched: list[str] = []

    def source(name: str, md5: str) -> Path:
        fetched.append(name)
        return next(away.glob(f"*/{name}"))

    v2 = build_version(manifest, state, tmp_path, now=datetime(2026, 12, 10, tzinfo=UTC),
                       source=source)
    assert v2 is not None and fetched == ["part-000001.csv"]   # one small index, by need
    with h5py.File(v2.folder / "part-000002.h5") as part:
        holders = {h.decode() for g in part["records"].values() for h in g["files"]["holder"]}
    assert holders - {""} <= {str(c[0].record["id"]) for c in chains} and holders - {""}
    shutil.copytree(away / state.versions[0]["version"], tmp_path / "download")
    for path in v2.folder.iterdir():
        shutil.copyfile(path, tmp_path / "download" / path.name)
    loads_completely(tmp_path / "download", archives)


def test_latest_policy_keeps_a_part_whose_pages_newer_versions_refer_to(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, source={"versions": "latest"})
    state = State(path=tmp_path / "state.json")
    chains = Corpus(seed=23).chains(concepts=2, versions=2)
    for c in chains:
        process_chain_version(tmp_path, state, c[0], manifest)
    assert build_version(manifest, state, tmp_path, now=datetime(2026, 11, 10, tzinfo=UTC))
    live = {str(c[1].record["id"]): process_chain_version(tmp_path, state, c[1], manifest)
            for c in chains}
    v2 = build_version(manifest, state, tmp_path, now=datetime(2026, 12, 10, tzinfo=UTC))
    assert v2 is not None
    assert sorted(state.versions[-1]["removed"]) == sorted(str(c[0].record["id"])
                                                            for c in chains)
    # every record of part 1 left, but part 2 refers to pages in it: it stays in the volume
    assert "part-000001.h5" in v2.files and "part-000001.csv" in v2.files
    loads_completely(download(tmp_path, state, tmp_path / "download"), live)


def test_a_new_volume_never_refers_to_pages_in_a_closed_one(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, dataset={"max_parts": 2})   # the third part rolls over
    state = State(path=tmp_path / "state.json")
    chains = Corpus(seed=24).chains(concepts=2, versions=3)
    for k in range(2):
        for c in chains:
            process_chain_version(tmp_path, state, c[k], manifest)
        assert build_version(manifest, state, tmp_path,
                             now=datetime(2026, 11, 10 + k, tzinfo=UTC))
    third = {str(c[2].record["id"]): process_chain_version(tmp_path, state, c[2], manifest)
             for c in chains}
    v3 = build_version(manifest, state, tmp_path, now=datetime(2026, 12, 10, tzinfo=UTC))
    assert v3 is not None and v3.volume == 2
    with h5py.File(v3.folder / "part-000003.h5") as part:
        holders = {h.decode() for g in part["records"].values() for h in g["files"]["holder"]}
    assert holders <= {"", *third}                  # only records of this volume hold pages
    with h5py.File(tmp_path / state.versions[1]["folder"] / "part-000002.h5") as part:
        before = {h.decode() for g in part["records"].values() for h in g["files"]["holder"]}
    assert before - {""}                            # within one volume, versions do refer
    loads_completely(download(tmp_path, state, tmp_path / "volume-2"), third)
    # both volumes side by side, read through the newest catalog: every live record, once
    both = tmp_path / "both"
    download(tmp_path, state, both / "v1", state.versions[1])
    shutil.copytree(tmp_path / "volume-2", both / "v2")
    records = {labels["record"] for labels, _ in code_images.iter_files(both)}
    assert records == set(state_live(state))


def state_live(state: State) -> list[str]:
    return [rid for rid, r in state.records.items() if r.get("status") == "done"]
