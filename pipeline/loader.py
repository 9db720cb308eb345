"""Reading the code images back: the public API for people who use the dataset.

Why: the 2018 dataset shipped ``load_all`` / ``load_by_extension`` / ``load_by_regexp`` over
pickles (ZENODO_ML_2018.md, "The loader the dataset shipped with"); its users select data in those
three ways. The same three are here, over HDF5, with names that say what they do:

* :func:`load_all` - every image;
* :func:`load_by_extension` - ``{extension: images}``, optionally only some extensions;
* :func:`load_by_pattern` - images of the files whose path matches a glob (default) or a regex;

and, underneath, :func:`iter_files` (the per-file index only) and :func:`iter_images` (one file's
images at a time, for data larger than memory).

A *source* is any of: a record file ``<id>.h5``; a folder (every ``*.h5`` below it, in name
order: a downloaded dataset version with its part files, or a folder of record files); or an open
``h5py.Group``. Records are found wherever they sit, as the root of a record file or as groups of
a part file (:func:`pipeline.store.copy_record`), by their ``format`` attribute.

Arrays come back exactly as written: default-mode pages as ``(N, height, width)`` in the stored
unsigned dtype; ``zenodo-ml-2018`` records as the 2018 list of int64 arrays of varying shape (the
2018 loader's re-splitting and padding are not applied; :func:`load_all` and friends return a list
whenever such a record is selected). ``min_nonblank_rows`` drops near-empty images: those with
fewer rows holding anything but spaces (the 2018 loader dropped blocks of 30 rows or fewer).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import h5py
import numpy as np

from pipeline.convert import SPACE, split_rows_2018
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


def record_groups(source: Source) -> Iterator[h5py.Group]:
    """Every record group in ``source`` (files are opened read-only and closed afterwards)."""
    if isinstance(source, h5py.Group):
        yield from _walk(source)
        return
    path = Path(source)
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
