"""Reading the code images back: the public API for people who use the dataset.

Why: the 2018 dataset shipped ``load_all`` / ``load_by_extension`` / ``load_by_regexp`` over
pickles (ZENODO_ML_2018.md, "The loader the dataset shipped with"); its users select data in those
three ways. The same three are here, over HDF5, with names that say what they do:

* :func:`load_all` - every image;
* :func:`load_by_extension` - ``{extension: images}``, optionally only some extensions;
* :func:`load_by_pattern` - images of the files whose path matches a glob (default) or a regex;

and, underneath, :func:`iter_files` (the per-file index only) and :func:`iter_images` (one file's
images at a time, for data larger than memory).

A *source* is any of: a record file ``<id>.h5``; a folder; or an open ``h5py.Group``. A folder
holding a ``catalog.json`` (a downloaded dataset: one or several volumes, each in any sub-folder,
or a Kaggle copy) is read **through its catalog and part indexes** (:func:`dataset_parts`): the
newest catalog found names every volume's parts; each part's index ``part-NNNNNN.csv`` names its
live records (a record updated or removed later stays in the part's bytes but leaves the index),
and the catalog's ``withdrawn`` ids of closed volumes are dropped, so every live record is read
exactly once and nothing stale. Parts the folder lacks (a Kaggle subset, a volume not downloaded)
are skipped. A folder without a catalog (a folder of record files) is read whole: every ``*.h5``
below it, in name order. Records are found wherever they sit, as the root of a record file or as
groups of a part file (:func:`pipeline.store.copy_record`), by their ``format`` attribute.

Arrays come back exactly as written: default-mode pages as ``(N, height, width)`` in the stored
unsigned dtype; ``zenodo-ml-2018`` records as the 2018 list of int64 arrays of varying shape (the
2018 loader's re-splitting and padding are not applied; :func:`load_all` and friends return a list
whenever such a record is selected). ``min_nonblank_rows`` drops near-empty images: those with
fewer rows holding anything but spaces (the 2018 loader dropped blocks of 30 rows or fewer).
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import h5py
import numpy as np

from pipeline.convert import SPACE, split_rows_2018
from pipeline.dataset import CATALOG, index_name, version_key
from pipeline.store import FORMAT, LAYOUT_ROWS_2018

Source: TypeAlias = "str | os.PathLike[str] | h5py.Group"
Images = np.ndarray | list[np.ndarray]
_READ_IMAGES = 4096  # images per HDF5 read when consecutive files are selected
_CACHE_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class FileEntry:
    """One row of a record's per-file index."""

    record_id: str
    path: str
    extension: str
    size: int
    sha256: str
    first_image: int
    image_count: int


def open_catalog(source: str | os.PathLike[str]) -> dict | None:
    """The newest ``catalog.json`` in a folder (any depth) or at a path, or None."""
    path = Path(source)
    found = [path] if path.is_file() else sorted(path.rglob(CATALOG)) if path.is_dir() else []
    catalogs = [json.loads(p.read_text(encoding="utf-8")) for p in found]
    return max(catalogs, key=lambda c: version_key(str(c.get("dataset_version", "")))) \
        if catalogs else None


def _newest_copies(folder: Path, pattern: str) -> dict[str, Path]:
    """``{name: path}`` of the files matching ``pattern`` below ``folder``; when several
    folders hold one name (downloads of several versions), the copy beside the newest catalog
    wins (a part index is rewritten when its records change)."""
    def rank(path: Path) -> tuple[int, str]:
        cat = path.parent / CATALOG
        if cat.is_file():
            return version_key(str(json.loads(cat.read_text(encoding="utf-8"))
                                   .get("dataset_version", "")))
        return (-1, "")
    best: dict[str, Path] = {}
    for path in sorted(folder.rglob(pattern)):
        if path.name not in best or rank(path) > rank(best[path.name]):
            best[path.name] = path
    return best


def dataset_parts(folder: str | os.PathLike[str]) -> list[tuple[Path, frozenset[str]]]:
    """``(part file, live record ids)`` of every part of the dataset present under ``folder``,
    by its newest catalog (see the module docstring); empty if there is no catalog."""
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
            if name not in parts or index_name(name) not in indexes:
                continue   # not downloaded (another volume, or a Kaggle subset)
            with open(indexes[index_name(name)], newline="", encoding="utf-8") as fh:
                live = {row["id"] for row in csv.DictReader(fh)} - withdrawn
            out.append((parts[name], frozenset(live)))
    return out


def record_groups(source: Source) -> Iterator[h5py.Group]:
    """Every live record group in ``source`` (files are opened read-only and closed
    afterwards); a dataset folder is read through its catalog (module docstring)."""
    if isinstance(source, h5py.Group):
        yield from _walk(source)
        return
    path = Path(source)
    if path.is_dir() and open_catalog(path) is not None:
        for part, live in dataset_parts(path):
            with h5py.File(part, "r", rdcc_nbytes=_CACHE_BYTES) as h5:
                for group in _walk(h5):
                    if str(group.attrs.get("record_id")) in live:
                        yield group
        return
    files = sorted(path.rglob("*.h5")) if path.is_dir() else [path]
    for file in files:
        with h5py.File(file, "r", rdcc_nbytes=_CACHE_BYTES) as h5:
            yield from _walk(h5)


def _walk(group: h5py.Group) -> Iterator[h5py.Group]:
    if group.attrs.get("format") == FORMAT:
        yield group
        return
    for item in group.values():
        if isinstance(item, h5py.Group):
            yield from _walk(item)


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
    entries = []
    for row in index:
        path = row["path"].decode("utf-8") if isinstance(row["path"], bytes) else row["path"]
        ext = row["extension"]
        ext = ext.decode("utf-8") if isinstance(ext, bytes) else ext
        if accept(path, ext):
            entries.append(FileEntry(record_id, path, ext, int(row["size"]),
                                     row["sha256"].decode("ascii"), int(row["first_image"]),
                                     int(row["image_count"])))
    return entries


def iter_files(source: Source, *, extensions: Iterable[str] | None = None,
               glob: str | None = None,
               regex: str | re.Pattern[str] | None = None) -> Iterator[FileEntry]:
    """The per-file index of every selected file (no images read).

    ``extensions`` without dots, case-insensitive (``"py"``; ``""`` selects files without one);
    ``glob`` matches the whole path (``*`` also crosses ``/``); ``regex`` is searched in the path.
    """
    accept = _matcher(extensions, glob, regex)
    for group in record_groups(source):
        yield from _entries(group, accept)


def _nonblank_rows(images: np.ndarray) -> np.ndarray:
    return (images != SPACE).any(axis=-1).sum(axis=-1)


def _read_pages(group: h5py.Group, entries: list[FileEntry],
                min_nonblank_rows: int) -> Iterator[tuple[FileEntry, Images]]:
    dataset = group["images"]
    run: list[FileEntry] = []

    def flush() -> Iterator[tuple[FileEntry, Images]]:
        start = run[0].first_image
        block = dataset[start:run[-1].first_image + run[-1].image_count]
        for entry in run:
            images = block[entry.first_image - start:entry.first_image - start
                           + entry.image_count]
            if min_nonblank_rows:
                images = images[_nonblank_rows(images) >= min_nonblank_rows]
            yield entry, images
        run.clear()

    for entry in entries:
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
            images = [i for i in images if _nonblank_rows(i) >= min_nonblank_rows]
        yield entry, images


def iter_images(source: Source, *, extensions: Iterable[str] | None = None,
                glob: str | None = None, regex: str | re.Pattern[str] | None = None,
                min_nonblank_rows: int = 0) -> Iterator[tuple[FileEntry, Images]]:
    """``(file entry, its images)`` for every selected file, one file at a time.

    Images are ``(k, height, width)`` arrays, or lists of int64 arrays for 2018-mode records.
    """
    accept = _matcher(extensions, glob, regex)
    for group in record_groups(source):
        entries = _entries(group, accept)
        if group.attrs["layout"] == LAYOUT_ROWS_2018:
            yield from _read_rows_2018(group, entries, min_nonblank_rows)
        else:
            yield from _read_pages(group, entries, min_nonblank_rows)


def _combine(parts: list[Images]) -> Images:
    if any(isinstance(p, list) for p in parts):
        return [image for p in parts for image in p]
    if not parts:
        return np.empty((0, 0, 0), np.uint8)
    return np.concatenate(parts)


def load_all(source: Source, *, min_nonblank_rows: int = 0) -> Images:
    """Every image of ``source`` as one ``(N, height, width)`` array (a list for 2018 records)."""
    return _combine([images for _, images in iter_images(source,
                                                         min_nonblank_rows=min_nonblank_rows)])


def load_by_extension(source: Source, extensions: Iterable[str] | None = None, *,
                      min_nonblank_rows: int = 0) -> dict[str, Images]:
    """``{extension: images}`` (all extensions, or only those given), like the 2018 loader."""
    grouped: dict[str, list[Images]] = {}
    for entry, images in iter_images(source, extensions=extensions,
                                     min_nonblank_rows=min_nonblank_rows):
        grouped.setdefault(entry.extension, []).append(images)
    return {ext: _combine(parts) for ext, parts in sorted(grouped.items())}


def load_by_pattern(source: Source, pattern: str, *,
                    syntax: Literal["glob", "regex"] = "glob",
                    min_nonblank_rows: int = 0) -> Images:
    """The images of the files whose path matches ``pattern`` (a glob, or a regex searched)."""
    selection = {"glob": pattern} if syntax == "glob" else {"regex": pattern}
    return _combine([images for _, images in iter_images(
        source, min_nonblank_rows=min_nonblank_rows, **selection)])
