"""Standard descriptions of a dataset version: Frictionless ``datapackage.json`` and MLCommons
Croissant ``croissant.json``.

Why both: Frictionless is what data portals and ``frictionless validate`` read (a checksum per
file, a schema for the tabular index); Croissant is what machine-learning platforms read (Kaggle
and Hugging Face describe datasets with it; ``mlcroissant`` loads records through it). Both are
pure functions of what the version builder already decided (files, sizes, checksums, the index
columns), so they are tested by running the two validators on a built version.

Frictionless quirk (frictionless 5): a JSON resource is opened and inspected, and Kaggle's
``dataset-metadata.json`` holds a ``resources`` list, so it was taken for a nested data package
and failed ("'name' is a required property"). Every resource that is not the CSV index is
therefore declared ``"type": "file"``: described and checksummed, not parsed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

# The Croissant 1.0 JSON-LD context, as the specification's examples and mlcroissant write it.
CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs",
    "column": "cr:column", "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract",
    "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset", "jsonPath": "cr:jsonPath", "key": "cr:key",
    "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex",
    "repeated": "cr:repeated", "replace": "cr:replace", "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/", "separator": "cr:separator", "source": "cr:source",
    "subField": "cr:subField", "transform": "cr:transform",
}
CROISSANT_1_0 = "http://mlcommons.org/croissant/1.0"
_MEDIA = {".h5": "application/x-hdf5", ".csv": "text/csv", ".json": "application/json",
          ".md": "text/markdown", ".png": "image/png", ".py": "text/x-python",
          "SHA256SUMS": "text/plain"}
_CROISSANT_TYPES = {"string": "sc:Text", "integer": "sc:Integer", "number": "sc:Float",
                    "boolean": "sc:Boolean", "date": "sc:Date"}
Column = tuple[str, str, str]  # (name, Frictionless type, description)


def media_type(name: str) -> str:
    for suffix, media in _MEDIA.items():
        if name.endswith(suffix):
            return media
    return "application/octet-stream"


def _columns(file: str, tables: Mapping[str, Sequence[Column]]) -> Sequence[Column] | None:
    """The columns of ``file`` if it is a table: named exactly, or matched by a glob key."""
    if file in tables:
        return tables[file]
    return next((cols for pattern, cols in tables.items()
                 if "*" in pattern and fnmatch.fnmatchcase(file, pattern)), None)


def _resource_name(name: str) -> str:
    """Frictionless names: lower case letters, digits, ``-._``."""
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in name.lower())


def datapackage(*, name: str, title: str, description: str, version: str, created: datetime,
                license: str, keywords: Sequence[str], contributors: Sequence[Mapping[str, str]],
                files: Mapping[str, tuple[int, str]], tables: Mapping[str, Sequence[Column]],
                descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Frictionless Data Package (v1) of ``files`` ``{name: (bytes, "sha256:<hex>")}``;
    ``tables`` gives the columns of the CSV files among them, by name or by a glob
    (``part-*.csv``)."""
    resources = []
    for file, (size, digest) in sorted(files.items()):
        res: dict[str, Any] = {"name": _resource_name(file), "path": file, "bytes": size,
                               "hash": digest, "mediatype": media_type(file)}
        columns = _columns(file, tables)
        if columns is not None:
            res.update(profile="tabular-data-resource", format="csv", encoding="utf-8",
                       schema={"fields": [{"name": c, "type": t, "description": d}
                                          for c, t, d in columns]})
        else:
            res["type"] = "file"
        if descriptions and file in descriptions:
            res["description"] = descriptions[file]
        resources.append(res)
    return {
        "profile": "data-package", "name": name, "title": title, "description": description,
        "version": version, "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "licenses": [{"name": license}], "keywords": list(keywords),
        "contributors": [dict(c) for c in contributors],
        "sources": [{"title": "Zenodo software records", "path": "https://zenodo.org"}],
        "resources": resources,
    }


def croissant(*, name: str, title: str, description: str, version: str, created: datetime,
              license: str, keywords: Sequence[str], creators: Sequence[str], url: str,
              cite_as: str, files: Mapping[str, tuple[int, str]],
              tables: Mapping[str, Sequence[Column]],
              descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Croissant 1.0 description: every file a ``FileObject`` (sha256), and each table a
    ``RecordSet`` whose fields are its columns, so ``mlcroissant`` can load the index. A table
    keyed by a glob (``part-*.csv``: the per-part indexes) reads a ``FileSet`` of those files."""
    distribution = []
    for file, (size, digest) in sorted(files.items()):
        obj: dict[str, Any] = {"@type": "cr:FileObject", "@id": file, "name": file,
                               "contentUrl": file, "contentSize": f"{size} B",
                               "encodingFormat": media_type(file),
                               "sha256": digest.split(":", 1)[-1]}
        if descriptions and file in descriptions:
            obj["description"] = descriptions[file]
        distribution.append(obj)
    record_sets = []
    for file, columns in sorted(tables.items()):
        set_id = file.rsplit(".", 1)[0].replace("*", "all")
        source_key = "fileObject"
        if "*" in file:
            source_key, set_id = "fileSet", "records"
            distribution.append({"@type": "cr:FileSet", "@id": file, "name": file,
                                 "encodingFormat": media_type(file), "includes": file,
                                 "description": "the per-part index files"})
        record_sets.append({
            "@type": "cr:RecordSet", "@id": set_id, "name": set_id,
            "description": f"one row per record, from {file}",
            "field": [{"@type": "cr:Field", "@id": f"{set_id}/{c}", "name": c,
                       "description": d, "dataType": _CROISSANT_TYPES.get(t, "sc:Text"),
                       "source": {source_key: {"@id": file}, "extract": {"column": c}}}
                      for c, t, d in columns]})
    return {
        "@context": CROISSANT_CONTEXT, "@type": "sc:Dataset", "name": name,
        "description": f"{title}. {description}", "conformsTo": CROISSANT_1_0,
        "citeAs": cite_as, "license": license, "url": url, "version": version,
        "datePublished": created.strftime("%Y-%m-%dT%H:%M:%S"), "keywords": list(keywords),
        "creator": [{"@type": "sc:Person", "name": c} for c in creators],
        "isLiveDataset": True, "distribution": distribution, "recordSet": record_sets,
    }
