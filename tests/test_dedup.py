"""Each content stored once (pipeline.dedup), read back complete by the travelling loader.

The corpus is the sandbox's realistic version chains (a new version edits a few files), every
record converted and stored complete by ``process``'s writer, then packed version by version
into parts (the helpers of ``benchmarks/bench_dedup.py``, which measures the bytes). What a
user must see: every path of every record, every page, equal to converting the record's
archives afresh; and fewer bytes.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmarks.bench_dedup import P, pack_versions, store
from pipeline import code_images
from pipeline.convert import convert_archive
from pipeline.dedup import (
    KnownContents,
    bases,
    decode_listing,
    encode_listing,
    listing,
    needs_rematerialising,
    pack_part,
)
from pipeline.sandbox.corpus import Corpus
from pipeline.store import LIBVER


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, dict]:
    """Records of the sandbox's release chains, stored complete (as the benchmark does)."""
    tmp = tmp_path_factory.mktemp("chains")
    stored, _, archives = store(tmp, Corpus(seed=5).chains(3, 3))
    return tmp, stored, archives


def test_every_record_loads_complete_and_equal_to_a_fresh_conversion(chains) -> None:
    tmp, stored, archives_of = chains
    folder = tmp / "dedup"
    packed = pack_versions(folder, stored, dedup=True)
    assert sum(p.referenced_files for version in packed[1:] for p in version) > 0
    got: dict[tuple[str, str], np.ndarray] = {}
    labels_of: dict[str, dict] = {}
    for labels, pages in code_images.iter_files(folder):
        got[(labels["record"], labels["path"])] = pages
        labels_of[labels["record"]] = labels
    expected: dict[tuple[str, str], np.ndarray] = {}
    for chain in stored:
        for rid, _, concept in chain:
            for archive in archives_of[rid]:
                fresh = convert_archive(archive.path, processing=P, prefix=archive.key)
                for f in fresh.files:
                    expected[(rid, f.path)] = f.images
            assert labels_of[rid]["concept"] == concept
            assert labels_of[rid]["split"] == code_images.split_of(concept)
            assert labels_of[rid]["licence"] in {"MIT", "BSD-3-Clause", "Apache-2.0",
                                                 "GPL-3.0-or-later"}
    assert got.keys() == expected.keys()  # every path of every record
    for key, pages in expected.items():
        assert np.array_equal(got[key], pages), key  # every page (dtype may be wider)


def test_later_versions_store_only_what_changed(chains) -> None:
    tmp, stored, _ = chains
    with_dedup = pack_versions(tmp / "dedup-bytes", stored, dedup=True)
    without = pack_versions(tmp / "plain-bytes", stored, dedup=False)
    # the first versions share only files that every project has (Makefile, headers):
    # across concepts, within the one part being written
    first = sum(p.images for p in with_dedup[0])
    assert first < sum(p.images for p in without[0])
    assert all(p.cross_concept_files == p.referenced_files for p in with_dedup[0])
    later = sum(p.images for v in with_dedup[1:] for p in v)
    later_plain = sum(p.images for v in without[1:] for p in v)
    assert later < later_plain / 3, (later, later_plain)
    assert image_bytes(tmp / "dedup-bytes") < image_bytes(tmp / "plain-bytes") * 0.6
    size = sum(f.stat().st_size for f in (tmp / "dedup-bytes").glob("*.h5"))
    assert size < sum(f.stat().st_size for f in (tmp / "plain-bytes").glob("*.h5"))


def image_bytes(folder: Path) -> int:
    """Stored (compressed) bytes of the pages; the benchmark reports whole files too."""
    total = 0
    for path in folder.glob("*.h5"):
        with h5py.File(path, "r") as h5:
            total += sum(g["images"].id.get_storage_size() for g in h5["records"].values())
    return total


def test_references_point_at_the_record_that_stores_the_pages(chains) -> None:
    tmp, stored, _ = chains
    folder = tmp / "dedup-refs"
    pack_versions(folder, stored, dedup=True)
    stores: set[str] = set()
    holders: dict[str, set[str]] = {}
    for part in sorted(folder.glob("*.h5")):
        with h5py.File(part, "r") as h5:
            for rid, group in h5["records"].items():
                rows = listing(group)
                holders[rid] = {h for _, h, _, _ in rows if h != rid}
                for _, holder, _, _ in rows:
                    if holder == rid:
                        stores.add(rid)
                assert len(group["images"]) == sum(c for _, h, _, c in rows if h == rid)
    assert all(held <= stores for held in holders.values())  # one step, never a chain
    everything = set(holders)
    assert needs_rematerialising(holders, everything) == set()
    newest = {chain[-1][0] for chain in stored}  # a reader holding only the newest part
    assert needs_rematerialising({r: holders[r] for r in newest}, newest) == newest


def test_a_missing_holder_is_named(chains) -> None:
    tmp, stored, _ = chains
    folder = tmp / "dedup-missing"
    pack_versions(folder, stored, dedup=True)
    (folder / "part-000001.h5").unlink()
    with pytest.raises(KeyError, match="download every part"):
        list(code_images.iter_files(folder))


def test_listing_cells_round_trip_and_bases_are_the_newest_of_the_volume() -> None:
    rows = [("a" * 64, "7", 0, 3), ("b" * 64, "5", 10, 2)]
    cell = encode_listing("sha256:0123", rows, "7", {"5": "part-000001.h5"})
    assert decode_listing(cell, "7", "part-000002.h5") == (
        "sha256:0123", rows, {"7": "part-000002.h5", "5": "part-000001.h5"})
    records = {"1": {"concept": "c", "part": "part-000001.h5", "status": "done"},
               "4": {"concept": "c", "part": "part-000002.h5", "status": "done"},
               "6": {"concept": "c", "part": "part-000009.h5", "status": "done"},  # closed vol
               "5": {"concept": "d", "status": "failed"},
               "8": {"concept": "c", "status": "done"}}                           # incoming
    assert bases({"8": "c", "9": "d"}, records, ["part-000001.h5", "part-000002.h5"]) == {
        "4": "part-000002.h5"}


def test_a_record_whose_every_content_is_held_elsewhere_stores_no_page(tmp_path: Path) -> None:
    """Two records of identical archives (a re-upload under a new version): the second packs
    with an empty ``images`` and loads complete from the first."""
    stored = store(tmp_path, Corpus(seed=6).chains(1, 1))[0]
    (rid, path, concept), = stored[0]
    twin = tmp_path / "twin.h5"
    with h5py.File(path, "r") as src, h5py.File(twin, "w") as dst:
        for name in src:
            src.copy(src[name], dst, name=name)
        dst.attrs.update(dict(src.attrs))
        dst.attrs["record_id"] = "twin"
    folder = tmp_path / "part"
    folder.mkdir()
    with h5py.File(folder / "part-000001.h5", "w", libver=LIBVER) as part:
        packed = pack_part(part.create_group("records"),
                           [(rid, str(path), concept), ("twin", str(twin), concept)],
                           KnownContents())
    assert packed[1].images == 0 and packed[1].holders == (rid,)
    pages = {(lab["record"], lab["path"]): p for lab, p in code_images.iter_files(folder)}
    for (record, name), got in pages.items():
        if record == "twin":
            assert np.array_equal(got, pages[(rid, name)])
    assert len(pages) == 2 * len({name for _, name in pages})
