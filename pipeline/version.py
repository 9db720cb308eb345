"""Assemble the next immutable dataset version from the records processed since the last one.

SPEC section 6. A version is a *flat* folder ``<workdir>/versions/<version>/`` (Kaggle's client
skips sub-folders, KAGGLE_PROTOCOL.md §3.1; Zenodo records have no folders)::

    part-000001.h5 ...     the records, one HDF5 group /records/<id>/ each (see below)
    index.csv, index.json  every live record: id, concept, DOI, part, counts, checksums, versions
    datapackage.json       Frictionless Data Package describing every file
    dataset-metadata.json  Kaggle's metadata (id, title, licenses, keywords, description)
    README.md              the dataset card;  CHANGELOG.md  added/updated/removed, newest first
    SHA256SUMS             ``sha256sum -c`` format, every other file

It is written to ``versions/.tmp-<version>/``, verified, and only then renamed into place, so a
killed run leaves either no version or a complete one; the state entry is saved after the rename.

**Why parts carry over.** Zenodo's newversion draft inherits the previous version's files
(ZENODO_API.md §5.3): a part that stays byte-identical under the same name is kept there and never
uploaded again, so a version uploads only its new part and the small metadata files. The records
added or updated by a version go into new part(s); older parts are hard-linked (or copied) from
the previous folder unchanged. Every record group in a version's parts is live, exactly once, so
:mod:`pipeline.loader` (or plain h5py) can read every part of a folder without the index.

**Compaction policy** (:func:`plan_parts`). A record may hold at most 100 files (ZENODO_API.md
§5.5), and a version has 7 fixed files, so parts are capped at
``min(dataset.max_parts, 100 - 7)``. (1) A part with no live record left is dropped. (2) A part
holding a record that was updated or removed is rewritten: its live records move into this
version's new part (the cost of a consistent folder is re-uploading that part). (3) When the
carried parts plus the new ones would exceed the cap, the smallest carried parts are merged into
the new part until the count is at most three quarters of the cap, so one larger compaction
happens every ~cap/4 versions instead of a small re-upload in every version. New parts are cut at
:data:`PART_MAX_BYTES`. Records are copied between HDF5 files with h5py's ``copy`` (H5Ocopy: raw
chunks, no recompression; :func:`pipeline.store.copy_record`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import h5py

from pipeline import __version__
from pipeline.dataset_card import (
    changelog,
    changelog_entry,
    datapackage,
    index_csv,
    index_json,
    kaggle_metadata,
    readme,
    sha256sums,
)
from pipeline.errors import PipelineError
from pipeline.fsutil import dumps_json, file_digest
from pipeline.publish import BuiltVersion
from pipeline.state import State
from pipeline.store import copy_record

FIXED_FILES = ("index.csv", "index.json", "datapackage.json", "dataset-metadata.json",
               "README.md", "CHANGELOG.md", "SHA256SUMS")
ZENODO_MAX_FILES = 100          # files per Zenodo record (ZENODO_API.md §5.5)
PART_MAX_BYTES = 2 * 1024**3    # a new part is cut at about this size
PART_FORMAT = "code-images-part/1"
_PART_NAME = re.compile(r"^part-(\d{6})\.h5$")


@dataclass(frozen=True)
class Changes:
    """What a new version changes relative to the previous index (ids sorted numerically)."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    removed: Mapping[str, str]   # id -> why it left the index
    live: tuple[str, ...]        # every record in the new index

    @property
    def empty(self) -> bool:
        return not (self.added or self.updated or self.removed)


@dataclass(frozen=True)
class PartPlan:
    """Which previous parts carry over byte-identical and which records go into new parts."""

    carry: tuple[str, ...]
    new: tuple[tuple[str, tuple[str, ...]], ...]   # (part name, record ids) in write order
    compacted: tuple[str, ...]   # previous parts whose live records moved into the new parts
    dropped: tuple[str, ...]     # previous parts with no live record left


def id_key(record_id: str) -> tuple[int, int | str]:
    """Sort key for record ids: numerically when they are numbers (Zenodo ids grow with time)."""
    return (0, int(record_id)) if record_id.isdigit() else (1, record_id)


def version_key(version: str) -> tuple[int, str]:
    """Sort key for version strings ``"<n>.<YYYYMMDD>"``: by ``n``."""
    head, _, rest = version.partition(".")
    return (int(head) if head.isdigit() else -1, rest)


def next_version(versions: Iterable[Mapping[str, Any]], today: date) -> str:
    """``"<n>.<YYYYMMDD>"`` with ``n`` one more than the highest recorded version number.

    Derived from the state, not the clock alone: two builds on one day still get distinct,
    ordered strings, and the date is only a reader's aid.
    """
    n = max((version_key(str(v["version"]))[0] for v in versions), default=0)
    return f"{max(n, 0) + 1}.{today:%Y%m%d}"


def _gone_reason(record: Mapping[str, Any] | None) -> str:
    if record is None:
        return "no longer in the state"
    status = record.get("status")
    reason = record.get("reason")
    return f"{status}: {reason}" if reason else f"now {status}"


def decide_changes(
    records: Mapping[str, Mapping[str, Any]],
    previous: Iterable[str],
    *,
    policy: str = "all",
    excluded_records: Iterable[str] = (),
    excluded_concepts: Iterable[str] = (),
) -> Changes:
    """Which records the next version adds, updates and removes, given the previous index ids.

    Live: status ``done`` and not excluded; with ``policy == "latest"`` only the newest record
    (highest id) of each concept, so a new version of a concept replaces the older one. Updated:
    live, already indexed, and ``version`` reset to None by :meth:`State.apply_outcome` because
    its revision or checksums changed.
    """
    previous = set(previous)
    excluded_records, excluded_concepts = set(excluded_records), set(excluded_concepts)
    why: dict[str, str] = {}
    live: dict[str, Mapping[str, Any]] = {}
    for rid, rec in records.items():
        if rec.get("status") != "done":
            continue
        if rid in excluded_records or rec.get("concept") in excluded_concepts:
            why[rid] = "excluded by the manifest"
        else:
            live[rid] = rec
    if policy == "latest":
        newest: dict[str, str] = {}
        for rid, rec in live.items():
            concept = str(rec.get("concept") or rid)
            if concept not in newest or id_key(rid) > id_key(newest[concept]):
                newest[concept] = rid
        for rid in list(live):
            winner = newest[str(live[rid].get("concept") or rid)]
            if winner != rid:
                why[rid] = f"superseded by {winner}"
                del live[rid]
    return Changes(
        added=tuple(sorted(set(live) - previous, key=id_key)),
        updated=tuple(sorted((r for r in set(live) & previous if live[r].get("version") is None),
                             key=id_key)),
        removed={r: why.get(r) or _gone_reason(records.get(r))
                 for r in sorted(previous - set(live), key=id_key)},
        live=tuple(sorted(live, key=id_key)),
    )


def _pack(sizes: Mapping[str, int], part_max_bytes: int) -> list[list[str]]:
    packs: list[list[str]] = []
    used = 0
    for rid in sorted(sizes, key=id_key):
        if not packs or (used + sizes[rid] > part_max_bytes and packs[-1]):
            packs.append([])
            used = 0
        packs[-1].append(rid)
        used += sizes[rid]
    return packs


def plan_parts(
    live_by_part: Mapping[str, Mapping[str, int]],
    part_sizes: Mapping[str, int],
    incoming: Mapping[str, int],
    *,
    dirty: Iterable[str] = (),
    next_number: int,
    max_parts: int,
    part_max_bytes: int = PART_MAX_BYTES,
) -> PartPlan:
    """Apply the compaction policy of the module docstring.

    ``live_by_part``: for each previous part, its records that stay live and unchanged, with their
    bytes; ``part_sizes``: each previous part's file size; ``dirty``: previous parts holding a
    record that was updated or removed; ``incoming``: bytes of the records added or updated now.
    Raises ``ValueError`` if even full compaction cannot meet ``max_parts``.
    """
    dropped = sorted(p for p in part_sizes if not live_by_part.get(p))
    compacted = sorted(p for p in set(dirty) & set(part_sizes) if live_by_part.get(p))
    carry = sorted(set(part_sizes) - set(dropped) - set(compacted))
    moving = dict(incoming)
    for p in compacted:
        moving.update(live_by_part[p])

    if len(carry) + len(_pack(moving, part_max_bytes)) > max_parts:
        target = max(1, max_parts * 3 // 4)
        while carry and len(carry) + len(_pack(moving, part_max_bytes)) > target:
            smallest = min(carry, key=lambda p: (part_sizes[p], p))
            carry.remove(smallest)
            compacted.append(smallest)
            moving.update(live_by_part[smallest])
    packs = _pack(moving, part_max_bytes)
    if len(carry) + len(packs) > max_parts:
        raise ValueError(f"{len(carry) + len(packs)} parts needed, at most {max_parts} allowed")
    new = tuple((f"part-{next_number + i:06d}.h5", tuple(pack)) for i, pack in enumerate(packs))
    return PartPlan(carry=tuple(carry), new=new, compacted=tuple(sorted(compacted)),
                    dropped=tuple(dropped))


# -- I/O ---------------------------------------------------------------------------------------

def _error(message: str, *, record: str | None = None, hint: str | None = None) -> PipelineError:
    return PipelineError(message, stage="version", record=record, hint=hint)


def _count(value: Any) -> int:
    if isinstance(value, int):
        return value
    return len(value) if isinstance(value, list | dict) else 0


def _record_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    """DOI, title, version and concept from a record's metadata JSON (``record`` or top level)."""
    rec = meta.get("record") if isinstance(meta.get("record"), dict) else meta
    inner = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    version = rec.get("version") if isinstance(rec.get("version"), str) else inner.get("version")
    return {"doi": rec.get("doi") or inner.get("doi"), "title": rec.get("title") or
            inner.get("title") or "", "record_version": version,
            "concept": rec.get("concept_id") or rec.get("conceptrecid")}


def _new_entry(workdir: Path, rid: str, rec: Mapping[str, Any], version: str,
               previous: Mapping[str, Any] | None) -> dict[str, Any]:
    output = rec.get("output")
    h5_path = workdir / str(output) if output else None
    if h5_path is None or not h5_path.is_file():
        raise _error(f"its output {output!r} is missing from {workdir}", record=rid,
                     hint="run `process` for this record again (`detect --record ID`)")
    json_path = workdir / rec["metadata"] if rec.get("metadata") else h5_path.with_suffix(".json")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _error(f"its metadata {json_path} is unreadable: {exc}", record=rid,
                     hint="run `process` for this record again") from exc
    fields = _record_fields(meta)
    digest = file_digest(h5_path)
    recorded = rec.get("sha256") or (meta.get("hdf5") or {}).get("sha256")
    if recorded and recorded != digest:
        raise PipelineError(f"its output {h5_path} changed since it was processed",
                            stage="version", record=rid, expected=recorded, got=digest,
                            hint="the file was not packed; run `process` for this record again")
    return {
        "id": rid, "concept": str(rec.get("concept") or fields["concept"] or ""),
        "doi": fields["doi"], "record_version": fields["record_version"],
        "title": fields["title"], "part": None, "files": _count(rec.get("files")),
        "images": _count(rec.get("images")), "bytes": h5_path.stat().st_size,
        "source_checksums": dict(rec.get("checksums") or {}),
        "output_sha256": digest,
        "added_in": (previous or {}).get("added_in") or version, "dataset_version": version,
        "_h5": str(h5_path), "_json": str(json_path),
    }


def _write_part(path: Path, version: str, members: list[tuple[str, dict[str, Any]]],
                old_folder: Path | None) -> None:
    """One part: ``/records/<id>/`` per record, copied with H5Ocopy (raw chunks)."""
    old_files: dict[str, h5py.File] = {}
    try:
        with h5py.File(path, "w") as out:
            out.attrs.update({"format": PART_FORMAT, "dataset_version": version,
                              "pipeline_version": __version__, "records": len(members)})
            group = out.create_group("records")
            for rid, entry in members:
                if "_h5" in entry:   # from the record's own output file
                    with h5py.File(entry["_h5"], "r") as src:
                        copy_record(src, group.create_group(rid))
                else:                # moved out of a compacted previous part
                    if old_folder is None:
                        raise _error("no previous version folder to compact from", record=rid)
                    name = entry["part"]
                    if name not in old_files:
                        old_files[name] = h5py.File(old_folder / name, "r")
                    old = old_files[name]
                    old.copy(old[f"records/{rid}"], group, name=rid)
    finally:
        for handle in old_files.values():
            handle.close()


def _verify_part(path: Path, members: list[tuple[str, dict[str, Any]]]) -> None:
    with h5py.File(path, "r") as part:
        have = set(part["records"])
        for rid, entry in members:
            if rid not in have:
                raise _error(f"{path.name} lacks its group /records/{rid}", record=rid)
            images = part[f"records/{rid}"].get("images")
            if images is None or (entry["images"] and images.shape[0] != entry["images"]):
                got = None if images is None else images.shape
                raise PipelineError(f"{path.name}: /records/{rid}/images is wrong",
                                    stage="version", record=rid,
                                    expected=f"{entry['images']} images", got=got,
                                    hint="process the record again")


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _previous(state: State, workdir: Path) -> tuple[dict[str, Any] | None, Path | None,
                                                       dict[str, dict[str, Any]]]:
    prev = state.latest_version
    if prev is None:
        return None, None, {}
    folder = workdir / prev["folder"]
    try:
        index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _error(f"the previous version folder {folder} is missing or unreadable ({exc})",
                     hint="restore the workdir (the workflow caches it) or download the files "
                     "of the latest Zenodo version into that folder") from exc
    return prev, folder, {e["id"]: e for e in index["records"]}


def _clean_orphans(versions_dir: Path, state: State) -> None:
    """Remove temp folders and folders of versions the state never recorded (a killed build)."""
    if not versions_dir.is_dir():
        return
    known = {Path(v["folder"]).name for v in state.versions}
    for path in versions_dir.iterdir():
        if path.is_dir() and (path.name.startswith(".tmp-") or path.name not in known):
            shutil.rmtree(path)


def build_version(manifest: Any, state: State, workdir: str | os.PathLike[str], *,
                  now: datetime | None = None) -> BuiltVersion | None:
    """Build the next version folder, record it in ``state`` (saved); None when nothing changed."""
    workdir = Path(workdir)
    now = now or datetime.now(UTC)
    # The previous folder is lost when a CI cache was evicted: rebuild it from Zenodo (SPEC 7).
    # Imported here because restore uses the Zenodo publisher, which imports this module.
    from pipeline.restore import restore_missing_version

    restore_missing_version(state, workdir, manifest.destinations.zenodo)
    prev, prev_folder, prev_index = _previous(state, workdir)
    src = manifest.source
    changes = decide_changes(state.records, prev_index, policy=src.versions,
                             excluded_records=src.exclusions.records,
                             excluded_concepts=src.exclusions.concepts)
    if changes.empty:
        return None
    version = next_version(state.versions, now.date())
    incoming = {rid: _new_entry(workdir, rid, state.records[rid], version, prev_index.get(rid))
                for rid in (*changes.added, *changes.updated)}
    kept = {rid: dict(prev_index[rid]) for rid in changes.live if rid not in incoming}
    live_by_part: dict[str, dict[str, int]] = {}
    for rid, entry in kept.items():
        live_by_part.setdefault(entry["part"], {})[rid] = int(entry.get("bytes") or 0)
    dirty = {prev_index[rid]["part"] for rid in (*changes.updated, *changes.removed)}
    prev_parts = {n: int(prev["sizes"][n]) for n in (prev["files"] if prev else {})
                  if _PART_NAME.match(n)}
    numbers = [int(m.group(1)) for v in state.versions for n in v.get("files", {})
               if (m := _PART_NAME.match(n))]
    limit = min(manifest.dataset.max_parts, ZENODO_MAX_FILES - len(FIXED_FILES))
    try:
        plan = plan_parts(live_by_part, prev_parts,
                          {rid: e["bytes"] for rid, e in incoming.items()}, dirty=dirty,
                          next_number=max(numbers, default=0) + 1, max_parts=limit)
    except ValueError as exc:
        raise _error(f"cannot fit the dataset into Zenodo's {ZENODO_MAX_FILES} files: {exc}",
                     hint="raise dataset.max_parts (at most 93)") from exc

    entries = {**kept, **incoming}
    versions_dir = workdir / "versions"
    _clean_orphans(versions_dir, state)
    tmp = versions_dir / f".tmp-{version}"
    tmp.mkdir(parents=True)
    sha: dict[str, str] = {}
    md5: dict[str, str] = {}
    for name in plan.carry:
        assert prev is not None and prev_folder is not None
        try:
            os.link(prev_folder / name, tmp / name)
        except OSError:
            shutil.copy2(prev_folder / name, tmp / name)
        if (tmp / name).stat().st_ino != (prev_folder / name).stat().st_ino and \
                file_digest(tmp / name) != prev["files"][name]:
            raise _error(f"carried part {name} differs from version {prev['version']}",
                         hint=f"the folder {prev_folder} was modified; restore it")
        sha[name], md5[name] = prev["files"][name], prev["md5"][name]
    for name, rids in plan.new:
        members = [(rid, entries[rid]) for rid in rids]
        _write_part(tmp / name, version, members, prev_folder)
        _verify_part(tmp / name, members)
        for rid in rids:
            entries[rid]["part"] = name
    rows = sorted((_public(e) for e in entries.values()), key=lambda e: id_key(e["id"]))

    parts = sorted((*plan.carry, *(name for name, _ in plan.new)))
    notes = changelog_entry(version, now.date(), changes,
                            {rid: e.get("title", "") for rid, e in entries.items()},
                            live=len(rows))
    counts = {"records": len(rows), "concepts": len({e["concept"] for e in rows}),
              "files": sum(e["files"] for e in rows), "images": sum(e["images"] for e in rows),
              "parts": len(parts), "added": len(changes.added), "updated": len(changes.updated),
              "removed": len(changes.removed), "compacted": len(plan.compacted)}
    concept_doi = state.destinations.get("zenodo", {}).get("concept_doi")
    texts = {
        "index.json": index_json(version, rows),
        "index.csv": index_csv(rows),
        "CHANGELOG.md": changelog([notes, *(v["notes"] for v in reversed(state.versions))]),
        "README.md": readme(manifest, version=version, created=now, counts=counts, notes=notes,
                            parts=parts, concept_doi=concept_doi),
        "dataset-metadata.json": dumps_json(kaggle_metadata(manifest, counts)),
    }
    for name, text in texts.items():
        (tmp / name).write_text(text, encoding="utf-8")
    sizes = {name: (tmp / name).stat().st_size for name in (*parts, *texts)}
    for name in (*(n for n, _ in plan.new), *texts):
        sha[name], md5[name] = file_digest(tmp / name), file_digest(tmp / name, "md5")
    package = datapackage(manifest, version=version, created=now,
                          files={n: (sizes[n], sha[n]) for n in sorted(sizes)})
    (tmp / "datapackage.json").write_text(dumps_json(package), encoding="utf-8")
    (tmp / "SHA256SUMS").write_text(sha256sums({**sha, "datapackage.json":
                                               file_digest(tmp / "datapackage.json")}),
                                    encoding="utf-8")
    for name in ("datapackage.json", "SHA256SUMS"):
        sizes[name] = (tmp / name).stat().st_size
        sha[name], md5[name] = file_digest(tmp / name), file_digest(tmp / name, "md5")

    on_disk = {p.name for p in tmp.iterdir()}
    if on_disk != set(sha) or any(sizes[n] == 0 for n in on_disk):
        raise _error(f"version folder {tmp} holds {sorted(on_disk)}, expected {sorted(sha)} "
                     "(all non-empty; Zenodo rejects empty files)")
    counts["bytes"] = sum(sizes.values())
    _fsync_tree(tmp)
    final = versions_dir / version
    os.rename(tmp, final)

    entry = {"version": version, "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "folder": f"versions/{version}", "notes": notes, "counts": counts,
             "files": dict(sorted(sha.items())), "md5": dict(sorted(md5.items())),
             "sizes": dict(sorted(sizes.items())), "added": list(changes.added),
             "updated": list(changes.updated), "removed": list(changes.removed),
             "published": {}}
    state.versions.append(entry)
    for rid in incoming:
        state.records[rid]["version"] = version
    state.save()
    return built_version(entry, workdir)


def _public(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def built_version(entry: Mapping[str, Any], workdir: str | os.PathLike[str]) -> BuiltVersion:
    """The :class:`BuiltVersion` of a ``state.versions`` entry; checks that its folder is whole."""
    folder = Path(workdir) / entry["folder"]
    for name, size in entry["sizes"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            raise _error(f"version {entry['version']}: {path} is missing or has the wrong size",
                         hint="restore the workdir, or delete the version entry and run "
                         "`version` again")
    return BuiltVersion(version=entry["version"], folder=folder, files=dict(entry["files"]),
                        md5=dict(entry["md5"]), sizes=dict(entry["sizes"]),
                        notes=entry["notes"], counts=dict(entry["counts"]))
