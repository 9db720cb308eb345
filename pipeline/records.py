"""One record type for the three JSON shapes Zenodo has served for the same record.

Why: a harvester that runs for years meets records serialised in different eras, and fixtures,
caches and old state must keep parsing. ``parse_record`` accepts (ZENODO_API.md section 2):

* **current** (zenodo.org since 2023-10-25, ``Accept: application/json``): ``files[]`` with
  ``key``, ``size``, ``checksum: "md5:<hex>"``, ``links.self`` = ``.../content`` download URL;
* **transitional** (2023-10-13 .. 2023-10-25): ``files[]`` with ``filename``, ``filesize``, a bare
  hex ``checksum`` and ``links.download``;
* **pre-2023** (legacy Invenio v3): ``files[]`` with ``bucket``, ``type``, ``key``, ``size``,
  ``checksum: "md5:"`` and ``links.self`` = ``/api/files/<bucket>/<key>``; ``owners`` as ints;
  no ``revision`` (taken as 0 then) and ``updated`` only.

All three reduce to :class:`Record`; checksums become ``"md5:<hex>"`` strings (STYLE guideline 4).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

_GITHUB_TREE = re.compile(
    r"^https?://github\.com/(?P<owner>[^/\s]+)/(?P<repo>[^/\s#?]+?)(?:\.git)?"
    r"(?:/(?:tree|releases/tag)/(?P<ref>[^\s#?]+))?/?$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class RecordFile:
    key: str
    size: int
    checksum: str  # "md5:<hex>" (empty when Zenodo gave none)
    url: str


@dataclass(frozen=True)
class GitHubRef:
    owner: str
    repo: str
    ref: str
    url: str


@dataclass(frozen=True)
class Record:
    id: str
    concept_id: str | None
    version: str | None
    doi: str | None
    concept_doi: str | None
    created: str
    updated: str
    revision: int
    title: str
    license: str | None
    resource_type: str
    files: tuple[RecordFile, ...] = field(default_factory=tuple)
    github: GitHubRef | None = None

    @property
    def checksums(self) -> dict[str, str]:
        """``{file key: "md5:<hex>"}``: what a change of content is judged by."""
        return {f.key: f.checksum for f in self.files}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        """Inverse of :meth:`to_dict` (plans and metadata store records this way)."""
        files = tuple(RecordFile(**f) for f in d.get("files", ()))
        github = GitHubRef(**d["github"]) if d.get("github") else None
        return cls(**{**d, "files": files, "github": github})


def id_key(record_id: str) -> tuple[int, int | str]:
    """Sort key for record ids: numerically when they are numbers (Zenodo ids grow with time)."""
    return (0, int(record_id)) if record_id.isdigit() else (1, record_id)


def normalise_md5(checksum: str | None) -> str:
    """``"md5:<hex>"`` from ``"md5:<hex>"`` or a bare hex digest (deposit and Oct-2023 shapes)."""
    if not checksum:
        return ""
    checksum = checksum.strip()
    if ":" in checksum:
        alg, _, digest = checksum.partition(":")
        return f"{alg.lower()}:{digest.lower()}"
    if _HEX32.match(checksum):
        return f"md5:{checksum.lower()}"
    return checksum


def _parse_file(f: dict[str, Any]) -> RecordFile:
    links = f.get("links") or {}
    key = f.get("key") or f.get("filename") or ""
    size = f.get("size", f.get("filesize", 0))
    # current: links.self is the download (".../content"); transitional: links.download;
    # pre-2023: links.self = /api/files/<bucket>/<key> (also a download).
    url = links.get("download") or links.get("content") or links.get("self") or ""
    return RecordFile(key=str(key), size=int(size or 0),
                      checksum=normalise_md5(f.get("checksum")), url=url)


def github_ref(related: list[dict[str, Any]] | None) -> GitHubRef | None:
    """The GitHub repository and ref from ``related_identifiers``.

    The GitHub integration writes ``{"identifier": "https://github.com/<o>/<r>/tree/<tag>",
    "relation": "isSupplementTo", "scheme": "url"}`` (``relation_type.id: "issupplementto"`` in
    native JSON). A plain repository URL gives ref ``HEAD``.
    """
    candidates = []
    for rel in related or []:
        ident = str(rel.get("identifier") or "")
        m = _GITHUB_TREE.match(ident)
        if not m:
            continue
        relation = rel.get("relation") or (rel.get("relation_type") or {}).get("id") or ""
        rank = 0 if str(relation).lower() == "issupplementto" else 1
        candidates.append((rank, GitHubRef(m["owner"], m["repo"], m["ref"] or "HEAD", ident)))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


def parse_record(hit: dict[str, Any]) -> Record:
    """Parse one record (a search hit or ``GET /api/records/{id}``) in any of the three shapes."""
    meta = hit.get("metadata") or {}
    files = hit.get("files") or []
    if isinstance(files, dict):  # native InvenioRDM: {"entries": {key: {...}}}
        files = list((files.get("entries") or {}).values())
    license_ = meta.get("license")
    if isinstance(license_, dict):
        license_ = license_.get("id")
    license_ = str(license_).lower() if license_ else None  # pre-2023 ids were upper-case
    rtype = meta.get("resource_type") or {}
    rtype_name = rtype.get("type") or rtype.get("id") or ""
    concept = hit.get("conceptrecid") or (hit.get("parent") or {}).get("id")
    return Record(
        id=str(hit.get("id") or hit.get("recid")),
        concept_id=str(concept) if concept else None,
        version=meta.get("version") or None,
        doi=hit.get("doi") or meta.get("doi") or None,
        concept_doi=hit.get("conceptdoi") or None,
        created=str(hit.get("created") or ""),
        updated=str(hit.get("updated") or hit.get("modified") or ""),
        revision=int(hit.get("revision", hit.get("revision_id", 0)) or 0),
        title=str(hit.get("title") or meta.get("title") or ""),
        license=license_ or None,
        resource_type=str(rtype_name),
        files=tuple(_parse_file(f) for f in files),
        github=github_ref(meta.get("related_identifiers")),
    )
