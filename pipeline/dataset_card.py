"""The self-describing files of a dataset version: index, changelog, README card, Frictionless
``datapackage.json``, Kaggle's ``dataset-metadata.json`` and ``SHA256SUMS`` (SPEC section 6).

Why a module of its own: these are pure text renderers of data :mod:`pipeline.version` has
already decided, so they are tested with plain asserts and :mod:`pipeline.version` stays about
*which* bytes go where. Everything is deterministic (sorted keys, sorted rows) so two builds of
the same inputs give the same bytes, and a reviewer can diff versions line by line.

Kaggle's rules checked by its client before any upload (KAGGLE_PROTOCOL.md §4): ``id``
``owner/slug``, ``title`` 6-50 characters, exactly one license ``{"name"}``, ``subtitle`` (if
present) 20-80 characters, ``keywords`` strings, ``resources[].path`` existing top-level files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from pipeline import __version__

if TYPE_CHECKING:
    from pipeline.version import Changes

INDEX_COLUMNS = ("id", "concept", "doi", "record_version", "title", "part", "files", "images",
                 "bytes", "added_in", "dataset_version", "output_sha256", "source_checksums",
                 "redactions")
_INTEGER_COLUMNS = ("files", "images", "bytes", "redactions")
MAX_LISTED = 200   # ids listed per changelog section; the index has them all


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def index_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """The index as CSV (RFC 4180, ``\\n`` line ends); checksums as compact JSON in one cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    for row in rows:
        writer.writerow([_csv_value(row.get(col)) for col in INDEX_COLUMNS])
    return out.getvalue()


def index_json(version: str, rows: Iterable[Mapping[str, Any]]) -> str:
    """The index as JSON, one compact record per line: about half the bytes of indented JSON
    (it is uploaded again with every version) and still diffable line by line."""
    lines = ",\n".join(json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                        for row in rows)
    return (f'{{"dataset_version": {json.dumps(version)}, "records": [\n{lines}\n]}}\n'
            if lines else f'{{"dataset_version": {json.dumps(version)}, "records": []}}\n')


def _listed(ids: Sequence[str], line: Any) -> list[str]:
    lines = [line(rid) for rid in ids[:MAX_LISTED]]
    if len(ids) > MAX_LISTED:
        lines.append(f"- ... and {len(ids) - MAX_LISTED} more (see index.csv)")
    return lines


def changelog_entry(version: str, day: date, changes: Changes, titles: Mapping[str, str], *,
                    live: int) -> str:
    """One version's CHANGELOG section (Markdown): counts, then added / updated / removed ids."""
    def named(rid: str) -> str:
        title = titles.get(rid) or ""
        return f"- {rid}" + (f" {title}" if title else "")

    lines = [f"## {version} ({day.isoformat()})", "",
             f"{len(changes.added)} added, {len(changes.updated)} updated, "
             f"{len(changes.removed)} removed; {live} records in this version."]
    for heading, ids in (("Added", changes.added), ("Updated", changes.updated)):
        if ids:
            lines += ["", f"### {heading}", *_listed(ids, named)]
    if changes.removed:
        lines += ["", "### Removed",
                  *_listed(list(changes.removed), lambda r: f"- {r} ({changes.removed[r]})")]
    return "\n".join(lines) + "\n"


def changelog(entries_newest_first: Iterable[str]) -> str:
    """The whole CHANGELOG.md from each version's entry, newest first."""
    return "# Changelog\n\n" + "\n".join(entries_newest_first)


def sha256sums(files: Mapping[str, str]) -> str:
    """``sha256sum`` format (``<hex>  <name>``) for ``{name: "sha256:<hex>"}``, sorted by name."""
    return "".join(f"{digest.split(':', 1)[1]}  {name}\n"
                   for name, digest in sorted(files.items()) if name != "SHA256SUMS")


def kaggle_title(title: str) -> str:
    """Kaggle's 6-50 character title: cut at a word boundary, padded when too short."""
    title = " ".join(title.split())
    if len(title) > 50:
        title = title[:51].rsplit(" ", 1)[0][:50].rstrip(" ,;:-")
    return title if len(title) >= 6 else (title + " dataset").strip()


def kaggle_metadata(manifest: Any, counts: Mapping[str, int]) -> dict[str, Any]:
    """``dataset-metadata.json``; ``id`` only when a Kaggle destination is configured."""
    ds = manifest.dataset
    meta: dict[str, Any] = {
        "title": kaggle_title(ds.title),
        "licenses": [{"name": ds.license}],
        "keywords": list(ds.keywords),
        "description": f"{ds.description}\n\nSee README.md for the layout, how to load the data "
                       "and how to cite it; CHANGELOG.md for what changed in each version.",
        "resources": [{"path": "index.csv",
                       "description": "One row per record: id, concept, DOI, part file, counts, "
                                      "checksums, dataset version"}],
    }
    kaggle = manifest.destinations.kaggle
    if kaggle is not None:
        meta["id"] = kaggle.dataset
    return meta


def datapackage(manifest: Any, *, version: str, created: datetime,
                files: Mapping[str, tuple[int, str]]) -> dict[str, Any]:
    """Frictionless Data Package (v1) describing ``files`` ``{name: (bytes, "sha256:..")}``."""
    ds = manifest.dataset
    resources = []
    for name, (size, digest) in sorted(files.items()):
        res: dict[str, Any] = {"name": name.lower().replace("_", "-"), "path": name,
                               "bytes": size, "hash": digest}
        if name.endswith(".h5"):
            res.update(format="hdf5", mediatype="application/x-hdf5",
                       description="HDF5 part: one group /records/<id>/ per record")
        elif name == "index.csv":
            res.update(profile="tabular-data-resource", format="csv", mediatype="text/csv",
                       encoding="utf-8", schema={"fields": [
                           {"name": c, "type": "integer" if c in _INTEGER_COLUMNS
                            else "string"} for c in INDEX_COLUMNS]})
        elif name.endswith(".json"):
            res.update(format="json", mediatype="application/json")
        elif name.endswith(".md"):
            res.update(format="md", mediatype="text/markdown")
        resources.append(res)
    return {
        "profile": "data-package", "name": ds.name, "title": ds.title,
        "description": ds.description, "version": version,
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "licenses": [{"name": ds.license}], "keywords": list(ds.keywords),
        "contributors": [{"title": c.name, "role": "author",
                          **({"organization": c.affiliation} if c.affiliation else {}),
                          **({"path": f"https://orcid.org/{c.orcid}"} if c.orcid else {})}
                         for c in ds.creators],
        "sources": [{"title": "Zenodo software records", "path": "https://zenodo.org"}],
        "resources": resources,
    }


def redaction_policy(policy: str, total: int) -> str:
    """The card's privacy statement: the redaction policy and how many values it masked."""
    if policy == "none":
        return ("secrets in the harvested code were **not** redacted (`processing.redact: "
                "none`); images show the code exactly as archived.")
    what = "secrets and e-mail addresses" if policy == "secrets+emails" else "secrets"
    return (f"{what} found in the harvested code (cloud keys, tokens, private keys, passwords, "
            "credentials in URLs; detect-secrets' rules) were replaced, before the transform, "
            "by `*` characters of the same length, so lines and pages keep their shape. "
            f"**{total:,}** values were masked in this version; the `redactions` column of "
            "`index.csv` counts them per record, and each record's `metadata.json` lists where "
            "(path, line, column, rule), never the value.")


def readme(manifest: Any, *, version: str, created: datetime, counts: Mapping[str, int],
           notes: str, parts: Sequence[str], concept_doi: str | None) -> str:
    """The dataset card: what the data is, how it was made, counts, how to load and cite it."""
    ds, p = manifest.dataset, manifest.processing
    authors = "; ".join(c.name for c in ds.creators)
    where = f"https://doi.org/{concept_doi}" if concept_doi else \
        "(the concept DOI is on the Zenodo record page)"
    year = created.year
    rtype = manifest.source.query.resource_type
    c = {k: f"{counts.get(k, 0):,}" for k in ("records", "concepts", "files", "images", "parts")}
    demoted = "\n".join("#" + line if line.startswith("#") else line
                         for line in notes.splitlines()) + "\n"
    return f"""# {ds.title}

Version **{version}**, built {created:%Y-%m-%d} by code-images-pipeline {__version__}.

{ds.description}

## What the data is

Research software archived on Zenodo (records of resource type `{rtype}`, most of them GitHub
releases), with every source file turned into "code images": each character becomes its Unicode
code point in a grid of {p.image_height} lines by {p.image_width} columns, and a file is a stack of
such pages. Lines are cut at {p.image_width} columns and padded with spaces (32), the last page is
padded with rows of spaces, and tabs expand to tab stops of {p.tab_width}.

| records | software concepts | files | images | part files |
|---:|---:|---:|---:|---:|
| {c['records']} | {c['concepts']} | {c['files']} | {c['images']} | {c['parts']} |

## How it was made

On a schedule, the pipeline harvests new or updated Zenodo software records, downloads each
record's archive (md5-verified; the GitHub release archive as fallback), extracts it safely,
skips files over {p.max_file_bytes:,} bytes, binary files (a NUL byte in the first 8 KiB) and the
folders {', '.join(p.exclude_dirs)}, converts every remaining file (mode `{p.mode}`), and publishes
an immutable, checksummed version like this one. Versions policy: `{manifest.source.versions}`
(`latest` keeps only the newest version of each software concept).

Privacy: {redaction_policy(p.redact, counts.get("redactions", 0))}

## Files

- `part-NNNNNN.h5`: HDF5, one group `/records/<id>/` per record with `images` (N x
  {p.image_height} x {p.image_width}, unsigned integers, gzip), `files` (one row per source file:
  path, first_image, image_count, size, sha256, extension), the record's attributes and
  `metadata.json` (the Zenodo record, file tree, processing parameters, checksums). Every
  record of this version is in exactly one part; unchanged parts carry over byte-identical from
  version to version, so updating a download only needs the new parts.
- `index.csv` / `index.json`: every record of this version with its concept, DOI, version,
  part file, counts, checksums, the dataset version that added it (`added_in`) and the one that
  last wrote its data (`dataset_version`).
- `datapackage.json` (Frictionless), `dataset-metadata.json` (Kaggle), `CHANGELOG.md`,
  `SHA256SUMS` (check with `sha256sum -c SHA256SUMS`).

This version has {len(parts)} part file(s): {', '.join(parts) or 'none'}.

## How to load it

With the project's loader (`pipeline.loader`, from the repository that builds this dataset),
pointed at this downloaded folder:

```python
from pipeline.loader import iter_images, load_all, load_by_extension, load_by_pattern

images = load_all("path/to/this/folder", min_nonblank_rows=5)   # drop near-empty pages
python = load_by_extension("path/to/this/folder", ["py"])        # {{"py": images}}
tests = load_by_pattern("path/to/this/folder", "*/tests/*")       # by path glob
```

or with plain h5py, through the index:

```python
import csv, json
import h5py

with open("index.csv", newline="") as fh:
    rows = list(csv.DictReader(fh))
for row in rows:
    with h5py.File(row["part"], "r") as part:
        group = part["records"][row["id"]]
        images = group["images"][:]          # (n, {p.image_height}, {p.image_width}) code points
        files = group["files"][:]            # path, first_image, image_count, size, sha256, ext
        meta = json.loads(group["metadata.json"][()])
        text_of_first_page = "\\n".join("".join(map(chr, line)) for line in images[0])
```

## How to cite it

{authors} ({year}). *{ds.title}* (version {version}) [Data set]. Zenodo. {where}

Cite the software records themselves by the DOIs in `index.csv`. License: {ds.license}.

## What changed in this version

{demoted}"""
