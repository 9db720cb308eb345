"""The dataset's value types and file names: a leaf module every stage may import.

Why a leaf: the version builder, the publishers, the loader and the orchestration all speak about
the same things (a built version, its listing, its parts and volumes). Keeping those types here,
importing nothing else of the pipeline, is what keeps the import graph a tree (the builder never
imports a publisher and a publisher never imports the builder).

Vocabulary (see :mod:`pipeline.version` for the layout):

* a **part** ``part-NNNNNN.h5`` holds records; its **part index** ``part-NNNNNN.csv`` lists the
  part's *live* records (a record updated or removed later stays in the part's bytes but leaves
  its index); part numbers are unique across the whole dataset;
* a **volume** is one Zenodo concept record (at most 100 files and ``volume_max_bytes``); a
  dataset **version** is a new version of the newest volume;
* a version's **listing** is every file of that Zenodo record version (name, size, md5, sha256);
  only the files the version *wrote* are on the builder's disk, the rest carry over on Zenodo.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.research import EXTRA_FILES

CATALOG = "catalog.json"
# Files every version of a volume holds besides its parts and part indexes.
FIXED_FILES = ("catalog.json", "datapackage.json", "dataset-metadata.json", "README.md",
               "CHANGELOG.md", "SHA256SUMS", *EXTRA_FILES)
ZENODO_MAX_FILES = 100           # files per Zenodo record (ZENODO_API.md §5.5)
PART_FORMAT = "code-images-part/1"
CATALOG_FORMAT = "code-images-catalog/1"
PART_RE = re.compile(r"^part-(\d{6})\.h5$")
PART_INDEX_RE = re.compile(r"^part-(\d{6})\.csv$")


def part_name(number: int) -> str:
    return f"part-{number:06d}.h5"


def index_name(part: str) -> str:
    """The part index file of ``part`` (flat, beside it: Kaggle ignores sub-folders)."""
    return part[: -len(".h5")] + ".csv"


def is_part(name: str) -> bool:
    return PART_RE.match(name) is not None


def part_number(name: str) -> int:
    m = PART_RE.match(name) or PART_INDEX_RE.match(name)
    if m is None:
        raise ValueError(f"not a part file name: {name!r}")
    return int(m.group(1))


def id_key(record_id: str) -> tuple[int, int | str]:
    """Sort key for record ids: numerically when they are numbers (Zenodo ids grow with time)."""
    return (0, int(record_id)) if record_id.isdigit() else (1, record_id)


def version_key(version: str) -> tuple[int, str]:
    """Sort key for version strings ``"<n>.<YYYYMMDD>"``: by ``n``."""
    head, _, rest = version.partition(".")
    return (int(head) if head.isdigit() else -1, rest)


def max_parts_per_volume(max_parts: int, max_files: int = ZENODO_MAX_FILES) -> int:
    """Parts a volume may hold: each part comes with its index file, plus the fixed files."""
    return max(1, min(max_parts, (max_files - len(FIXED_FILES)) // 2))


def with_needs(parts: Iterable[str], needs: Mapping[str, Iterable[str]]) -> set[str]:
    """``parts`` and every part they need, transitively (see :func:`newest_within`)."""
    closure, todo = set(parts), list(parts)
    while todo:
        for dep in needs.get(todo.pop(), ()):
            if dep not in closure:
                closure.add(dep)
                todo.append(dep)
    return closure


def newest_within(parts: Sequence[tuple[str, int]], budget: int,
                  needs: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """The newest parts (highest numbers first) whose sizes add up to at most ``budget``, each
    with every part it ``needs`` (part -> the parts holding pages its records refer to:
    contents are stored once, :mod:`pipeline.dedup`), so every reference resolves in the
    subset. Stops at the first part that does not fit.

    Why newest: a Kaggle user wants recent software, and the choice must not depend on which
    files happen to be on disk, so the builder (for the card) and the Kaggle publisher agree.
    ``parts`` are ``(name, bytes)`` where bytes include the part's index file.
    """
    size = dict(parts)
    chosen: list[str] = []
    used = 0
    for name in sorted(size, key=lambda n: -part_number(n)):
        if name in chosen:
            continue
        extra = [p for p in with_needs([name], needs or {}) if p not in chosen]
        cost = sum(size.get(p, 0) for p in extra)
        if used + cost > budget:
            break
        chosen += extra
        used += cost
    return sorted(chosen)


@dataclass(frozen=True)
class Changes:
    """What a new version changes relative to the previous live set (ids sorted numerically)."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    removed: Mapping[str, str]   # id -> why it left the dataset
    live: tuple[str, ...]        # every live record after this version

    @property
    def empty(self) -> bool:
        return not (self.added or self.updated or self.removed)


@dataclass(frozen=True)
class BuiltVersion:
    """A dataset version as ``version`` built it: the listing of a Zenodo record version.

    ``files``/``md5``/``sizes`` cover *every* file of the version (carried parts included);
    ``written`` names the files this version wrote, which are the only ones in ``folder``.
    Flat, because Kaggle's client skips sub-folders and Zenodo records have no folders.
    """

    version: str                 # unique, ordered, e.g. "3.20261121"
    folder: Path                 # <workdir>/versions/<version>/ (only the written files)
    files: dict[str, str]        # name -> "sha256:<hex>" for every file of the version
    md5: dict[str, str]          # name -> "md5:<hex>" (what Zenodo reports back)
    sizes: dict[str, int]        # name -> bytes
    notes: str                   # this version's CHANGELOG entry (Markdown)
    counts: dict[str, int] = field(default_factory=dict)  # records, images, added, ...
    volume: int = 1
    written: frozenset[str] = frozenset()

    def local(self, name: str) -> Path | None:
        """The path of ``name`` if this version wrote it (so it is on disk), else None."""
        return self.folder / name if name in self.written else None

    def parts(self) -> list[str]:
        return sorted(n for n in self.files if is_part(n))


def latest_by_volume(versions: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """The newest ``state.versions`` entry of every volume (entries without one are volume 1)."""
    out: dict[int, Mapping[str, Any]] = {}
    for entry in versions:
        out[int(entry.get("volume") or 1)] = entry
    return out
