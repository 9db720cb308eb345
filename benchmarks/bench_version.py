"""``version`` at a million records: every record read (before) vs the touched records only.

Before issue 8's change-tracking, ``version`` decided the next version and its counts from
every record of the state, reading every records file (about a minute at a million records).
It now reads the records touched since the last version and their concepts' index entries
(:func:`pipeline.version.decide`); the full scan remains the fallback when the state does not
know what changed (``touched`` is null) or the policy/exclusions changed. This benchmark runs
both paths on identical copies of one state, side by side, for two days:

* ``A``: 1,950 new records of new concepts and 50 updated records anywhere in the id range
  (the 2,000-record day of ``bench_state``);
* ``B``: as A, but 500 of the new records are new versions of random old concepts
  (``source.versions: latest`` then supersedes 500 records spread over the whole id range).

The state: ``BENCH_RECORDS`` (default 1,000,000) done records, consecutive ids (10,000 per
records file, the densest case), two records per concept (the newer live, in one of 40 parts);
the previous version entry lists the 40 parts and their (real, small) index files. The day's
records have real HDF5 outputs (one small record converted with :func:`write_record`, copied).
Printed: the decision's wall time (:func:`pipeline.version.decide`, on a freshly loaded
state), for day A also the whole ``build_version`` (which also writes the day's 2,000 records
into a new part), records files read, and the counts and changes of both paths.

Run: ``python -m benchmarks.bench_version``
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from benchmarks.bench_state import FIRST_ID, entry
from pipeline.dataset import FIXED_FILES, index_name, part_name
from pipeline.dataset_card import index_csv
from pipeline.manifest import from_dict, validate
from pipeline.state import State, counted
from pipeline.store import SourceArchive, write_record
from pipeline.version import CARRIED_COUNTS, build_version, decide, selection_key

N = int(os.environ.get("BENCH_RECORDS", 1_000_000))
PARTS = 40
CONCEPT0 = 90_000_000


def manifest(root: Path) -> Any:
    data = {"source": {"versions": "latest"}, "destinations": {},
            "dataset": {"title": "Code Images from Zenodo Software Records",
                        "description": "Source code of research software as code images.",
                        "creators": [{"name": "Doe, Jane"}], "keywords": ["source code"]}}
    return from_dict(validate(data), path=root / "data_manifest.yaml")


def write_state(root: Path, m: Any) -> None:
    """The million-record state and its previous version (see the module docstring)."""
    rng = random.Random(1)
    state = State(path=root / "state" / "state.json")
    version = "1.20261128"
    totals = dict.fromkeys(CARRIED_COUNTS, 0)
    live_per_part = (N // 2 + PARTS - 1) // PARTS
    for i in range(N):
        rid = str(FIRST_ID + i)
        rec = entry(rng, i, version)
        rec["concept"] = str(CONCEPT0 + i // 2)
        if i % 2:     # the newer record of its concept: live
            rec.update(part=part_name(1 + (i // 2) // live_per_part), added_in=version)
            for key, value in counted(rec).items():
                totals[key] += value
            totals["records"] += 1
        state.records[rid] = rec
        if i % 2:
            state.concepts[rec["concept"]] = {"done": [str(FIRST_ID + i - 1), rid]}
    totals["concepts"] = N // 2
    folder = root / "work" / "versions" / version
    folder.mkdir(parents=True)
    files, md5, sizes, parts = {}, {}, {}, {}
    for k in range(1, PARTS + 1):
        name = part_name(k)
        csv = folder / index_name(name)
        csv.write_text(index_csv([]), encoding="utf-8")
        body = csv.read_bytes()
        files[name], md5[name], sizes[name] = f"sha256:{k:064x}", f"md5:{k:032x}", 10**9
        files[csv.name] = "sha256:" + hashlib.sha256(body).hexdigest()
        md5[csv.name], sizes[csv.name] = "md5:" + hashlib.md5(body).hexdigest(), len(body)
        first = FIRST_ID + 2 * (k - 1) * live_per_part + 1
        parts[name] = {"records": live_per_part, "first": str(first),
                       "last": str(min(first + 2 * (live_per_part - 1), FIRST_ID + N - 1))}
    for name in FIXED_FILES:
        sizes[name] = 10_000
    state.versions.append({
        "version": version, "volume": 1, "created": "2026-11-28T06:00:00Z",
        "folder": f"versions/{version}", "notes": f"## {version}\n", "counts": totals,
        "files": files, "md5": md5, "sizes": sizes, "written": sorted(files), "parts": parts,
        "withdrawn": {}, "published": {"zenodo": {}}, "selection": selection_key(m.source)})
    state.records.touched = {}
    state.save()


def one_output(root: Path) -> tuple[Path, Path, Any]:
    archive = root / "tool.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"tool/src/m{i}.py", "".join(f"def f{j}(x):\n    return x * {j}\n"
                                                     for j in range(60)))
    out = write_record(root / "one", "1", [SourceArchive("tool.zip", archive)],
                       processing=manifest(root).processing,
                       record={"id": 1, "recid": "1", "conceptrecid": "1",
                               "metadata": {"title": "Tool 1"}})
    return out.hdf5, out.metadata, out


def the_day(state: State, workdir: Path, old_concepts: int, made: tuple[Path, Path, Any]
            ) -> None:
    """Fold the day's outcomes into the state, as ``ingest_outcomes`` does."""
    h5, meta, out = made
    rng = random.Random(2)
    records = workdir / "records"
    records.mkdir(exist_ok=True)
    old = iter(rng.sample(range(N // 2), old_concepts))
    updated = [str(FIRST_ID + 2 * k + 1) for k in rng.sample(range(N // 2), 50)]
    day = [(str(FIRST_ID + N + j), str(CONCEPT0 + next(old)) if j < old_concepts
            else str(CONCEPT0 + N + j)) for j in range(1_950)]
    day += [(rid, str(CONCEPT0 + (int(rid) - FIRST_ID) // 2)) for rid in updated]
    for rid, concept in day:
        shutil.copyfile(h5, records / f"{rid}.h5")
        shutil.copyfile(meta, records / f"{rid}.json")
        state.apply_outcome({"id": rid, "status": "done", "concept": concept, "revision": 5,
                             "checksums": {"tool.zip": f"md5:{rng.getrandbits(128):032x}"},
                             "attempts": 0, "reason": "", "images": out.images,
                             "files": out.files, "output": f"records/{rid}.h5",
                             "sha256": out.hdf5_sha256})


def run(base: Path, m: Any, name: str, old_concepts: int, *, full: bool,
        made: tuple[Path, Path, Any], build: bool) -> tuple[float, float, int, dict[str, int]]:
    """(seconds to decide, seconds for the whole ``build_version`` or 0, records files read,
    counts)."""
    root = base / name
    shutil.copytree(base / "state", root / "state")
    shutil.copytree(base / "work", root / "work")
    state = State.load(root / "state" / "state.json")
    the_day(state, root / "work", old_concepts, made)
    state.save()
    state = State.load(root / "state" / "state.json")
    if full:
        state.records.touched = None      # the fallback: what `version` did before
    started = time.perf_counter()
    decision = decide(state, m.source)
    decided = time.perf_counter() - started
    read = len(state.records._files)
    counts = {**decision.counts, "added": len(decision.changes.added),
              "removed": len(decision.changes.removed)}
    wall = 0.0
    if build:
        state = State.load(root / "state" / "state.json")
        if full:
            state.records.touched = None
        started = time.perf_counter()
        built = build_version(m, state, root / "work",
                              source=lambda n, md5: base / "work" / "versions" / "1.20261128"
                              / n)
        wall = time.perf_counter() - started
        assert built is not None
        assert counts == {k: built.counts[k] for k in counts}
    shutil.rmtree(root)
    return decided, wall, read, counts


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        m = manifest(base)
        started = time.perf_counter()
        write_state(base, m)
        files = len(list((base / "state" / "state.records").glob("*.jsonl")))
        print(f"state of {N:,} records ({files} records files) written in "
              f"{time.perf_counter() - started:.0f} s")
        made = one_output(base)
        for label, old_concepts, build in (
                ("A: 1,950 new concepts + 50 updated", 0, True),
                ("B: as A, 500 of them new versions of old concepts", 500, False)):
            before = run(base, m, "before", old_concepts, full=True, made=made, build=build)
            after = run(base, m, "after", old_concepts, full=False, made=made, build=build)
            print(f"{label}:")
            for what, r in (("every record (before)", before), ("touched only (after) ", after)):
                whole = f", whole build_version {r[1]:6.1f} s" if build else ""
                print(f"  {what}: decide {r[0]:6.2f} s{whole}, {r[2]:4d} records files "
                      f"read; counts {r[3]}")
            print(f"  ratio before/after: decide {before[0] / after[0]:.1f}x"
                  + (f", whole version {before[1] / after[1]:.1f}x" if build else "")
                  + f"; same counts and changes: {before[3] == after[3]}")


if __name__ == "__main__":
    main()
