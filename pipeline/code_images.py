"""code_images: read the code-images dataset with nothing but numpy and h5py.

This one file travels with the data: every dataset version folder holds a verbatim copy of it,
so a user of the Zenodo or Kaggle download needs no other code. Inside the project it is
``pipeline.code_images`` and ``pipeline.loader`` re-exports it (one source, never a hand-kept
copy). It imports only the standard library, numpy and h5py (Python 3.10 or newer).

Quick start, from a downloaded version folder::

    import code_images

    for labels, pages in code_images.iter_files("path/to/folder", split="train",
                                               extensions=["py"]):
        labels["record"], labels["concept"], labels["path"], labels["licence"]
        pages                                   # (n, 80, 80) Unicode code points
        print(code_images.page_to_text(pages[0]))

    python = code_images.load_by_extension("path/to/folder", ["py"])["py"]
    code_images.save_png(python[0], "first-python-page.png")

What is where (why it is shaped like this):

* a *record* is one Zenodo record (one version of one piece of software); its *concept* is the
  Zenodo concept id shared by all versions of that software. Splits (``train`` / ``validation``
  / ``test``) are drawn by a stable hash of the concept (:func:`split_of`), so every version of
  one software lands in the same split and a test set never holds code its training set saw
  under another version;
* each record is an HDF5 group (the root of ``records/<id>.h5`` or ``/records/<id>/`` of a part
  file ``part-NNNNNN.h5``) with ``images`` ``(N, 80, 80)`` (code points, padded with 32),
  ``files`` (one row per source file: ``path``, ``first_image``, ``image_count``, ``size``,
  ``sha256``, ``extension``, ``holder``) and ``metadata.json`` (gzip-compressed JSON: the Zenodo
  record, the file tree, the processing parameters, and ``labels``: licence, creators, date,
  DOI, repository, split);
* **each content is stored once**: when a file's bytes (with the same processing parameters) are
  already stored under another record of the same folder, typically an earlier version of the
  same software, its row's ``holder`` names that record and ``first_image``/``image_count``
  point into *its* ``images``. :func:`iter_files` resolves this, so every file of every record
  comes back with its pages, under every record that holds it;
* ``labels["shared"]`` is True when the file's content occurs under more than one concept in
  what you loaded (the same README or vendored library in two projects): drop those files to
  keep a split free of leakage across software;
* records made in the ``zenodo-ml-2018`` compatibility mode keep the 2018 shapes (a list of
  int64 arrays of 1 to 80 rows, float64 ``(0, 0)`` for the 2018 empty page) in ``rows`` and
  ``image_rows``.

A downloaded dataset folder is read through its ``catalog.json`` and part indexes
(``part-NNNNNN.csv``): only live records, each once. Several volumes (the dataset spans several
Zenodo records): download them into sub-folders of one folder and pass that folder (the newest
catalog names every volume's parts); pages held by records of another part or volume are found
wherever they are below it. A Kaggle copy holds the newest parts and every part they refer to.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import hashlib
import itertools
import json
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import h5py
import numpy as np

__all__ = [
    "CATALOG",
    "DEFAULT_SPLITS",
    "FORMAT",
    "SPACE",
    "FileEntry",
    "Library",
    "dataset_parts",
    "export_png",
    "iter_entries",
    "iter_files",
    "iter_images",
    "load_all",
    "load_by_extension",
    "load_by_pattern",
    "load_split",
    "open_catalog",
    "page_to_text",
    "read_metadata",
    "record_groups",
    "record_labels",
    "save_png",
    "spdx_id",
    "split_of",
    "split_rows_2018",
]

FORMAT = "code-images-record"
LAYOUT_PAGES = "pages"
LAYOUT_ROWS_2018 = "rows-2018"
SPACE = 32
METADATA = "metadata.json"
CATALOG = "catalog.json"
DEFAULT_SPLITS: tuple[tuple[str, float], ...] = (("train", 0.8), ("validation", 0.1),
                                                 ("test", 0.1))
Source: TypeAlias = "str | os.PathLike[str] | h5py.Group | Sequence[str | os.PathLike[str]]"
Images = np.ndarray | list[np.ndarray]
_READ_IMAGES = 4096          # images per HDF5 read when consecutive files are selected
_CACHE_BYTES = 64 * 1024**2  # HDF5 chunk cache per open file


# --- labels: splits, licences, provenance -----------------------------------------------------

def split_of(concept: str, proportions: Iterable[tuple[str, float]] = DEFAULT_SPLITS) -> str:
    """The split of a concept: the first 8 bytes of sha256(concept id) as a number in [0, 1),
    placed on the cumulative proportions. The same on every machine, Python and day."""
    pairs = list(proportions)
    total = sum(share for _, share in pairs)
    x = int.from_bytes(hashlib.sha256(str(concept).encode("utf-8")).digest()[:8], "big") / 2**64
    edge = 0.0
    for name, share in pairs:
        edge += share / total
        if x < edge:
            return name
    return pairs[-1][0]


# Canonical SPDX ids by lower-case key. Zenodo (InvenioRDM) serves SPDX ids in lower case
# ("mit", "gpl-3.0-or-later"); records from before 2023 used upper-case or legacy ids.
_SPDX = {s.lower(): s for s in (
    "0BSD", "AFL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-1.1", "Apache-2.0",
    "Artistic-2.0", "BSD-1-Clause", "BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Clear",
    "BSD-4-Clause", "BSL-1.0", "CC-BY-1.0", "CC-BY-2.0", "CC-BY-2.5", "CC-BY-3.0", "CC-BY-4.0",
    "CC-BY-NC-4.0", "CC-BY-NC-ND-4.0", "CC-BY-NC-SA-4.0", "CC-BY-ND-4.0", "CC-BY-SA-3.0",
    "CC-BY-SA-4.0", "CC0-1.0", "CECILL-2.1", "CECILL-B", "CECILL-C", "ECL-2.0", "EPL-1.0",
    "EPL-2.0", "EUPL-1.1", "EUPL-1.2", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only",
    "GPL-3.0-or-later", "ISC", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only",
    "LGPL-3.0-or-later", "LPPL-1.3c", "MIT", "MIT-0", "MPL-1.1", "MPL-2.0", "MS-PL", "NCSA",
    "ODbL-1.0", "OFL-1.1", "PDDL-1.0", "PostgreSQL", "Python-2.0", "Unlicense", "UPL-1.0",
    "W3C", "WTFPL", "Zlib", "ZPL-2.1")}
_SPDX_ALIASES = {"gpl-2.0": "GPL-2.0-only", "gpl-3.0": "GPL-3.0-only", "lgpl-2.1":
                 "LGPL-2.1-only", "lgpl-3.0": "LGPL-3.0-only", "agpl-3.0": "AGPL-3.0-only",
                 "gpl-2.0+": "GPL-2.0-or-later", "gpl-3.0+": "GPL-3.0-or-later",
                 "cc-by": "CC-BY-4.0", "cc-zero": "CC0-1.0", "cc0": "CC0-1.0",
                 "apache": "Apache-2.0", "bsd": "BSD-3-Clause", "mit-license": "MIT"}


def spdx_id(licence: str | None) -> str:
    """The SPDX id of a Zenodo licence id (any case, legacy aliases); ``""`` when none."""
    if not licence:
        return ""
    key = str(licence).strip().lower()
    return _SPDX.get(key) or _SPDX_ALIASES.get(key) or str(licence).strip()


def record_labels(record: Mapping[str, Any],
                  proportions: Iterable[tuple[str, float]] = DEFAULT_SPLITS) -> dict[str, Any]:
    """Provenance of one record from its Zenodo JSON (any of the shapes Zenodo has served):
    record and concept ids, SPDX licence, creators, publication date, version, DOI, source
    repository URL, and the split of its concept."""
    meta: Mapping[str, Any] = record.get("metadata") or {}
    if not isinstance(meta, Mapping):
        meta = {}
    rid = str(record.get("id") or record.get("recid") or "")
    parent: Mapping[str, Any] = record.get("parent") or {}
    if not isinstance(parent, Mapping):
        parent = {}
    concept = str(record.get("conceptrecid") or parent.get("id") or rid)
    licence = meta.get("license")
    if isinstance(licence, Mapping):
        licence = licence.get("id")
    creators = [str(c.get("name") or c.get("person_or_org", {}).get("name") or "")
                for c in meta.get("creators") or [] if isinstance(c, Mapping)]
    repository = ""
    for rel in meta.get("related_identifiers") or []:
        ident = str(rel.get("identifier") or "") if isinstance(rel, Mapping) else ""
        m = re.match(r"^(https?://(?:github\.com|gitlab\.com|bitbucket\.org)/[^/\s]+/[^/\s#?]+)",
                     ident)
        if m:
            repository = re.sub(r"\.git$", "", m.group(1))
            break
    return {"record": rid, "concept": concept, "licence": spdx_id(licence),
            "creators": creators, "publication_date": str(meta.get("publication_date") or ""),
            "version": str(meta.get("version") or ""),
            "doi": str(record.get("doi") or meta.get("doi") or ""),
            "repository": repository, "split": split_of(concept, proportions)}


# --- finding record groups ----------------------------------------------------------------------

@dataclass(frozen=True)
class FileEntry:
    """One row of a record's file table; ``holder`` is the record whose images hold the pages
    (the record itself when the content is stored there)."""

    record_id: str
    path: str
    extension: str
    size: int
    sha256: str
    first_image: int
    image_count: int
    holder: str


def _version_key(version: str) -> tuple[int, str]:
    head, _, rest = version.partition(".")
    return (int(head) if head.isdigit() else -1, rest)


def open_catalog(source: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The newest ``catalog.json`` in a folder (any depth) or at a path, or None."""
    path = Path(source)
    found = [path] if path.is_file() else sorted(path.rglob(CATALOG)) if path.is_dir() else []
    catalogs = [json.loads(p.read_text(encoding="utf-8")) for p in found]
    return max(catalogs, key=lambda c: _version_key(str(c.get("dataset_version", "")))) \
        if catalogs else None


def _newest_copies(folder: Path, pattern: str) -> dict[str, Path]:
    """``{name: path}`` of the files matching ``pattern`` below ``folder``; when several folders
    hold one name (downloads of several versions), the copy beside the newest catalog wins (a
    part index is rewritten when its records change)."""
    def rank(path: Path) -> tuple[int, str]:
        cat = path.parent / CATALOG
        if cat.is_file():
            return _version_key(str(json.loads(cat.read_text(encoding="utf-8"))
                                    .get("dataset_version", "")))
        return (-1, "")
    best: dict[str, Path] = {}
    for path in sorted(folder.rglob(pattern)):
        if path.name not in best or rank(path) > rank(best[path.name]):
            best[path.name] = path
    return best


def _index_name(part: str) -> str:
    return part[: -len(".h5")] + ".csv"


def dataset_parts(folder: str | os.PathLike[str]) -> list[tuple[Path, frozenset[str]]]:
    """``(part file, live record ids)`` of every part of the dataset present under ``folder``,
    by its newest catalog: each part's index ``part-NNNNNN.csv`` names its live records (a
    record updated or removed later stays in the part's bytes, where later versions of its
    software may still refer to its pages, but leaves the index), and the catalog's
    ``withdrawn`` ids of closed volumes are dropped. Parts the folder lacks (a volume not
    downloaded, a Kaggle subset) are skipped. Empty without a catalog."""
    folder = Path(folder)
    catalog = open_catalog(folder)
    if catalog is None:
        return []
    parts = _newest_copies(folder, "part-*.h5")
    indexes = _newest_copies(folder, "part-*.csv")
    current = int(catalog.get("volume") or 0)
    out = []
    for volume in catalog.get("volumes") or []:
        withdrawn = set() if volume["volume"] == current else \
            set((catalog.get("withdrawn") or {}).get(str(volume["volume"]), []))
        for name in volume.get("parts") or []:
            if name not in parts or _index_name(name) not in indexes:
                continue
            with open(indexes[_index_name(name)], newline="", encoding="utf-8") as fh:
                live = {row["id"] for row in csv.DictReader(fh)} - withdrawn
            out.append((parts[name], frozenset(live)))
    return out


def _h5_files(source: Source) -> list[Path]:
    """Every HDF5 file of a source (for finding the records that hold pages)."""
    sources = [source] if isinstance(source, str | os.PathLike) else list(source)
    files: list[Path] = []
    for item in sources:
        path = Path(item)
        files += list(_newest_copies(path, "*.h5").values()) if path.is_dir() else [path]
    return list(dict.fromkeys(files))


def _walk(group: h5py.Group) -> Iterator[h5py.Group]:
    if group.attrs.get("format") == FORMAT:
        yield group
        return
    for item in group.values():
        if isinstance(item, h5py.Group):
            yield from _walk(item)


def record_groups(source: Source) -> Iterator[h5py.Group]:
    """Every live record group in ``source`` (files opened read-only, closed afterwards): a
    dataset folder (one holding a ``catalog.json`` at any depth: one or several volumes, or a
    Kaggle copy) through its catalog and part indexes (:func:`dataset_parts`), so each live
    record is read once and nothing stale; a folder of record files whole; a list of those."""
    if isinstance(source, h5py.Group):
        yield from _walk(source)
        return
    for item in [source] if isinstance(source, str | os.PathLike) else source:
        path = Path(item)
        if path.is_dir() and open_catalog(path) is not None:
            for part, live in dataset_parts(path):
                with h5py.File(part, "r", rdcc_nbytes=_CACHE_BYTES) as h5:
                    for group in _walk(h5):
                        if str(group.attrs.get("record_id")) in live:
                            yield group
            continue
        for file in sorted(path.rglob("*.h5")) if path.is_dir() else [path]:
            with h5py.File(file, "r", rdcc_nbytes=_CACHE_BYTES) as h5:
                yield from _walk(h5)


class Library:
    """Random access to record groups by id across the files of a source, for resolving a
    file whose pages another record holds. Files are opened on first use and kept open."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._where: dict[str, tuple[Path, str]] | None = None
        self._open: dict[Path, h5py.File] = {}

    def _index(self) -> dict[str, tuple[Path, str]]:
        if self._where is None:
            self._where = {}
            if not isinstance(self.source, h5py.Group):
                for file in _h5_files(self.source):
                    with h5py.File(file, "r") as h5:
                        if h5.attrs.get("format") == FORMAT:
                            self._where.setdefault(str(h5.attrs["record_id"]), (file, "/"))
                        elif isinstance(h5.get("records"), h5py.Group):
                            for rid in h5["records"]:
                                self._where.setdefault(rid, (file, f"records/{rid}"))
        return self._where

    def group(self, record_id: str, near: h5py.Group | None = None) -> h5py.Group:
        """The group of ``record_id``: first beside ``near`` (same file), then anywhere."""
        if near is not None:
            parent = near.parent
            if record_id in parent and parent[record_id].attrs.get("format") == FORMAT:
                return parent[record_id]
        where = self._index().get(record_id)
        if where is None:
            raise KeyError(f"record {record_id} holds pages referenced here but is not in "
                           f"{self.source}: download every part of the volume (see the card)")
        file, name = where
        if file not in self._open:
            self._open[file] = h5py.File(file, "r", rdcc_nbytes=_CACHE_BYTES)
        return self._open[file][name]

    def close(self) -> None:
        for handle in self._open.values():
            handle.close()
        self._open.clear()


# --- reading a group -------------------------------------------------------------------------

def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_metadata(group: h5py.Group) -> dict[str, Any]:
    """The record's metadata JSON (stored gzip-compressed as bytes; older parts as a string)."""
    if METADATA not in group:
        return {}
    raw = group[METADATA][()]
    if isinstance(raw, np.ndarray):
        raw = raw.tobytes()
    if isinstance(raw, bytes) and raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(_text(raw))


def group_labels(group: h5py.Group) -> dict[str, Any]:
    """The record's labels (licence, concept, split, ...), from its metadata."""
    meta = read_metadata(group)
    labels = meta.get("labels")
    if not isinstance(labels, Mapping):
        labels = record_labels(meta.get("record") or {})
    out = dict(labels)
    out["record"] = str(group.attrs["record_id"])
    out["concept"] = str(out.get("concept") or out["record"])
    return out


def _matcher(extensions: Iterable[str] | None, glob: str | None,
             regex: str | re.Pattern[str] | None) -> Callable[[str, str], bool]:
    wanted = None if extensions is None else {e.lower().lstrip(".") for e in extensions}
    compiled = re.compile(regex) if isinstance(regex, str) else regex

    def accept(path: str, extension: str) -> bool:
        return ((wanted is None or extension in wanted)
                and (glob is None or fnmatch.fnmatchcase(path, glob))
                and (compiled is None or compiled.search(path) is not None))
    return accept


def _entries(group: h5py.Group, accept: Callable[[str, str], bool]) -> list[FileEntry]:
    record_id = str(group.attrs["record_id"])
    index = group["files"][()]
    has_holder = "holder" in (index.dtype.names or ())
    entries = []
    for row in index:
        path, ext = _text(row["path"]), _text(row["extension"])
        if accept(path, ext):
            holder = _text(row["holder"]) if has_holder else ""
            entries.append(FileEntry(record_id, path, ext, int(row["size"]), _text(row["sha256"]),
                                     int(row["first_image"]), int(row["image_count"]),
                                     holder or record_id))
    return entries


def iter_entries(source: Source, *, extensions: Iterable[str] | None = None,
                 glob: str | None = None,
                 regex: str | re.Pattern[str] | None = None) -> Iterator[FileEntry]:
    """The file-table rows of every selected file (no images read).

    ``extensions`` without dots, case-insensitive (``"py"``; ``""`` selects files without one);
    ``glob`` matches the whole path (``*`` also crosses ``/``); ``regex`` is searched in it.
    """
    accept = _matcher(extensions, glob, regex)
    for group in record_groups(source):
        yield from _entries(group, accept)


def _nonblank_rows(images: np.ndarray) -> np.ndarray:
    return (images != SPACE).any(axis=-1).sum(axis=-1)


def split_rows_2018(rows: np.ndarray, image_rows: np.ndarray) -> list[np.ndarray]:
    """Stacked 2018 rows back to the 2018 list of arrays: int64 ``(k, width)``, and for an
    image of no rows the float64 ``(0, 0)`` array that 2018's ``pandas.DataFrame([]).values``
    gave (ZENODO_ML_2018.md rule 10)."""
    wide = rows.astype(np.int64)
    bounds = np.concatenate(([0], np.cumsum(image_rows))).tolist()
    return [wide[a:b] if b > a else np.zeros((0, 0), np.float64)
            for a, b in itertools.pairwise(bounds)]


def _read_pages(group: h5py.Group, entries: list[FileEntry], min_nonblank_rows: int,
                library: Library) -> Iterator[tuple[FileEntry, Images]]:
    dataset = group["images"]
    run: list[FileEntry] = []

    def keep(images: np.ndarray) -> np.ndarray:
        return images[_nonblank_rows(images) >= min_nonblank_rows] if min_nonblank_rows \
            else images

    def flush() -> Iterator[tuple[FileEntry, Images]]:
        start = run[0].first_image
        block = dataset[start:run[-1].first_image + run[-1].image_count]
        for entry in run:
            offset = entry.first_image - start
            yield entry, keep(block[offset:offset + entry.image_count])
        run.clear()

    for entry in entries:
        if entry.holder != entry.record_id:
            if run:
                yield from flush()
            held = library.group(entry.holder, near=group)["images"]
            yield entry, keep(held[entry.first_image:entry.first_image + entry.image_count])
            continue
        if run and (entry.first_image != run[-1].first_image + run[-1].image_count
                    or entry.first_image + entry.image_count - run[0].first_image
                    > _READ_IMAGES):
            yield from flush()
        run.append(entry)
    if run:
        yield from flush()


def _read_rows_2018(group: h5py.Group, entries: list[FileEntry],
                    min_nonblank_rows: int) -> Iterator[tuple[FileEntry, Images]]:
    image_rows = group["image_rows"][()]
    offsets = np.concatenate(([0], np.cumsum(image_rows)))
    rows = group["rows"]
    for entry in entries:
        first, last = entry.first_image, entry.first_image + entry.image_count
        images = split_rows_2018(rows[offsets[first]:offsets[last]], image_rows[first:last])
        if min_nonblank_rows:
            images = [i for i in images if i.size and _nonblank_rows(i) >= min_nonblank_rows]
        yield entry, images


def _group_images(group: h5py.Group, entries: list[FileEntry], min_nonblank_rows: int,
                  library: Library) -> Iterator[tuple[FileEntry, Images]]:
    if group.attrs["layout"] == LAYOUT_ROWS_2018:
        return _read_rows_2018(group, entries, min_nonblank_rows)
    return _read_pages(group, entries, min_nonblank_rows, library)


def iter_images(source: Source, *, extensions: Iterable[str] | None = None,
                glob: str | None = None, regex: str | re.Pattern[str] | None = None,
                min_nonblank_rows: int = 0) -> Iterator[tuple[FileEntry, Images]]:
    """``(file-table row, its pages)`` for every selected file, one file at a time."""
    accept = _matcher(extensions, glob, regex)
    library = Library(source)
    try:
        for group in record_groups(source):
            yield from _group_images(group, _entries(group, accept), min_nonblank_rows, library)
    finally:
        library.close()


def _shared_contents(source: Source) -> set[str]:
    """sha256 of every content that occurs under more than one concept in ``source``."""
    first_concept: dict[str, str] = {}
    shared: set[str] = set()
    for group in record_groups(source):
        concept = group_labels(group)["concept"]
        for value in group["files"]["sha256"]:
            digest = _text(value)
            seen = first_concept.setdefault(digest, concept)
            if seen != concept:
                shared.add(digest)
    return shared


def iter_files(folder: Source, *, extensions: Iterable[str] | None = None,
               glob: str | None = None, regex: str | re.Pattern[str] | None = None,
               split: str | Iterable[str] | None = None, licences: Iterable[str] | None = None,
               min_nonblank_rows: int = 0) -> Iterator[tuple[dict[str, Any], Images]]:
    """``(labels, pages)`` for every file of every record in ``folder`` (a version folder, a
    record file, a list of volume folders), optionally selected.

    ``labels``: ``record``, ``concept``, ``path``, ``extension``, ``licence`` (SPDX id of the
    record: each file keeps the licence of its record), ``split``, ``shared`` (the content
    occurs under several concepts here), ``sha256``, ``size``, ``doi``, ``version``,
    ``publication_date``, ``creators``, ``repository``. ``pages``: the ``(n, 80, 80)`` code
    points (a list of 2018 arrays for 2018-mode records). A content stored once is yielded
    under every record that holds it.
    """
    splits = {split} if isinstance(split, str) else set(split) if split is not None else None
    allowed = {spdx_id(x) for x in licences} if licences is not None else None
    accept = _matcher(extensions, glob, regex)
    shared = _shared_contents(folder)
    library = Library(folder)
    try:
        for group in record_groups(folder):
            labels = group_labels(group)
            if (splits is not None and labels.get("split") not in splits) or \
                    (allowed is not None and labels.get("licence") not in allowed):
                continue
            for entry, pages in _group_images(group, _entries(group, accept),
                                              min_nonblank_rows, library):
                yield {**labels, "path": entry.path, "extension": entry.extension,
                       "sha256": entry.sha256, "size": entry.size,
                       "shared": entry.sha256 in shared}, pages
    finally:
        library.close()


# --- loading into memory -----------------------------------------------------------------------

def _combine(parts: list[Images]) -> Images:
    if any(isinstance(p, list) for p in parts):
        return [image for p in parts for image in p]
    if not parts:
        return np.empty((0, 0, 0), np.uint8)
    return np.concatenate(parts)


def load_all(source: Source, *, min_nonblank_rows: int = 0) -> Images:
    """Every page of ``source`` as one ``(N, 80, 80)`` array (a list for 2018 records)."""
    return _combine([pages for _, pages in iter_images(source,
                                                       min_nonblank_rows=min_nonblank_rows)])


def load_by_extension(source: Source, extensions: Iterable[str] | None = None, *,
                      min_nonblank_rows: int = 0) -> dict[str, Images]:
    """``{extension: pages}`` (all extensions, or only those given), like the 2018 loader."""
    grouped: dict[str, list[Images]] = {}
    for entry, pages in iter_images(source, extensions=extensions,
                                    min_nonblank_rows=min_nonblank_rows):
        grouped.setdefault(entry.extension, []).append(pages)
    return {ext: _combine(parts) for ext, parts in sorted(grouped.items())}


def load_by_pattern(source: Source, pattern: str, *,
                    syntax: Literal["glob", "regex"] = "glob",
                    min_nonblank_rows: int = 0) -> Images:
    """The pages of the files whose path matches ``pattern`` (a glob, or a regex searched)."""
    selection = {"glob": pattern} if syntax == "glob" else {"regex": pattern}
    return _combine([pages for _, pages in iter_images(
        source, min_nonblank_rows=min_nonblank_rows, **selection)])


def load_split(folder: Source, split: str, *, extensions: Iterable[str] | None = None,
               drop_shared: bool = False, min_nonblank_rows: int = 0) -> Images:
    """Every page of one split (``train``, ``validation``, ``test``); ``drop_shared`` leaves
    out contents that occur under several concepts (no leakage across software)."""
    return _combine([pages for labels, pages in iter_files(
        folder, split=split, extensions=extensions, min_nonblank_rows=min_nonblank_rows)
        if not (drop_shared and labels["shared"])])


# --- pictures and text --------------------------------------------------------------------------

def page_to_text(page: np.ndarray, *, strip: bool = True) -> str:
    """A page back to text: one line per row; ``strip`` drops the padding spaces at line ends
    and the blank rows that pad the last page."""
    array = np.asarray(page)
    if array.size == 0:
        return ""
    lines = ["".join(map(chr, row.astype(np.int64).tolist())) for row in array]
    if strip:
        lines = [line.rstrip(" ") for line in lines]
        while lines and not lines[-1]:
            lines.pop()
    return "\n".join(lines)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(
        ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def save_png(page: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write one page as a greyscale PNG whose pixel values are the code points (8-bit when all
    fit, else 16-bit, lossless up to U+FFFF), like the 2018 Kaggle subset's images."""
    array = np.asarray(page)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"a page is a non-empty 2-D array, got shape {array.shape}")
    values = array.astype(np.int64)
    depth = 8 if int(values.max()) <= 255 else 16
    pixels = np.clip(values, 0, 255 if depth == 8 else 65535).astype(">u1" if depth == 8
                                                                        else ">u2")
    height, width = pixels.shape
    raw = np.concatenate([np.zeros((height, 1), np.uint8),
                          pixels.view(np.uint8).reshape(height, -1)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, depth, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + _png_chunk(b"IEND", b""))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def export_png(folder: Source, out: str | os.PathLike[str], **selection: Any) -> int:
    """Every selected page as ``<out>/<extension>/<record>-<n>-<page>.png`` (the 2018 Kaggle
    subset's layout: PNG images grouped by extension); returns how many were written.
    ``selection`` takes the keyword arguments of :func:`iter_files`."""
    written = 0
    for n, (labels, pages) in enumerate(iter_files(folder, **selection)):
        for i, page in enumerate(pages):
            if np.asarray(page).size:
                ext = labels["extension"] or "none"
                save_png(page, Path(out) / ext / f"{labels['record']}-{n}-{i}.png")
                written += 1
    return written
