"""What a dataset version gives researchers beyond its parts: the loader that travels with the
data, provenance columns of the index, figures, Croissant and Frictionless descriptions, and the
card's sections on licences, concepts, splits and shared contents.

Why one module: :mod:`pipeline.version` decides *which* bytes go where; this module says what a
researcher needs to know about them, from inputs the builder already has (the labels each
record carries since ``process``, the pack results of :mod:`pipeline.dedup`, the running counts
of the state). None of it reads the whole dataset.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline import code_images
from pipeline.code_images import SPACE, group_labels
from pipeline.figures import FIGURES, write_figures

LOADER = "code_images.py"
CROISSANT = "croissant.json"
# Files every version writes besides the builder's own (they change with every version).
EXTRA_FILES = (LOADER, CROISSANT, *FIGURES)
# Index columns added for researchers: (name, Frictionless type, description).
PROVENANCE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("licence", "string", "SPDX id of the record's licence; each file keeps it"),
    ("creators", "string", "the record's creators, '; '-separated"),
    ("publication_date", "string", "the record's publication date on Zenodo (ISO 8601)"),
    ("repository", "string", "source repository URL (GitHub, GitLab, Bitbucket) if named"),
    ("split", "string", "train / validation / test, by a stable hash of the concept id"),
    ("shared_files", "integer", "files whose content is also stored under another concept "
                                "(known when packed; code_images labels 'shared' exactly)"),
    ("stored_images", "integer", "pages stored in this record's own group"),
    ("holders", "string", "records whose groups hold pages of this record's files, "
                          "' '-separated (contents stored once)"),
    ("extensions", "string", "pages per file extension, 'py:12 c:3' (all files, as loaded)"),
    ("contents", "string", "the record's contents: transform digest, then sha256:first:count "
                           "(stored here) or sha256:first:count:holder:part (stored there)"),
)
TOTALS = ("licences", "extensions")


def extensions_cell(counts: Mapping[str, int]) -> str:
    return " ".join(f"{ext or '-'}:{n}" for ext, n in sorted(counts.items()))


def parse_extensions(cell: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in (cell or "").split():
        ext, _, n = item.rpartition(":")
        out["" if ext == "-" else ext] = int(n)
    return out


def update_totals(totals: Mapping[str, Any] | None, added: Iterable[Mapping[str, Any]],
                  removed: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Running totals of the whole dataset (records and files per licence, pages per
    extension, records and images per split), carried from version to version in the state and
    updated only by the index rows of the records a version adds and removes: no pass over the
    dataset."""
    licences: dict[str, list[int]] = {k: list(v) for k, v in
                                      ((totals or {}).get("licences") or {}).items()}
    extensions: Counter[str] = Counter((totals or {}).get("extensions") or {})
    splits: dict[str, list[int]] = {k: list(v) for k, v in
                                    ((totals or {}).get("splits") or {}).items()}
    for rows, sign in ((added, 1), (removed, -1)):
        for row in rows:
            side = splits.setdefault(str(row.get("split") or "(none)"), [0, 0])
            side[0] += sign
            side[1] += sign * int(row.get("images") or 0)
            lic = str(row.get("licence") or "(none)")
            entry = licences.setdefault(lic, [0, 0])
            entry[0] += sign
            entry[1] += sign * int(row.get("files") or 0)
            for ext, n in parse_extensions(row.get("extensions")).items():
                extensions[ext] += sign * n
    return {"licences": {k: v for k, v in sorted(licences.items()) if v[0] > 0},
            "extensions": {k: v for k, v in sorted(extensions.items()) if v > 0},
            "splits": {k: v for k, v in sorted(splits.items()) if v[0] > 0}}


def write_extras(folder: str | os.PathLike[str], *, extensions: Mapping[str, int],
                 growth: Sequence[tuple[str, int, int]],
                 samples_from: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The loader and the figures into a version folder; returns their names. ``samples_from``:
    the complete record files this version adds (the mosaic shows new data)."""
    ship_loader(folder)
    written = write_figures(folder, images_per_extension=extensions, versions=growth,
                            samples=sample_pages(samples_from))
    return [LOADER, *written]


def ship_loader(folder: str | os.PathLike[str]) -> Path:
    """Copy the loader, byte for byte, into a version folder: one source, never a hand copy."""
    target = Path(folder) / LOADER
    shutil.copyfile(code_images.__file__, target)
    return target


def provenance_columns(labels: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance cells of one index row, from the record's labels."""
    return {"licence": labels.get("licence") or "",
            "creators": "; ".join(labels.get("creators") or []),
            "publication_date": labels.get("publication_date") or "",
            "repository": labels.get("repository") or "", "split": labels.get("split") or ""}


def record_columns(h5_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The researcher columns of one complete record file (``records/<id>.h5``): provenance
    from its labels and pages per extension."""
    with h5py.File(h5_path, "r") as h5:
        labels = group_labels(h5)
        table = h5["files"][()]
    per_extension: Counter[str] = Counter()
    for row in table:  # pages as loaded: a content stored once counts under every file
        ext = row["extension"].decode("utf-8") if isinstance(row["extension"], bytes) \
            else str(row["extension"])
        per_extension[ext] += int(row["image_count"])
    return {**provenance_columns(labels), "extensions": extensions_cell(per_extension)}


def sample_pages(record_files: Iterable[str | os.PathLike[str]], *, count: int = 8
                 ) -> list[tuple[str, np.ndarray]]:
    """The densest page of a few files of different extensions, for the mosaic figure."""
    best: dict[str, tuple[int, str, np.ndarray]] = {}
    for path in record_files:
        for entry, pages in code_images.iter_images(path):
            if not isinstance(pages, np.ndarray) or not len(pages):
                continue
            density = (pages != SPACE).sum(axis=(1, 2))
            i = int(density.argmax())
            ext = entry.extension or "(none)"
            if ext not in best or int(density[i]) > best[ext][0]:
                best[ext] = (int(density[i]), entry.path.rsplit("/", 1)[-1], pages[i])
    ranked = sorted(best.values(), key=lambda b: (-b[0], b[1]))[:count]
    return [(name, page) for _, name, page in ranked]


def licence_table(licences: Mapping[str, Sequence[int]]) -> str:
    """Markdown: records and files per licence (``{licence: [records, files]}``)."""
    lines = ["| licence (SPDX) | records | files |", "|---|---:|---:|"]
    lines += [f"| {lic} | {n[0]:,} | {n[1]:,} |"
              for lic, n in sorted(licences.items(), key=lambda kv: (-kv[1][0], kv[0]))]
    return "\n".join(lines)


def split_table(splits: Mapping[str, Sequence[int]],
                proportions: Sequence[tuple[str, float]]) -> str:
    """Markdown: records and images per split, beside the configured proportions; ``splits`` is
    the running total ``{split: [records, images]}`` (:func:`update_totals`), so no pass over
    the dataset is needed. The split is a function of the concept, so every version of one
    software is on one side."""
    share = dict(proportions)
    total = sum(share.values()) or 1
    names = [*share, *(n for n in splits if n not in share)]
    lines = ["| split | share | records | images |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {share.get(name, 0) / total:.0%} | "
              f"{int((splits.get(name) or (0, 0))[0]):,} | "
              f"{int((splits.get(name) or (0, 0))[1]):,} |" for name in names]
    return "\n".join(lines)


def card_sections(*, licences: Mapping[str, Sequence[int]], splits: Mapping[str, Sequence[int]],
                  proportions: Sequence[tuple[str, float]], figures: str,
                  policy: str | Sequence[str]) -> str:
    """The card's sections for researchers (Markdown): pictures, licences, concepts and splits,
    shared contents, and how to load it with the loader in this folder."""
    allowed = policy if isinstance(policy, str) else ", ".join(policy)
    return f"""## Pictures

{figures}
## Licences of the code

The dataset as a whole is published under the licence stated below, but **each file keeps the
licence of its record**: the code in it was published on Zenodo under that licence, and using a
file means following it (attribution, share-alike, ...). The licence of every record is the
`licence` column of the index and `labels["licence"]` in the loader. Records enter the dataset
only under licences that allow redistribution (policy `{allowed}`, the pipeline's
`source.licenses`); records without a licence are left out.

{licence_table(licences)}

## Concepts, splits and shared contents

A **record** is one version of one piece of software on Zenodo; its **concept** (`concept`
column) is the Zenodo id shared by all versions of that software. Versions of one software
repeat most of their files, so a split by record would put the same code into training and
test data. The `split` column therefore assigns whole concepts: `train`, `validation` or `test`
by a stable hash of the concept id (sha256), so every version of a software, including those
added later, lands in the same split.

{split_table(splits, proportions)}

Each content is stored once: a file whose exact bytes are already stored (typically in an
earlier version of the same software) points at those pages (`holders` column, `holder` in a
group's `files` table); the loader yields it under every record that holds it. Some contents
occur under several concepts (a vendored library, a licence text, a template): the loader marks
them `labels["shared"]` (exactly, over what you loaded) and `shared_files` counts them per record
as known when packed. Drop them for a split without leakage across software.

## How to load it

This folder holds `code_images.py`, a loader that needs only numpy and h5py (no other code):

```python
import code_images   # run beside this folder's files, or copy code_images.py anywhere

# every file of every record: (labels, pages); pages is (n, 80, 80) code points
for labels, pages in code_images.iter_files(".", split="train", extensions=["py"]):
    if labels["shared"]:
        continue                       # content also under another software: skip it
    print(labels["record"], labels["concept"], labels["path"], labels["licence"])
    print(code_images.page_to_text(pages[0]))      # a page back to text
    code_images.save_png(pages[0], "page.png")     # code points as a greyscale PNG
    break

test = code_images.load_split(".", "test", drop_shared=True)        # (N, 80, 80)
by_ext = code_images.load_by_extension(".", ["py", "jl"])            # {{"py": ..., "jl": ...}}
tests = code_images.load_by_pattern(".", "*/tests/*", min_nonblank_rows=5)
code_images.export_png(".", "png/", extensions=["py"])               # like the 2018 subset
```

The loader reads the folder through `catalog.json` and the part indexes (live records, each
once). Several volumes: download each into a sub-folder of one folder and pass that folder.
Pages are only ever stored in the same volume as the records that use them, and the Kaggle copy
holds every part its parts refer to, so each download loads completely on its own.
"""


def _descriptions() -> dict[str, str]:
    return {LOADER: "loader needing only numpy and h5py: code_images.iter_files(folder)",
            CROISSANT: "MLCommons Croissant 1.0 description"}


def datapackage_for(manifest: Any, *, version: str, created: Any,
                    files: Mapping[str, tuple[int, str]],
                    tables: Mapping[str, Sequence[tuple[str, str, str]]]) -> dict[str, Any]:
    """``datapackage.json`` of a version folder (see :mod:`pipeline.describe`)."""
    from pipeline.describe import datapackage

    ds = manifest.dataset
    return datapackage(
        name=ds.name, title=ds.title, description=ds.description, version=version,
        created=created, license=ds.license, keywords=ds.keywords,
        contributors=[{"title": c.name, "role": "author",
                       **({"organization": c.affiliation} if c.affiliation else {}),
                       **({"path": f"https://orcid.org/{c.orcid}"} if c.orcid else {})}
                      for c in ds.creators],
        files=files, tables=tables, descriptions=_descriptions())


def croissant_for(manifest: Any, *, version: str, created: Any,
                  files: Mapping[str, tuple[int, str]],
                  tables: Mapping[str, Sequence[tuple[str, str, str]]],
                  concept_doi: str | None) -> dict[str, Any]:
    """``croissant.json`` of a version folder (see :mod:`pipeline.describe`)."""
    from pipeline.describe import croissant

    ds = manifest.dataset
    url = f"https://doi.org/{concept_doi}" if concept_doi else "https://zenodo.org"
    authors = "; ".join(c.name for c in ds.creators)
    return croissant(
        name=ds.name, title=ds.title, description=ds.description, version=version,
        created=created, license=ds.license, keywords=ds.keywords,
        creators=[c.name for c in ds.creators], url=url,
        cite_as=f"{authors} ({created.year}). {ds.title} (version {version}). Zenodo. {url}",
        files={k: v for k, v in files.items() if k != CROISSANT}, tables=tables,
        descriptions=_descriptions())
