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

This is also where the pipeline first trusts anything Zenodo says, so every field later used in
a file path, a URL or a dataset path is checked here against a strict shape (ids are digits,
checksums ``md5:`` + 32 hex digits, file keys relative paths without ``..``, backslashes or
control characters, GitHub owner/repo/ref as GitHub allows them) and a record that does not fit
is refused with a :class:`~pipeline.errors.ForeignDataError` naming the field. Nothing
downstream has to re-check (``fsutil.safe_join`` is the second line all the same).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pipeline.errors import ForeignDataError

_GITHUB_TREE = re.compile(
    r"^https?://github\.com/(?P<owner>[^/\s]+)/(?P<repo>[^/\s#?]+?)(?:\.git)?"
    r"(?:/(?:tree|releases/tag)/(?P<ref>[^\s#?]+))?/?$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")

# The strict shapes of what a record contributes to paths and URLs (see the module docstring).
RECORD_ID = re.compile(r"^[0-9]{1,20}$")
MD5 = re.compile(r"^md5:[0-9a-f]{32}$")
MAX_KEY_CHARS = 255
_KEY_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
_GITHUB_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_GITHUB_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_GITHUB_REF = re.compile(r"^[A-Za-z0-9._/+@-]{1,255}$")


def _shown(value: object) -> str:
    """A foreign value as it may appear in a one-line message: repr, at most 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_record_id(value: object, *, stage: str = "detect", what: str = "id",
                    record: str | None = None) -> str:
    """``value`` as a record id string, or :class:`ForeignDataError` if it is not digits.

    Why digits only: the id names ``records/<id>.h5`` and ``outcomes/<id>.json``; Zenodo's ids
    have always been integers (``recid``), so anything else is garbage or an attack.
    """
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not RECORD_ID.match(text):
        raise ForeignDataError(f"Zenodo record {what} {_shown(value)} is not a record id",
                               stage=stage, record=record, expected="1 to 20 digits",
                               got=_shown(value),
                               hint="the service sent a malformed record (or an error "
                               "document); it was not used")
    return text


def check_file_key(key: str) -> str | None:
    """Why ``key`` cannot be a file key (a relative path prefix in the dataset), or None.

    Zenodo keys are file names, with ``/`` in GitHub-integration keys (``owner/repo-v1.zip``).
    """
    if not key or len(key) > MAX_KEY_CHARS:
        return f"1 to {MAX_KEY_CHARS} characters"
    if _KEY_FORBIDDEN.search(key):
        return "no control characters or backslashes"
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return "a relative path without empty, '.' or '..' components"
    return None


def github_ref_ok(owner: str, repo: str, ref: str) -> bool:
    """Whether a GitHub owner/repo/ref may be put in a URL and a dataset path as they are."""
    return bool(_GITHUB_OWNER.match(owner) and _GITHUB_REPO.match(repo)
                and repo not in (".", "..") and _GITHUB_REF.match(ref)
                and not any(p in ("", ".", "..") for p in ref.split("/")))


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


def _parse_file(f: Any, rid: str, stage: str) -> RecordFile:
    def bad(field: str, expected: str, got: object) -> ForeignDataError:
        return ForeignDataError(f"file {field} {_shown(got)} is unusable", stage=stage,
                                record=rid, expected=expected, got=_shown(got),
                                hint="the record was not processed; it is retried when it "
                                "changes on Zenodo")

    if not isinstance(f, dict):
        raise bad("entry", "an object", f)
    links = f.get("links") or {}
    if not isinstance(links, dict):
        raise bad("links", "an object", links)
    key = f.get("key") or f.get("filename") or ""
    if not isinstance(key, str):
        raise bad("key", "a string", key)
    if why := check_file_key(key):
        raise bad("key", why, key)
    size = f.get("size", f.get("filesize", 0)) or 0
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad("size", "a non-negative integer", size)
    raw_checksum = f.get("checksum")
    checksum = normalise_md5(raw_checksum) if isinstance(raw_checksum, str | None) else "?"
    if checksum and not MD5.match(checksum):
        raise bad("checksum", "md5:<32 hex digits>", raw_checksum)
    # current: links.self is the download (".../content"); transitional: links.download;
    # pre-2023: links.self = /api/files/<bucket>/<key> (also a download).
    url = links.get("download") or links.get("content") or links.get("self") or ""
    if not isinstance(url, str) or (url and not url.startswith(("https://", "http://"))):
        raise bad("download link", "an http(s) URL", url)
    return RecordFile(key=key, size=size, checksum=checksum, url=url)


def github_ref(related: list[dict[str, Any]] | None) -> GitHubRef | None:
    """The GitHub repository and ref from ``related_identifiers``.

    The GitHub integration writes ``{"identifier": "https://github.com/<o>/<r>/tree/<tag>",
    "relation": "isSupplementTo", "scheme": "url"}`` (``relation_type.id: "issupplementto"`` in
    native JSON). A plain repository URL gives ref ``HEAD``.
    """
    candidates = []
    for rel in related or []:
        if not isinstance(rel, dict):
            continue
        ident = str(rel.get("identifier") or "")
        m = _GITHUB_TREE.match(ident)
        if not m or not github_ref_ok(m["owner"], m["repo"], m["ref"] or "HEAD"):
            continue  # not GitHub, or a shape we will not put in a URL or path
        relation = rel.get("relation") or (rel.get("relation_type") or {}).get("id") or ""
        rank = 0 if str(relation).lower() == "issupplementto" else 1
        candidates.append((rank, GitHubRef(m["owner"], m["repo"], m["ref"] or "HEAD", ident)))
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


def _text(value: object, limit: int = 2000) -> str | None:
    """A metadata value shown to people: a string (numbers as text), cut to ``limit``, or None."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)[:limit] or None


def parse_record(hit: Any, *, stage: str = "detect") -> Record:
    """Parse one record (a search hit or ``GET /api/records/{id}``) in any of the three shapes.

    Raises :class:`ForeignDataError` (with ``stage``) for a body that is not a record: an error
    document, a wrong type, or a field that fails its strict shape.
    """
    if not isinstance(hit, dict):
        raise ForeignDataError("a record is not a JSON object", stage=stage,
                               expected="a Zenodo record object", got=_shown(hit),
                               hint="the service sent something else; it was not used")
    if "id" not in hit and "recid" not in hit and "message" in hit:
        raise ForeignDataError(f"Zenodo sent an error document instead of a record: "
                               f"{_shown(hit.get('status'))} {_shown(hit.get('message'))}",
                               stage=stage, expected="a Zenodo record object",
                               got="an error document", hint="Zenodo may be degraded; the run "
                               "can be repeated")
    rid = check_record_id(hit.get("id") or hit.get("recid"), stage=stage)
    meta = hit.get("metadata") or {}
    files = hit.get("files") or []
    if isinstance(files, dict):  # native InvenioRDM: {"entries": {key: {...}}}
        entries = files.get("entries") or {}
        files = list(entries.values()) if isinstance(entries, dict) else None
    parent = hit.get("parent") or {}
    if not isinstance(meta, dict) or not isinstance(files, list) or not isinstance(parent, dict):
        raise ForeignDataError("record metadata, files or parent have the wrong type",
                               stage=stage, record=rid, expected="objects and a list of files",
                               got=f"{type(meta).__name__}, {type(files).__name__}, "
                               f"{type(parent).__name__}",
                               hint="the record was not processed; it is retried when it "
                               "changes on Zenodo")
    license_ = meta.get("license")
    if isinstance(license_, dict):
        license_ = license_.get("id")
    license_ = _text(license_)
    rtype = meta.get("resource_type") or {}
    rtype_name = (rtype.get("type") or rtype.get("id") or "") if isinstance(rtype, dict) else ""
    concept = hit.get("conceptrecid") or parent.get("id")
    revision = hit.get("revision", hit.get("revision_id", 0)) or 0
    if not isinstance(revision, int) or isinstance(revision, bool):
        raise ForeignDataError(f"record revision {_shown(revision)} is not an integer",
                               stage=stage, record=rid, expected="an integer",
                               got=_shown(revision), hint="the record was not processed")
    updated = _text(hit.get("updated") or hit.get("modified"), 64) or ""
    try:  # the harvest cursor is made of these; a garbled one must not move it
        if updated:
            datetime.fromisoformat(updated.replace("Z", "+00:00"))
    except ValueError:
        raise ForeignDataError(f"record update time {_shown(updated)} is not ISO 8601",
                               stage=stage, record=rid, expected="an ISO 8601 timestamp",
                               got=_shown(updated), hint="the record was not processed") from None
    parsed = tuple(_parse_file(f, rid, stage) for f in files)
    keys = [f.key for f in parsed]
    if len(set(keys)) != len(keys):
        raise ForeignDataError("record lists the same file key twice", stage=stage, record=rid,
                               expected="unique file keys", got=_shown(keys),
                               hint="the record was not processed")
    related = meta.get("related_identifiers")
    return Record(
        id=rid,
        concept_id=check_record_id(concept, stage=stage, what="concept id",
                                              record=rid) if concept else None,
        version=_text(meta.get("version"), 200),
        doi=_text(hit.get("doi") or meta.get("doi"), 200),
        concept_doi=_text(hit.get("conceptdoi"), 200),
        created=_text(hit.get("created"), 64) or "",
        updated=updated,
        revision=revision,
        title=_text(hit.get("title") or meta.get("title")) or "",
        license=license_.lower() if license_ else None,  # pre-2023 ids were upper-case
        resource_type=_text(rtype_name, 100) or "",
        files=parsed,
        github=github_ref(related if isinstance(related, list) else None),
    )
