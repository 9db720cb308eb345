"""Assemble the next immutable dataset version from the records processed since the last one,
without the previous version's bytes (SPEC section 6; issue 8).

A version is a new version of the newest **volume** (one Zenodo concept record). Its files, all
flat (Kaggle's client skips sub-folders, KAGGLE_PROTOCOL.md §3.1; Zenodo records have none)::

    part-NNNNNN.h5         records, one HDF5 group /records/<id>/ each (never rewritten)
    part-NNNNNN.csv        the part's index: one row per *live* record of that part
    catalog.json           every volume (concept DOI, record range, size, parts), withdrawn ids
    datapackage.json       Frictionless Data Package describing every file of the volume
    dataset-metadata.json  Kaggle's metadata;  README.md the card;  CHANGELOG.md newest entries
    SHA256SUMS             ``sha256sum -c`` format, every other file of the volume

**A version is a listing.** What the builder writes to ``versions/<version>/`` is only what is
new: the new part(s), the part indexes that changed, and the six small fixed files. Every other
file of the volume is *carried over* as a listing entry (name, size, md5, sha256, from the
state): Zenodo's newversion draft inherits the previous files (ZENODO_API.md §5.3), so the
publisher keeps them there and uploads only the written files. A fresh runner with nothing but
the state file therefore never downloads the previous version; the disk a run needs is its new
data (plus one part index at a time, see below). The Actions cache is an optimisation only.

**Why parts are never rewritten.** A record updated or removed stays in its part's bytes and
leaves that part's index (``part-NNNNNN.csv``); an updated record's new data goes into this
version's new part. Rewriting a part would cost downloading and uploading it, and with
``source.versions: latest`` nearly every day supersedes records spread over many old parts, so
runs would cost a multiple of the dataset. An index file is small (about 700 bytes a record) and
only the indexes of touched parts are rewritten: when one is not on disk it is fetched by need,
one at a time and verified, through the ``source`` callback the orchestration passes (the
builder itself does no network I/O). A part whose records all left is dropped from the volume.
Readers go through the indexes (:mod:`pipeline.loader` does): the parts hold dead groups.

**Volumes.** When the current volume's next version would hold more than
``destinations.zenodo.volume_max_bytes`` or more parts than
:func:`pipeline.dataset.max_parts_per_volume` (``dataset.max_parts``, and 100 files a record), the
version starts a new volume holding only the new parts. Earlier volumes are then closed: their
records updated or removed later are listed as *withdrawn* in ``catalog.json``.

It is written to ``versions/.tmp-<version>/``, verified, and only then renamed into place, so a
killed run leaves either no version or a complete one; the state entry is saved after the rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import h5py

from pipeline import __version__
from pipeline.code_images import METADATA
from pipeline.dataset import (
    CATALOG,
    FIXED_FILES,
    PART_FORMAT,
    ZENODO_MAX_FILES,
    BuiltVersion,
    Changes,
    id_key,
    index_name,
    is_part,
    latest_by_volume,
    max_parts_per_volume,
    newest_within,
    part_name,
    part_number,
    version_key,
    with_needs,
)
from pipeline.dataset_card import (
    INDEX_SCHEMA,
    catalog_json,
    changelog,
    changelog_entry,
    index_csv,
    index_row,
    kaggle_metadata,
    read_index_csv,
    readme,
    sha256sums,
)
from pipeline.dedup import KnownContents, known_for, pack_part
from pipeline.errors import PipelineError
from pipeline.figures import card_section as figures_markdown
from pipeline.fsutil import dumps_json, file_digest
from pipeline.published import Source, find_local
from pipeline.research import (
    CROISSANT,
    card_sections,
    croissant_for,
    datapackage_for,
    record_columns,
    update_totals,
    write_extras,
)
from pipeline.state import State, concept_key, counted, snapshot
from pipeline.store import LIBVER, write_metadata

__all__ = ["BuiltVersion", "Changes", "build_version", "built_version", "decide_changes",
           "find_local", "id_key", "next_version", "version_key"]

PART_MAX_BYTES = 2 * 1024**3    # a new part is cut at about this size
VOLUME_MAX_BYTES = 45_000_000_000
FIXED_RESERVE = 1 << 16          # at least this many bytes reserved for the fixed files


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


# The counts a version carries forward from the previous one (plus the change since).
CARRIED_COUNTS = ("records", "concepts", "files", "images", "redactions")


def selection_key(source: Any) -> str:
    """What besides the records decides the live set: the versions policy and the exclusions.

    Kept in each version entry: when it changes, the next version reads every record once.
    """
    ex = source.exclusions
    text = json.dumps([source.versions, sorted(ex.records), sorted(ex.concepts)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Decision:
    """What the next version changes, and what it costs to know it.

    ``placed`` maps the examined records that are in the previous version to their part (every
    placed record on a full scan); ``counts`` are the version's totals (CARRIED_COUNTS);
    ``concepts`` the concept-index entries to write once the version is built (every concept
    on a full scan, which also drops the others).
    """

    changes: Changes
    placed: dict[str, str]
    counts: dict[str, int]
    concepts: dict[str, list[str]]
    full: bool


def decide(state: State, source: Any) -> Decision:
    """Decide the next version from the records touched since the last one (their files, the
    concept index entries of their concepts and, with ``versions: latest``, the records those
    concepts' newest version moves from or to), never reading the others.

    Every record is read instead when the state does not know what changed since the last
    version (a state from before the index, or more than TOUCHED_MAX records touched), when
    there is no previous version, when the policy or the exclusions changed, or when the
    concept index is missing (a records folder copied without its ``concepts/``).
    """
    prev = state.latest_version
    base = (prev or {}).get("counts") or {}
    touched = state.records.touched
    lost_index = bool(base.get("concepts")) and not any(state.concepts.folder.glob("*.jsonl"))
    if (touched is None or prev is None or prev.get("selection") != selection_key(source)
            or any(k not in base for k in CARRIED_COUNTS) or lost_index):
        return _decide_all(state, source)
    return _decide_touched(state, source, touched, {k: int(base[k]) for k in CARRIED_COUNTS})


def _decide_all(state: State, source: Any) -> Decision:
    records = dict(state.records.items())
    placed = {rid: str(r["part"]) for rid, r in records.items() if r.get("part")}
    changes = decide_changes(records, placed, policy=source.versions,
                             excluded_records=source.exclusions.records,
                             excluded_concepts=source.exclusions.concepts)
    counts = dict.fromkeys(CARRIED_COUNTS, 0)
    for rid in changes.live:
        _add(counts, counted(records[rid]), 1)
    counts["concepts"] = len({concept_key(r, records[r]) for r in changes.live})
    index: dict[str, list[str]] = {}
    for rid, rec in records.items():
        if rec.get("status") == "done":
            index.setdefault(concept_key(rid, rec), []).append(rid)
    return Decision(changes, placed, counts, index, full=True)


def _add(counts: dict[str, int], share: Mapping[str, int], sign: int) -> None:
    counts["records"] += sign
    for key in ("files", "images", "redactions"):
        counts[key] += sign * int(share.get(key, 0))


def _decide_touched(state: State, source: Any, touched: Mapping[str, Mapping[str, Any]],
                    counts: dict[str, int]) -> Decision:
    excluded_records = set(source.exclusions.records)
    excluded_concepts = set(source.exclusions.concepts)

    def live(key: str, ids: Iterable[str]) -> list[str]:
        # as decide_changes: a concept-less record is its own concept ("key" is then its id)
        ok = [] if key in excluded_concepts else [i for i in ids if i not in excluded_records]
        return [max(ok, key=id_key)] if ok and source.versions == "latest" else ok

    now = {rid: state.records.get(rid) for rid in touched}
    done_now: dict[str, list[str]] = {}
    keys = set()
    for rid, before in touched.items():
        if before.get("status") == "done":
            keys.add(concept_key(rid, dict(before)))
        rec = now[rid]
        if rec is not None and rec.get("status") == "done":
            done_now.setdefault(concept_key(rid, rec), []).append(rid)
    keys |= set(done_now)
    old = {k: list((state.concepts.get(k) or {}).get("done") or []) for k in sorted(keys)}
    new = {k: sorted((set(ids) - set(touched)) | set(done_now.get(k, ())), key=id_key)
           for k, ids in old.items()}
    examined = set(touched)
    if source.versions == "latest":   # the newest version of each concept, before and after
        for k in keys:
            examined |= set(live(k, old[k])) | set(live(k, new[k]))
    records = {rid: rec for rid in sorted(examined, key=id_key)
               if (rec := now.get(rid) if rid in now else state.records.get(rid)) is not None}
    # Before: a touched record as it was at the last version, the others as they are.
    before = {rid: dict(touched[rid]) if rid in touched else snapshot(records[rid])
              for rid in examined}
    placed = {rid: str(b["part"]) for rid, b in before.items() if b.get("part")}
    changes = decide_changes(records, placed, policy=source.versions,
                             excluded_records=excluded_records,
                             excluded_concepts=excluded_concepts)
    for rid in examined:
        if before[rid].get("part"):
            _add(counts, before[rid], -1)
    for rid in changes.live:
        _add(counts, counted(records[rid]), 1)
    counts["concepts"] += sum(bool(live(k, new[k])) - bool(live(k, old[k])) for k in keys)
    return Decision(changes, placed, counts, new, full=False)


def _settle_unchanged(state: State, source: Any, decision: Decision) -> None:
    """Nothing to version: forget what was touched (records marked skipped by ``detect``, or
    processed again unchanged), so it is not examined again, when that loses nothing: the
    counts are those of the last version and it was built with the same selection."""
    prev = state.latest_version
    if prev is None or prev.get("selection") != selection_key(source) or \
            any(decision.counts[k] != (prev.get("counts") or {}).get(k) for k in CARRIED_COUNTS):
        return
    _apply_concepts(state, decision)
    state.records.touched = {}
    state.save()


def _apply_concepts(state: State, decision: Decision) -> None:
    """Write the concept index as of the version just built (see :class:`Decision`)."""
    index = state.concepts
    if decision.full:
        index.load_all()
        for rid in list(index):
            del index[rid]
    for key, ids in decision.concepts.items():
        if ids:
            index[key] = {"done": sorted(ids, key=id_key)}
        elif key in index:
            del index[key]


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


def _error(message: str, *, record: str | None = None, hint: str | None = None) -> PipelineError:
    return PipelineError(message, stage="version", record=record, hint=hint)


def _count(value: Any) -> int:
    if isinstance(value, int):
        return value
    return len(value) if isinstance(value, list | dict) else 0


def _record_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    """DOI, title, version and concept from a record's metadata JSON (``record`` or top level)."""
    rec: Mapping[str, Any] = meta["record"] if isinstance(meta.get("record"), dict) else meta
    inner: Mapping[str, Any] = rec["metadata"] if isinstance(rec.get("metadata"), dict) else {}
    version = rec.get("version") if isinstance(rec.get("version"), str) else inner.get("version")
    return {"doi": rec.get("doi") or inner.get("doi"), "title": rec.get("title") or
            inner.get("title") or "", "record_version": version,
            "concept": rec.get("concept_id") or rec.get("conceptrecid")}


def _new_entry(workdir: Path, rid: str, rec: Mapping[str, Any], version: str
               ) -> dict[str, Any]:
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
        "redactions": len(meta.get("redactions") or []),
        "source_checksums": dict(rec.get("checksums") or {}),
        "output_sha256": digest, **record_columns(h5_path),
        "added_in": rec.get("added_in") or version, "dataset_version": version,
        "_h5": str(h5_path), "_json": str(json_path),
    }


def _write_part(path: Path, version: str, members: list[tuple[str, dict[str, Any]]],
                known: KnownContents) -> None:
    """One part: ``/records/<id>/`` per record, each content stored once
    (:func:`pipeline.dedup.pack_part`: contents ``known`` holds are referred to); each member's
    entry gets what was stored and where its other pages are."""
    with h5py.File(path, "w", libver=LIBVER) as out:
        out.attrs.update({"format": PART_FORMAT, "dataset_version": version,
                          "pipeline_version": __version__, "records": len(members)})
        records = out.create_group("records")
        packed = pack_part(records, [(rid, e["_h5"], e["concept"]) for rid, e in members],
                           known, part=path.name)
        for rid, entry in members:   # records stored before their metadata moved inside
            if METADATA not in records[rid]:
                write_metadata(records[rid], json.loads(Path(entry["_json"]).read_text(
                    encoding="utf-8")), 6)
    for (_, entry), p in zip(members, packed, strict=True):
        entry.update(stored_images=p.images, shared_files=p.cross_concept_files,
                     holders=" ".join(p.holders), contents=p.cell,
                     _holder_parts=dict(p.holder_parts))


def _verify_part(path: Path, members: list[tuple[str, dict[str, Any]]]) -> None:
    with h5py.File(path, "r") as part:
        have = set(part["records"])
        for rid, entry in members:
            if rid not in have:
                raise _error(f"{path.name} lacks its group /records/{rid}", record=rid)
            images = part[f"records/{rid}"].get("images")
            if images is None or images.shape[0] != entry["stored_images"]:
                got = None if images is None else images.shape
                raise PipelineError(f"{path.name}: /records/{rid}/images is wrong",
                                    stage="version", record=rid,
                                    expected=f"{entry['stored_images']} images", got=got,
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


def _clean_orphans(versions_dir: Path, state: State) -> None:
    """Remove temp folders and folders of versions the state never recorded (a killed build)."""
    if not versions_dir.is_dir():
        return
    known = {Path(v["folder"]).name for v in state.versions}
    for path in versions_dir.iterdir():
        if path.is_dir() and (path.name.startswith(".tmp-") or path.name not in known):
            shutil.rmtree(path)


def prune_published(state: State, workdir: str | os.PathLike[str],
                    destinations: Iterable[str]) -> list[str]:
    """Delete the folders of versions older than the newest one once the newest is published to
    every destination in ``destinations``; return the versions removed.

    Why: a version folder holds only what that version wrote, and once published those bytes
    are on Zenodo; keeping every folder would make the work folder (and the workflow's cache of
    it) grow with the whole dataset. The newest folder stays, as the next run's warm cache.
    """
    if not state.versions:
        return []
    newest = state.versions[-1]
    if not set(destinations) <= set(newest.get("published") or {}):
        return []
    removed = []
    for entry in state.versions[:-1]:
        folder = Path(workdir) / entry["folder"]
        if folder.is_dir():
            shutil.rmtree(folder)
            removed.append(entry["version"])
    return removed


def _listing(entry: Mapping[str, Any] | None) -> dict[str, tuple[int, str, str]]:
    """``{name: (size, md5, sha256)}`` of the parts and part indexes of a version entry."""
    if not entry:
        return {}
    return {n: (int(entry["sizes"][n]), entry["md5"][n], entry["files"][n])
            for n in entry["files"] if n not in FIXED_FILES}


def _part_range(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ids = sorted((str(r["id"]) for r in rows), key=id_key)
    return {"records": len(ids), "first": ids[0] if ids else None,
            "last": ids[-1] if ids else None}


def _zenodo_ids(state: State, volume: int) -> dict[str, Any]:
    """What the state knows of a volume's Zenodo concept (empty before its first publish)."""
    known = state.destinations.get("zenodo") or {}
    vol = (known.get("volumes") or {}).get(str(volume))
    if vol is None and volume == 1 and "volumes" not in known:
        vol = known
    return {k: vol.get(k) for k in ("concept_doi", "concept_id", "record_id", "doi")
            if vol and vol.get(k)}


def _volume_summary(volume: int, parts: Mapping[str, Mapping[str, Any]], sizes: Mapping[str, int],
                    version: str, state: State) -> dict[str, Any]:
    ids = [p for p in parts.values() if p.get("records")]
    firsts = sorted((str(p["first"]) for p in ids), key=id_key)
    lasts = sorted((str(p["last"]) for p in ids), key=id_key)
    return {"volume": volume, "dataset_version": version, "parts": sorted(parts),
            "records": sum(int(p.get("records") or 0) for p in parts.values()),
            "first_record": firsts[0] if firsts else None,
            "last_record": lasts[-1] if lasts else None,
            "bytes": sum(sizes.values()), **_zenodo_ids(state, volume)}


NOTES_KEPT = 60   # entries keeping their notes: the feed renders the newest 50, the card 30


def _trim_history(versions: list[dict[str, Any]], volume: int) -> None:
    """Keep the state's history of versions small before a new entry for ``volume`` is added.

    Only the newest entry keeps per-record lists (added/updated/removed/withdrawn); the newest
    entry of every *other* volume keeps its full listing (it is that volume's current record);
    older entries keep the listing of the parts and part indexes they wrote (what
    :mod:`pipeline.published` needs to find a file's record) and, beyond the newest
    :data:`NOTES_KEPT`, lose their notes. So the history grows by a few hundred bytes a version.
    """
    latest = {int(e.get("volume") or 1): e for e in versions}
    for i, old in enumerate(versions):
        for key in ("added", "updated", "removed", "withdrawn"):
            old.pop(key, None)
        if i < len(versions) - NOTES_KEPT + 1:
            old["notes"] = old.get("notes", "").split("\n", 1)[0] + "\n"
        vol = int(old.get("volume") or 1)
        if old.get("written") is None or (latest.get(vol) is old and vol != volume):
            continue
        keep = {n for n in old["written"] if n not in FIXED_FILES}
        for key in ("files", "md5", "sizes"):
            old[key] = {n: v for n, v in old[key].items() if n in keep}
        old["written"] = sorted(keep)
        old.pop("parts", None)


def build_version(manifest: Any, state: State, workdir: str | os.PathLike[str], *,
                  now: datetime | None = None, source: Source | None = None
                  ) -> BuiltVersion | None:
    """Build the next version, record it in ``state`` (saved); None when nothing changed.

    ``source`` gives the bytes of a carried part index that must be rewritten (default: the
    version folders on disk only); see the module docstring.
    """
    workdir = Path(workdir)
    now = now or datetime.now(UTC)
    source = source or find_local(workdir)
    prev = state.latest_version
    src = manifest.source
    decision = decide(state, src)
    changes, placed = decision.changes, decision.placed
    if changes.empty:
        _settle_unchanged(state, src, decision)
        return None
    version = next_version(state.versions, now.date())
    incoming = {rid: _new_entry(workdir, rid, state.records[rid], version)
                for rid in (*changes.added, *changes.updated)}
    zenodo = manifest.destinations.zenodo
    volume_max = zenodo.volume_max_bytes if zenodo is not None else VOLUME_MAX_BYTES
    part_max = max(1, min(PART_MAX_BYTES, volume_max // 4))
    numbers = [part_number(n) for v in state.versions for n in v.get("files", {}) if is_part(n)]
    packs = _pack({rid: e["bytes"] for rid, e in incoming.items()}, part_max)
    new_parts = [(part_name(max(numbers, default=0) + 1 + i), pack)
                 for i, pack in enumerate(packs)]

    versions_dir = workdir / "versions"
    _clean_orphans(versions_dir, state)
    tmp = versions_dir / f".tmp-{version}"
    tmp.mkdir(parents=True)
    written: dict[str, Path] = {}
    part_meta: dict[str, dict[str, Any]] = {}

    def read_index(part: str) -> list[dict[str, Any]]:
        """A carried part index, fetched by need (a small file) and read."""
        csv_name = index_name(part)
        return read_index_csv(source(csv_name, prev["md5"][csv_name]).read_text(
            encoding="utf-8")) if prev else []

    def write_parts(known: KnownContents) -> None:
        for name, rids in new_parts:
            members = [(rid, incoming[rid]) for rid in rids]
            _write_part(tmp / name, version, members, known)
            _verify_part(tmp / name, members)
            for rid in rids:
                incoming[rid]["part"] = name
            rows = [index_row(incoming[rid]) for rid in rids]
            (tmp / index_name(name)).write_text(index_csv(rows), encoding="utf-8")
            written[name], written[index_name(name)] = tmp / name, tmp / index_name(name)
            needs = {p for rid in rids for p in incoming[rid]["_holder_parts"].values()}
            part_meta[name] = {**_part_range(rows), "needs": sorted(needs - {name})}

    # Each content once: what the new versions of concepts may refer to are the newest earlier
    # version of each concept in the current volume (from its part index, fetched by need).
    volume_parts = [n for n in _listing(prev) if is_part(n)]
    concepts = {rid: e["concept"] for rid, e in incoming.items()}
    write_parts(known_for(concepts, _concept_members(state, set(concepts.values())),
                          volume_parts, read_index))
    new_bytes = sum(p.stat().st_size for p in written.values())

    # -- which volume: the current one, unless the new parts would overflow it -------------------
    latest = latest_by_volume(state.versions)
    volume = int(prev.get("volume") or 1) if prev else 1
    carried = _listing(prev)
    carried_meta = {n: dict(m) for n, m in (prev or {}).get("parts", {}).items()}
    part_volume = {n: vol for vol, e in latest.items() for n in e.get("files", {}) if is_part(n)}
    leaving: dict[str, set[str]] = {}
    for rid in (*changes.updated, *changes.removed):
        where = placed.get(rid)
        if where:
            leaving.setdefault(where, set()).add(rid)
    dropped = {p for p, ids in leaving.items() if p in carried_meta and
               int(carried_meta[p].get("records") or 0) <= len(ids)}
    # a part whose records all left stays while live records refer to pages in its groups
    dropped -= {p for m in (*carried_meta.values(), *part_meta.values())
                for p in m.get("needs", ())}
    kept_parts = [n for n in carried if is_part(n) and n not in dropped]
    kept_bytes = sum(carried[n][0] for n in carried if n not in dropped
                     and n not in {index_name(p) for p in dropped})
    cap = max_parts_per_volume(manifest.dataset.max_parts)
    # the fixed files grow a little with parts and volumes: reserve twice what they took last
    reserve = max(FIXED_RESERVE, 2 * sum(int(prev["sizes"].get(n, 0)) for n in FIXED_FILES)
                  if prev else FIXED_RESERVE)
    if new_bytes + reserve > volume_max or len(new_parts) > cap:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _error(f"the new data of version {version} ({new_bytes:,} bytes in "
                     f"{len(new_parts)} part(s)) does not fit into one volume "
                     f"({volume_max:,} bytes, {cap} parts)",
                     hint="lower source.max_records_per_run, or raise "
                     "destinations.zenodo.volume_max_bytes")
    if prev is not None and (len(kept_parts) + len(new_parts) > cap or
                             kept_bytes + new_bytes + reserve > volume_max):
        volume += 1
        carried, carried_meta, dropped = {}, {}, set()
        new_names = {n for n, _ in new_parts}
        if any(set(m.get("needs", ())) - new_names for m in part_meta.values()):
            # references into the closed volume would not resolve in this one: pack again,
            # sharing contents only among the records of this version
            write_parts(KnownContents())
    removed_rows: list[dict[str, Any]] = []
    withdrawn: dict[str, list[str]] = {k: list(v) for k, v in
                                       ((prev or {}).get("withdrawn") or {}).items()}
    try:
        for part, ids in sorted(leaving.items()):
            csv_name = index_name(part)
            holder = carried if part in carried_meta else \
                _listing(latest.get(int(part_volume.get(part, volume - 1))))
            every = read_index_csv(source(csv_name, holder[csv_name][1]).read_text(
                encoding="utf-8")) if csv_name in holder else []
            removed_rows += [r for r in every if str(r["id"]) in ids]  # the card's totals
            if part not in carried_meta:     # a closed volume: its index stays as published
                vol = str(part_volume.get(part, volume - 1))
                withdrawn[vol] = sorted(set(withdrawn.get(vol, [])) | ids, key=id_key)
                continue
            if part in dropped:
                continue
            rows = [r for r in every if str(r["id"]) not in ids]
            (tmp / csv_name).write_text(index_csv(rows), encoding="utf-8")
            written[csv_name] = tmp / csv_name
            carried_meta[part] = {**carried_meta[part], **_part_range(rows)}
        listing = {n: v for n, v in carried.items()
                   if n not in dropped and n not in {index_name(p) for p in dropped}
                   and n not in written}
        for name, path in written.items():
            listing[name] = (path.stat().st_size, file_digest(path, "md5"), file_digest(path))
        parts_meta = {n: m for n, m in {**carried_meta, **part_meta}.items()
                      if n in listing and is_part(n)}
        totals = update_totals((prev or {}).get("totals"),
                               [index_row(e) for e in incoming.values()], removed_rows)
        built = _write_fixed(manifest, state, tmp, version=version, volume=volume, now=now,
                             changes=changes, incoming=incoming, listing=listing,
                             parts_meta=parts_meta, withdrawn=withdrawn,
                             new_parts=[n for n, _ in new_parts], latest=latest,
                             totals=totals, carried=decision.counts)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sha, md5, sizes, notes, counts = built
    names = set(written) | set(FIXED_FILES)
    on_disk = {p.name for p in tmp.iterdir()}
    if on_disk != names or any(sizes[n] == 0 for n in sha) or len(sha) > ZENODO_MAX_FILES:
        raise _error(f"version folder {tmp} holds {sorted(on_disk)}, expected {sorted(names)} "
                     f"(all non-empty, at most {ZENODO_MAX_FILES} files in the listing)")
    if sum(sizes.values()) > volume_max:
        raise _error(f"volume {volume} would hold {sum(sizes.values()):,} bytes, more than "
                     f"destinations.zenodo.volume_max_bytes ({volume_max:,})",
                     hint="raise volume_max_bytes; the fixed files are larger than reserved")
    _fsync_tree(tmp)
    final = versions_dir / version
    os.rename(tmp, final)

    _trim_history(state.versions, volume)
    entry = {"version": version, "volume": volume, "created": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "folder": f"versions/{version}", "notes": notes, "counts": counts,
             "files": dict(sorted(sha.items())), "md5": dict(sorted(md5.items())),
             "sizes": dict(sorted(sizes.items())), "written": sorted(names),
             "parts": dict(sorted(parts_meta.items())), "withdrawn": withdrawn,
             "added": list(changes.added), "updated": list(changes.updated),
             "removed": list(changes.removed), "totals": totals, "published": {},
             "selection": selection_key(src)}
    for old in state.versions:   # running totals: only the newest entry needs them
        old.pop("totals", None)
    state.versions.append(entry)
    for rid, e in incoming.items():
        state.records[rid].update(version=version, part=e["part"], added_in=e["added_in"])
    for rid in changes.removed:
        if rid in state.records:
            state.records[rid].pop("part", None)
    _apply_concepts(state, decision)
    state.records.touched = {}
    state.save()
    return built_version(entry, workdir)


def _concept_members(state: State, concepts: set[str]) -> Mapping[str, Mapping[str, Any]]:
    """The records of ``concepts`` as of the last version, from the concept index: only their
    records files are read. Without an index (a state from before it) every record is."""
    if not any(state.concepts.folder.glob("*.jsonl")):
        return state.records
    members: dict[str, Mapping[str, Any]] = {}
    for concept in sorted(concepts):
        for rid in (state.concepts.get(concept) or {}).get("done") or []:
            rec = state.records.get(str(rid))
            if rec is not None:
                members[str(rid)] = rec
    return members


def _write_fixed(manifest: Any, state: State, tmp: Path, *, version: str, volume: int,
                 now: datetime, changes: Changes, incoming: Mapping[str, Mapping[str, Any]],
                 listing: Mapping[str, tuple[int, str, str]],
                 parts_meta: Mapping[str, Mapping[str, Any]], withdrawn: Mapping[str, list[str]],
                 new_parts: list[str], latest: Mapping[int, Mapping[str, Any]],
                 totals: Mapping[str, Any], carried: Mapping[str, int]
                 ) -> tuple[dict[str, str], dict[str, str], dict[str, int], str, dict[str, int]]:
    """Catalog, card, changelog, Kaggle metadata, datapackage, Croissant, the loader, the
    figures and SHA256SUMS of the version."""
    sizes = {n: v[0] for n, v in listing.items()}
    md5 = {n: v[1] for n, v in listing.items()}
    sha = {n: v[2] for n, v in listing.items()}
    titles = {rid: str(e.get("title") or "") for rid, e in incoming.items()}
    notes = changelog_entry(version, now.date(), changes, titles, live=carried["records"])
    parts = sorted(n for n in listing if is_part(n))
    counts = {**{k: int(carried[k]) for k in CARRIED_COUNTS},
              "parts": len(parts), "added": len(changes.added),
              "updated": len(changes.updated), "removed": len(changes.removed),
              "volume": volume, "new_parts": len(new_parts),
              "volume_records": sum(int(m.get("records") or 0) for m in parts_meta.values())}
    volumes = []
    for vol in range(1, volume + 1):
        if vol == volume:
            volumes.append(_volume_summary(vol, parts_meta, sizes, version, state))
        elif vol in latest:
            e = latest[vol]
            old_parts = {n: {"records": 0} for n in e["files"] if is_part(n)}
            old_parts.update(e.get("parts") or {})
            volumes.append(_volume_summary(vol, old_parts, e["sizes"], e["version"], state))
    kaggle_dest = manifest.destinations.kaggle
    kaggle = None
    if kaggle_dest is not None and kaggle_dest.enabled:
        everywhere = {n: s for e in latest.values() if int(e.get("volume") or 1) != volume
                      for n, s in e["sizes"].items()}
        everywhere.update(sizes)
        candidates = [(n, everywhere[n] + everywhere.get(index_name(n), 0))
                      for n in everywhere if is_part(n)]
        # the subset holds every part its parts refer to (contents stored once)
        needs = {n: m.get("needs", ()) for e in (*latest.values(), {"parts": parts_meta})
                 for n, m in (e.get("parts") or {}).items()}
        chosen = sorted(with_needs(new_parts, needs)) if kaggle_dest.files == "latest-parts" \
            else newest_within(candidates, kaggle_dest.max_bytes, needs)
        kaggle = {"dataset": kaggle_dest.dataset, "max_bytes": kaggle_dest.max_bytes,
                  "parts": chosen}
    concept_doi = _zenodo_ids(state, volume).get("concept_doi")
    ds = manifest.dataset
    entries = [notes, *(v["notes"] for v in reversed(state.versions))]
    growth = [(str(v["version"]), int(v["counts"].get("records", 0)),
               int(v["counts"].get("images", 0))) for v in state.versions]
    extras = write_extras(tmp, extensions=totals["extensions"],
                          growth=[*growth, (version, counts["records"], counts["images"])],
                          samples_from=[e["_h5"] for e in incoming.values()])
    researchers = card_sections(licences=totals["licences"], splits=totals.get("splits") or {},
                                proportions=ds.splits, figures=figures_markdown(),
                                policy=manifest.source.licenses)
    texts = {
        CATALOG: catalog_json(dataset={"name": ds.name, "title": ds.title},
                              version=version, volume=volume, volumes=volumes,
                              withdrawn=withdrawn, kaggle=kaggle),
        "CHANGELOG.md": changelog(entries),
        "README.md": readme(manifest, version=version, created=now, counts=counts, notes=notes,
                            parts=parts, concept_doi=concept_doi, volume=volume,
                            volumes=volumes, kaggle=kaggle, researchers=researchers),
        "dataset-metadata.json": dumps_json(kaggle_metadata(manifest, counts)),
    }
    for name, text in texts.items():
        (tmp / name).write_text(text, encoding="utf-8")
    for name in (*texts, *extras):
        sizes[name] = (tmp / name).stat().st_size
        sha[name], md5[name] = file_digest(tmp / name), file_digest(tmp / name, "md5")
    tables = {"part-*.csv": INDEX_SCHEMA}
    meta = croissant_for(manifest, version=version, created=now, tables=tables,
                         files={n: (sizes[n], sha[n]) for n in sorted(sizes)},
                         concept_doi=concept_doi)
    (tmp / CROISSANT).write_text(dumps_json(meta), encoding="utf-8")
    sizes[CROISSANT] = (tmp / CROISSANT).stat().st_size
    sha[CROISSANT] = file_digest(tmp / CROISSANT)
    md5[CROISSANT] = file_digest(tmp / CROISSANT, "md5")
    package = datapackage_for(manifest, version=version, created=now, tables=tables,
                              files={n: (sizes[n], sha[n]) for n in sorted(sizes)})
    (tmp / "datapackage.json").write_text(dumps_json(package), encoding="utf-8")
    sha["datapackage.json"] = file_digest(tmp / "datapackage.json")
    (tmp / "SHA256SUMS").write_text(sha256sums(sha), encoding="utf-8")
    for name in ("datapackage.json", "SHA256SUMS"):
        sizes[name] = (tmp / name).stat().st_size
        sha[name], md5[name] = file_digest(tmp / name), file_digest(tmp / name, "md5")
    counts["bytes"] = sum(sizes.values())
    return sha, md5, sizes, notes, counts


def built_version(entry: Mapping[str, Any], workdir: str | os.PathLike[str]) -> BuiltVersion:
    """The :class:`BuiltVersion` of a ``state.versions`` entry; checks that the files it wrote
    are on disk (the carried ones are on Zenodo)."""
    folder = Path(workdir) / entry["folder"]
    written = frozenset(entry.get("written") or entry["files"])
    for name in sorted(written):
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry["sizes"][name]:
            raise _error(f"version {entry['version']}: {path} is missing or has the wrong size",
                         hint="the work folder of the run that built it is gone and the version "
                         "was not published: delete the version entry from the state and run "
                         "`version` again")
    return BuiltVersion(version=entry["version"], folder=folder, files=dict(entry["files"]),
                        md5=dict(entry["md5"]), sizes=dict(entry["sizes"]),
                        notes=entry["notes"], counts=dict(entry["counts"]),
                        volume=int(entry.get("volume") or 1), written=written)
