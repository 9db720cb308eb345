"""Stored bytes per source byte, with and without storing each content once (issue 9).

1. Version chains: the sandbox's realistic chains (``Corpus.chains``: a new version edits one
   to three files and sometimes adds one, version strings change), ``--concepts`` concepts of
   ``--versions`` versions each, full source trees. Every record is converted and stored
   complete (as ``process`` does), then packed version by version into parts (a part per
   version, as a dataset version packs them) twice, side by side: with
   :func:`pipeline.dedup.pack_record` knowing the earlier versions of the concept and the
   records packed before in the part, and knowing nothing.
2. Real source at a realistic size: ``--stdlib`` concepts, each a distinct slice of about
   ``--mb`` MB of the interpreter's standard library (real code, as in
   ``benchmarks/bench_process.py``), ``--versions`` versions each, every version editing two
   files and adding one (the sandbox trees hold only a few kB of source per record, so there
   the per-record metadata dominates).
3. Small records: ``--small`` records of the ``small`` flavour (three files, a few hundred
   bytes), one part, in this layout and in the layout before issue 9 (variable-length string
   file table, 14 group attributes, metadata as an uncompressed string, HDF5 1.8 object
   formats), rebuilt from the same records: the per-record overhead.

Run: ``python -m benchmarks.bench_dedup [--concepts 20 --versions 5 --stdlib 8 --mb 1.5
--small 60]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from pipeline.code_images import read_metadata
from pipeline.dedup import KnownContents, Packed, concept_of, pack_part
from pipeline.manifest import default_processing
from pipeline.provenance import record_labels
from pipeline.sandbox.corpus import Corpus
from pipeline.store import LIBVER, SourceArchive, write_record

P = default_processing()


class Forgetful(KnownContents):
    """Knows nothing, ever: packing without de-duplication, for the comparison."""

    def get(self, transform: str, sha256: str) -> None:
        return None


def store(tmp: Path, chains: list) -> tuple[list[list[tuple[str, str, str]]], int,
                                            dict[str, list[SourceArchive]]]:
    """Write every record complete, as ``process`` does: ``(per concept [(id, h5, concept)],
    source bytes, {id: its archives})``."""
    out, source, archives = [], 0, {}
    for chain in chains:
        rows = []
        for rec in chain:
            rid = str(rec.record["id"])
            archives[rid] = [SourceArchive(key, path) for key, path in
                             rec.write_archives(tmp / "dl")]
            output = write_record(tmp / "records", rid, archives[rid], processing=P,
                                  record=rec.record, labels=record_labels(rec.record))
            source += output.source_bytes
            rows.append((rid, str(output.hdf5), str(rec.record["conceptrecid"])))
        out.append(rows)
    return out, source, archives


def pack_versions(folder: Path, chains: list, *, dedup: bool) -> list[list[Packed]]:
    """One part per version: version k's part holds the k-th version of every concept; what it
    may refer to are the earlier versions' groups and the records packed before it."""
    folder.mkdir(parents=True)
    packed_all = []
    for k in range(max(len(c) for c in chains)):
        known = KnownContents() if dedup else Forgetful()
        if dedup:  # what a builder knows: earlier versions' groups (here: local parts)
            for earlier in sorted(folder.glob("*.h5")):
                with h5py.File(earlier, "r") as part:
                    for group in part["records"].values():
                        known.add_group(group, concept_of(group))
        with h5py.File(folder / f"part-{k + 1:06d}.h5", "w", libver=LIBVER) as part:
            packed_all.append(pack_part(part.create_group("records"),
                                        [c[k] for c in chains if k < len(c)], known))
    return packed_all


def pack(folder: Path, chains: list, *, dedup: bool) -> tuple[int, int, int]:
    """:func:`pack_versions`; ``(bytes, pages stored, pages referred)``."""
    packed = [p for version in pack_versions(folder, chains, dedup=dedup) for p in version]
    return (sum(f.stat().st_size for f in folder.glob("*.h5")), sum(p.images for p in packed),
            sum(p.referenced_images for p in packed))


def stdlib_chains(tmp: Path, concepts: int, versions: int, mb: float
                  ) -> tuple[list[list[tuple[str, str, str]]], int]:
    """Version chains of real source (see the module docstring); as :func:`store`."""
    import random
    import sysconfig
    import zipfile

    base = Path(sysconfig.get_paths()["stdlib"])
    files = [(str(p.relative_to(base)), p.read_bytes()) for p in sorted(base.rglob("*.py"))
             if "site-packages" not in p.parts and p.stat().st_size <= P.max_file_bytes]
    rng = random.Random(0)
    out, source, start = [], 0, 0
    for c in range(concepts):
        tree: dict[str, bytes] = {}
        while sum(map(len, tree.values())) < mb * 1e6 and start < len(files):
            name, data = files[start]
            tree[f"proj{c}/{name}"] = data
            start += 1
        rows = []
        for v in range(versions):
            if v:
                for name in rng.sample(sorted(tree), 2):
                    tree[name] += f"\n# changed in v{v}\n".encode()
                tree[f"proj{c}/added_v{v}.py"] = f"VERSION = {v}\n".encode() * 50
            rid = f"{c + 1:03d}{v:02d}"
            archive = tmp / "dl" / f"{rid}.zip"
            archive.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, data in tree.items():
                    zf.writestr(name, data)
            record = {"id": int(rid), "conceptrecid": f"c{c}",
                      "metadata": {"license": {"id": "mit"}}}
            output = write_record(tmp / "records", rid, [SourceArchive("p.zip", archive)],
                                  processing=P, record=record, labels=record_labels(record))
            source += output.source_bytes
            rows.append((rid, str(output.hdf5), f"c{c}"))
        out.append(rows)
    return out, source


def report(tmp: Path, chains: list, source: int) -> None:
    started = time.perf_counter()
    plain, plain_pages, _ = pack(tmp / "plain", chains, dedup=False)
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    dedup, pages, referred = pack(tmp / "dedup", chains, dedup=True)
    dedup_s = time.perf_counter() - started
    print(f"  without de-duplication: {plain:,} bytes = {plain / source:.3f} per source "
          f"byte, {plain_pages:,} pages stored, packed in {plain_s:.2f} s")
    print(f"  with de-duplication:    {dedup:,} bytes = {dedup / source:.3f} per source "
          f"byte, {pages:,} pages stored ({referred:,} referred), packed in {dedup_s:.2f} s")
    print(f"  ratio: {dedup / plain:.2f} of the bytes, {pages / plain_pages:.2f} of the pages")


def old_layout(source: Path, target: Path) -> int:
    """The same records in the pre-issue-9 layout (see the module docstring); its size."""
    vlen = h5py.string_dtype("utf-8")
    old_files = np.dtype([("path", vlen), ("first_image", "<i8"), ("image_count", "<i8"),
                          ("size", "<i8"), ("sha256", h5py.string_dtype("ascii", 64)),
                          ("extension", vlen)])
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        records = dst.create_group("records")
        for rid, group in src["records"].items():
            new = records.create_group(rid)
            table = group["files"][()]
            rows = [(r["path"].decode(), r["first_image"], r["image_count"], r["size"],
                     r["sha256"].decode(), r["extension"].decode()) for r in table]
            new.create_dataset("images", data=group["images"][()], chunks=(
                max(1, min(64, len(group["images"]))), 80, 80), compression="gzip",
                compression_opts=4)
            new.create_dataset("files", data=np.array(rows, dtype=old_files),
                               **({"chunks": True, "compression": "gzip"} if rows else {}))
            meta = read_metadata(group)
            new.create_dataset("metadata.json", data=json.dumps(meta, indent=1),
                               dtype=vlen)
            attrs = dict(group.attrs)
            attrs.update({f"attr_{i}": "x" * 12 for i in range(14 - len(attrs))})
            new.attrs.update(attrs)
    return target.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concepts", type=int, default=20)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--stdlib", type=int, default=8)
    parser.add_argument("--mb", type=float, default=1.5)
    parser.add_argument("--small", type=int, default=60)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.python_version()}, "
          f"{dataclasses.asdict(P)['compression_level']=}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        chains, source, _ = store(tmp / "chains", Corpus(seed=9).chains(args.concepts,
                                                                          args.versions))
        records = sum(len(c) for c in chains)
        print(f"version chains: {args.concepts} concepts x {args.versions} versions = "
              f"{records} records, {source:,} bytes of converted source "
              f"({time.perf_counter() - started:.1f} s to convert)")
        report(tmp / "chains", chains, source)

        started = time.perf_counter()
        real, real_source = stdlib_chains(tmp / "stdlib", args.stdlib, args.versions, args.mb)
        print(f"real source: {args.stdlib} concepts x {args.versions} versions of ~{args.mb} MB "
              f"each, {real_source:,} bytes of converted source "
              f"({time.perf_counter() - started:.1f} s to convert)")
        report(tmp / "stdlib", real, real_source)

        small_chains, small_source, _ = store(tmp / "small", Corpus(seed=10).chains(
            args.small, 1, flavour="small"))
        new_size, _, _ = pack(tmp / "small-new", small_chains, dedup=False)
        old_size = old_layout(tmp / "small-new" / "part-000001.h5", tmp / "small-old.h5")
        print(f"small records: {args.small} records, {small_source:,} bytes of source")
        print(f"  layout before issue 9: {old_size:,} bytes = {old_size / small_source:.2f} per "
              f"source byte ({old_size / args.small:,.0f} per record)")
        print(f"  this layout:           {new_size:,} bytes = {new_size / small_source:.2f} per "
              f"source byte ({new_size / args.small:,.0f} per record)")


if __name__ == "__main__":
    main()
