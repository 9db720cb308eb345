"""Store each content once: a file whose pages are already in the dataset is not stored again.

Why: versions of one software repeat most of their files (SCALE.md: most records are versions
2..n of a concept), so without this most of the dataset's bytes are copies, and a naive split
would put the same code on both sides. Equal content means equal sha256 of the source bytes
*and* equal transform (``transform`` attribute of the group, :func:`pipeline.store.transform_key`:
mode, width, height, tab width, redaction, pipeline version), since only then are the pages equal.

How, in the HDF5 that readers get: every record group keeps its complete file table (every path,
size, sha256, extension). A row whose ``holder`` names another record has its pages in *that*
record's ``images`` at ``first_image : first_image + image_count``; an empty holder means this
record's own ``images``. References always point at the record that stores the pages (never at
a record that itself refers on), so a reader follows at most one step
(:class:`pipeline.code_images.Library`).

Who decides: ``process`` writes every record complete (``records/<id>.h5``, identical files
inside one record already stored once), so a record on its own is always whole. When a version
packs records into a part, :func:`pack_record` copies a record with the contents a
:class:`KnownContents` already holds left out. What is known is the builder's choice, and it
chooses only holders the readers of that part will also have (the same volume; see
:mod:`pipeline.version`): the earlier versions of the same concept (from their groups, or from
the small per-record listings, :func:`listing`, fetched by need) and the records packed before
it in the same build (across concepts, at no extra cost). Nothing dataset-wide is ever loaded.

Zenodo-ml-2018 records (variable-shape images) are copied whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import h5py

from pipeline.code_images import LAYOUT_PAGES, METADATA, read_metadata
from pipeline.store import DATASET_ATTRS, copy_record, files_table

_BLOCK = 4096  # pages per read when copying a record's own pages


@dataclass(frozen=True)
class Location:
    """Where a content's pages are: ``holder``'s ``images[first : first + count]``, in
    ``part`` (the part file holding the holder's group; "" when not known)."""

    holder: str
    first: int
    count: int
    concept: str
    part: str = ""


@dataclass
class KnownContents:
    """The contents a part may refer to, by ``(transform, sha256)``."""

    by_key: dict[tuple[str, str], Location] = field(default_factory=dict)

    def get(self, transform: str, sha256: str) -> Location | None:
        return self.by_key.get((transform, sha256))

    def add_listing(self, transform: str, concept: str,
                    rows: Iterable[tuple[str, str, int, int]],
                    parts: Mapping[str, str] | None = None) -> None:
        """Learn ``(sha256, holder, first, count)`` rows (a group's :func:`listing`);
        ``parts``: holder id -> the part holding it."""
        for sha256, holder, first, count in rows:
            if count > 0:
                self.by_key.setdefault((transform, sha256), Location(
                    holder, int(first), int(count), concept, (parts or {}).get(holder, "")))

    def add_group(self, group: h5py.Group, concept: str, part: str = "") -> None:
        """Learn every content a published record group holds (refers-to rows keep no part:
        use :meth:`add_listing` with the index's cell where parts matter)."""
        if group.attrs.get("layout") == LAYOUT_PAGES and "transform" in group.attrs:
            self.add_listing(str(group.attrs["transform"]), concept, listing(group),
                             {str(group.attrs["record_id"]): part})


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def listing(group: h5py.Group) -> list[tuple[str, str, int, int]]:
    """``(sha256, holder, first, count)`` of each distinct content of a record group, with the
    holder resolved (this record's id when it stores the pages): the few bytes per file a later
    version needs to refer to this one without reading its pages."""
    record_id = str(group.attrs["record_id"])
    table = group["files"][()]
    names = table.dtype.names or ()
    seen: dict[str, tuple[str, str, int, int]] = {}
    for row in table:
        sha = _text(row["sha256"])
        holder = (_text(row["holder"]) if "holder" in names else "") or record_id
        seen.setdefault(sha, (sha, holder, int(row["first_image"]), int(row["image_count"])))
    return list(seen.values())


@dataclass(frozen=True)
class Packed:
    """What :func:`pack_record` wrote for one record."""

    record_id: str
    images: int             # pages stored in this record's group
    referenced_files: int   # files whose pages another record holds
    referenced_images: int
    holders: tuple[str, ...]
    cross_concept_files: int  # of those, files held by a record of another concept
    holder_parts: Mapping[str, str] = field(default_factory=dict)  # holder -> its part
    cell: str = ""          # this record's listing for the part index (encode_listing)


def pack_record(source: h5py.Group, destination: h5py.Group, known: KnownContents, *,
                concept: str, part: str = "") -> Packed:
    """Copy the complete record group ``source`` into the empty group ``destination`` (in
    ``part``), leaving out the pages of contents ``known`` already holds; then add this
    record's own contents to ``known`` (so records packed after it can refer to them)."""
    record_id = str(source.attrs["record_id"])
    transform = str(source.attrs.get("transform", ""))
    pages_layout = source.attrs.get("layout") == LAYOUT_PAGES and transform
    table = source["files"][()]
    rows = [(_text(r["path"]), int(r["first_image"]), int(r["image_count"]), int(r["size"]),
             _text(r["sha256"]), _text(r["extension"]),
             _text(r["holder"]) if "holder" in (table.dtype.names or ()) else "")
            for r in table]
    if any(r[6] for r in rows):
        raise ValueError(f"record {record_id}: pack_record takes a complete record "
                         "(records/<id>.h5), not a packed group")
    refs: dict[int, Location] = {}
    if pages_layout:
        for i, r in enumerate(rows):
            found = known.get(transform, r[4]) if r[2] else None
            if found is not None and found.holder != record_id and found.count == r[2]:
                refs[i] = found
    if not refs:
        copy_record(source, destination)
        images = len(source["images"]) if "images" in source else 0
        rows_own = listing(destination)
        if pages_layout:
            known.add_listing(transform, concept, rows_own, {record_id: part})
        return Packed(record_id, images, 0, 0, (), 0, {},
                      encode_listing(transform, rows_own, record_id, {}) if pages_layout else "")

    # own pages: each distinct range of the rows not referred elsewhere, in order
    ranges: dict[tuple[int, int], int] = {}
    out_rows = []
    for i, r in enumerate(rows):
        if i in refs:
            loc = refs[i]
            out_rows.append((*r[:1], loc.first, loc.count, *r[3:6], loc.holder))
            continue
        key = (r[1], r[2])
        if key not in ranges:
            ranges[key] = sum(count for _, count in ranges)
        out_rows.append((r[0], ranges[key], r[2], *r[3:6], ""))
    src = source["images"]
    own = sum(count for _, count in ranges)
    options: dict[str, Any] = {"compression": src.compression,
                               "compression_opts": src.compression_opts,
                               "shuffle": src.shuffle} if src.compression else {}
    dst = destination.create_dataset(
        "images", shape=(own, *src.shape[1:]), maxshape=(None, *src.shape[1:]),
        dtype=src.dtype, track_times=False,
        chunks=(max(1, min(src.chunks[0], own)), *src.shape[1:]), **options)
    for (first, count), at in ranges.items():
        for start in range(0, count, _BLOCK):
            n = min(_BLOCK, count - start)
            dst[at + start:at + start + n] = src[first + start:first + start + n]
    dst.attrs.update(dict(src.attrs))
    table_out = files_table(out_rows)
    destination.create_dataset("files", data=table_out, track_times=False,
                               **({"chunks": True, "compression": "gzip",
                                   "compression_opts": 4} if len(table_out) else {}))
    destination["files"].attrs.update(DATASET_ATTRS["files"])
    if METADATA in source:
        source.copy(source[METADATA], destination, name=METADATA)
    destination.attrs.update(dict(source.attrs))
    rows_out = listing(destination)
    holder_parts = {loc.holder: loc.part for loc in refs.values()}
    known.add_listing(transform, concept, rows_out, {record_id: part, **holder_parts})
    return Packed(record_id, own, len(refs), sum(loc.count for loc in refs.values()),
                  tuple(sorted(holder_parts)),
                  sum(1 for loc in refs.values() if loc.concept != concept), holder_parts,
                  encode_listing(transform, rows_out, record_id, holder_parts))


def pack_part(group: h5py.Group, members: Iterable[tuple[str, str, str]],
              known: KnownContents, *, part: str = "") -> list[Packed]:
    """Pack complete record files into ``group`` (the ``/records`` of the part file ``part``),
    one subgroup each: ``members`` are ``(record id, path of records/<id>.h5, concept)`` in
    packing order."""
    packed = []
    for rid, path, concept in members:
        with h5py.File(path, "r") as source:
            packed.append(pack_record(source, group.create_group(rid), known, concept=concept,
                                      part=part))
    return packed


def known_for(incoming: Mapping[str, str], records: Mapping[str, Mapping[str, Any]],
              parts: Iterable[str], read_index: Callable[[str], Iterable[Mapping[str, Any]]]
              ) -> KnownContents:
    """What the records of a build may refer to: the listing of each incoming concept's newest
    record in ``parts`` (the current volume's), read from that part's index (``read_index``:
    part name -> its rows, fetched by need: one small file per part that holds a base)."""
    known = KnownContents()
    by_part: dict[str, set[str]] = {}
    for rid, part in bases(incoming, records, parts).items():
        by_part.setdefault(part, set()).add(rid)
    for part, ids in sorted(by_part.items()):
        for row in read_index(part):
            rid = str(row.get("id"))
            if rid in ids and row.get("contents"):
                transform, rows, holder_parts = decode_listing(str(row["contents"]), rid, part)
                known.add_listing(transform, str(row.get("concept") or ""), rows, holder_parts)
    return known


def encode_listing(transform: str, rows: Iterable[tuple[str, str, int, int]], record_id: str,
                   parts: Mapping[str, str]) -> str:
    """A record's :func:`listing` as one index cell: the transform, then ``sha256:first:count``
    per content the record stores and ``sha256:first:count:holder:part`` per content another
    record holds (``parts``: holder id -> its part), space-separated; a later version of the
    concept reads it from the part index, fetched by need, instead of the part."""
    cells = [transform]
    for sha, holder, first, count in rows:
        tail = "" if holder == record_id else f":{holder}:{parts[holder]}"
        cells.append(f"{sha}:{first}:{count}{tail}")
    return " ".join(cells)


def decode_listing(text: str, record_id: str, part: str
                   ) -> tuple[str, list[tuple[str, str, int, int]], dict[str, str]]:
    """``(transform, rows, {holder: part})`` of an :func:`encode_listing` cell."""
    transform, *cells = text.split(" ") if text else ("",)
    rows, parts = [], {record_id: part}
    for cell in cells:
        sha, first, count, *held = cell.split(":")
        holder = held[0] if held else record_id
        if held:
            parts[holder] = held[1]
        rows.append((sha, holder, int(first), int(count)))
    return transform, rows, parts


def bases(incoming: Mapping[str, str], records: Mapping[str, Mapping[str, Any]],
          parts: Iterable[str]) -> dict[str, str]:
    """For each concept of the ``incoming`` records (id -> concept), the newest other live
    record of that concept placed in one of ``parts`` (the current volume's): ``{base id:
    its part}``. Its listing is what a new version of the concept may refer to."""
    wanted, allowed = set(incoming.values()), set(parts)
    newest: dict[str, tuple[tuple[int, int | str], str, str]] = {}
    for rid, rec in records.items():
        concept, part = str(rec.get("concept") or ""), rec.get("part")
        if concept in wanted and part in allowed and rid not in incoming \
                and rec.get("status") == "done":
            key = (0, int(rid)) if rid.isdigit() else (1, rid)
            if concept not in newest or key > newest[concept][0]:
                newest[concept] = (key, rid, str(part))
    return {rid: part for _, rid, part in newest.values()}


def concept_of(group: h5py.Group) -> str:
    """The concept of a record group (its labels), the record id when it has none."""
    labels = read_metadata(group).get("labels") or {}
    return str(labels.get("concept") or group.attrs["record_id"])


def needs_rematerialising(holders: Mapping[str, Iterable[str]], available: Iterable[str]
                          ) -> set[str]:
    """Records whose holders are not all among ``available`` (what a reader of the folder has):
    they must be packed again from their complete record (or whole) so every reference
    resolves. ``holders``: record id -> the records it refers to."""
    have = set(available)
    return {rid for rid, held in holders.items() if not set(held) <= have}


__all__ = ["KnownContents", "Location", "Packed", "bases", "concept_of",
           "decode_listing", "encode_listing", "known_for", "listing", "needs_rematerialising",
           "pack_part", "pack_record"]
