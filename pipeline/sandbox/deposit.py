"""Zenodo's legacy deposit API in the sandbox: how the pipeline publishes dataset versions.

Why faithful: publishing must survive Zenodo's real semantics, which differ from its old docs
(reference ZENODO_API.md §5):

* every route needs a token (401 otherwise); success codes are 201 create/upload/newversion/edit/
  discard, 202 publish, 204 delete, as in fixtures 1-3;
* ``PUT /api/deposit/depositions/{id}`` replaces the metadata *completely* and is validated
  (``upload_type``, ``title``, ``creators``, ``description``, ``publication_date``): a missing field
  is 400 "A validation error occurred." with ``errors[{field, messages[...]}]`` (§5.6);
* uploads through the bucket (``PUT /api/files/<bucket>/<name>``, 201, ``checksum "md5:<hex>"``)
  or the old multipart API (201, bare-hex ``checksum``); deposition file entries use the deposit
  shape ``{id, filename, filesize, checksum (bare hex), links{self, download}}`` (fixture 2);
  empty files are refused ("Empty files are not accepted.", invenio-records-resources);
* publish needs files ("Missing uploaded files. ..."), at most 100 of them (§5.5);
* a record's quota (§5.5: 50 GB and 100 files; the sandbox options ``deposit_max_bytes`` and
  ``deposit_max_files`` scale them down for tests): an upload that would pass either is refused
  before it is stored, as invenio-files-rest refuses a bucket write over its quota (400
  ``{"status": 400, "message": "Bucket quota exceeded."}``, the ``FileSizeError`` of
  ``Bucket.size_limit``); for the file count the reference gives no body, so the sandbox answers
  the same shape with "Too many files." (choice where the reference is silent). Every
  deposition's peak bytes are kept (:meth:`DepositService.peak_bytes`) so tests can prove no
  deposition ever went over;
* ``newversion`` returns the **new draft** (201) whose ``links.latest_draft`` is itself, with
  **all files of the latest published version imported** and ``version``/``publication_date``
  dropped from the metadata (§5.3); a second call while that draft holds files is 400
  "Please remove all files first." (field ``files.enabled``);
* the legacy JSON hard-codes ``metadata.prereserve_doi.doi = 10.5281/zenodo.<id>`` while the
  published DOI is ``10.5072/zenodo.<id>`` as on sandbox.zenodo.org (§5.1): never trust the former.

Publishing puts a record in the current shape into :class:`~pipeline.sandbox.zenodo.ZenodoService`
(resource type from ``upload_type``, ``conceptrecid`` shared by the versions), so
``GET /api/records/{id}`` and its file downloads verify what was published. The server log keeps
``bytes_in`` per request, so tests can check that only new bytes were uploaded.

Choices where the reference is silent (marked in code): actions not allowed in the current state
answer 403 "Permission denied."; the depositions listing returns every version, newest first.
"""

from __future__ import annotations

import copy
import email.policy
import hashlib
import mimetypes
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pipeline.sandbox import query
from pipeline.sandbox.corpus import file_entry, record_json, stamp
from pipeline.sandbox.server import Handler, Request, Response, Router, json_response, zenodo_error
from pipeline.sandbox.zenodo import PID_NOT_FOUND, UNAUTHORIZED, make_doc, parse_search_args

if TYPE_CHECKING:
    from pipeline.sandbox import Sandbox

OWNER = 303323
MAX_FILES = 100
REQUIRED = ("upload_type", "title", "creators", "description", "publication_date")
UPLOAD_TYPES = {"publication": "Publication", "poster": "Poster", "presentation": "Presentation",
                "dataset": "Dataset", "image": "Image", "video": "Video/Audio",
                "software": "Software", "lesson": "Lesson", "physicalobject": "Physical object",
                "other": "Other"}
MISSING_FILES = ("Missing uploaded files. To disable files for this record please mark it as "
                 "metadata-only.")
REMOVE_FILES = "Please remove all files first."
MAX_BYTES = 50 * 10**9
QUOTA_EXCEEDED = "Bucket quota exceeded."
TOO_MANY_FILES = "Too many files."
DENIED = "Permission denied."


def validation_error(errors: list[dict[str, Any]]) -> Response:
    return zenodo_error(400, "A validation error occurred.", errors)


def validate_metadata(metadata: dict) -> list[dict[str, Any]]:
    """Zenodo's checks of deposit metadata (§5.4), as ``errors[{field, messages}]``."""
    errors: list[dict[str, Any]] = []
    missing = ["Missing data for required field."]
    for name in REQUIRED:
        if metadata.get(name) in (None, "", []):
            errors.append({"field": f"metadata.{name}", "messages": missing})
    kind = metadata.get("upload_type")
    if kind and kind not in UPLOAD_TYPES:
        errors.append({"field": "metadata.upload_type",
                       "messages": [f"Must be one of: {', '.join(UPLOAD_TYPES)}."]})
    for i, creator in enumerate(metadata.get("creators") or []):
        if not isinstance(creator, dict) or not creator.get("name"):
            errors.append({"field": f"metadata.creators.{i}.name", "messages": missing})
    when = metadata.get("publication_date")
    if when:
        try:
            date.fromisoformat(str(when))
        except ValueError:
            errors.append({"field": "metadata.publication_date", "messages": ["Not a valid date."]})
    return errors


@dataclass
class DepositFile:
    id: str
    filename: str
    data: bytes
    version_id: str
    created: datetime

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()


@dataclass
class Deposition:
    id: int
    conceptrecid: str
    bucket: str
    created: datetime
    modified: datetime
    metadata: dict = field(default_factory=dict)
    files: list[DepositFile] = field(default_factory=list)
    state: str = "unsubmitted"  # unsubmitted (never published) | done | inprogress (editing)
    published: dict | None = None  # metadata as last published
    published_at: datetime | None = None
    revision: int = 0


class DepositService:
    """``/api/deposit/depositions`` and ``/api/files`` buckets, publishing into ZenodoService."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.zenodo = sandbox.zenodo
        self.base_url = sandbox.url
        self._deps: dict[int, Deposition] = {}
        self._buckets: dict[str, int] = {}
        self._lock = threading.RLock()
        options = getattr(sandbox, "options", {}) or {}
        self.max_bytes: int = int(options.get("deposit_max_bytes", MAX_BYTES))
        self.max_files: int = int(options.get("deposit_max_files", MAX_FILES))
        self._peak: dict[int, int] = {}
        self.refused: list[str] = []   # quota refusals, for tests and benchmarks

    def peak_bytes(self) -> dict[int, int]:
        """Each deposition's largest total of file bytes ever held."""
        with self._lock:
            return dict(self._peak)

    # ------------------------------------------------------------------ public helpers

    def depositions(self) -> list[dict]:
        """Every deposition as the API shows it (newest first)."""
        with self._lock:
            return [self._json(d) for d in sorted(self._deps.values(), key=lambda d: -d.id)]

    def register(self, router: Router) -> None:
        deps = r"/api/deposit/depositions"
        one = deps + r"/(?P<id>\d+)"
        bucket = r"/api/files/(?P<bucket>[0-9a-f-]{36})"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", deps + "/?", self._list), ("POST", deps + "/?", self._create),
            ("GET", one, self._get), ("PUT", one, self._update), ("DELETE", one, self._delete),
            ("GET", one + "/files", self._files), ("POST", one + "/files", self._multipart),
            ("GET", one + r"/files/(?P<file_id>[^/]+)", self._file),
            ("DELETE", one + r"/files/(?P<file_id>[^/]+)", self._delete_file),
            ("POST", one + r"/actions/(?P<action>publish|edit|discard|newversion)", self._action),
            ("GET", bucket + "/?", self._bucket_list), ("PUT", bucket + "/(?P<key>.+)", self._put),
            ("GET", bucket + "/(?P<key>.+)", self._download),
            ("DELETE", bucket + "/(?P<key>.+)", self._bucket_delete),
        ]
        for method, pattern, handler in routes:
            wrapped = self.zenodo.guarded(self._authenticated(handler))
            router.add(method, pattern, wrapped)
            if method == "GET":
                router.add("HEAD", pattern, wrapped)

    # ------------------------------------------------------------------ JSON shapes

    def _file_json(self, dep: Deposition, f: DepositFile) -> dict:
        return {"checksum": f.md5, "filename": f.filename, "filesize": len(f.data), "id": f.id,
                "links": {"download": f"{self.base_url}/api/files/{dep.bucket}/{quote(f.filename)}",
                          "self": f"{self._api(dep.id)}/files/{f.id}"}}

    def _api(self, dep_id: int) -> str:
        return f"{self.base_url}/api/deposit/depositions/{dep_id}"

    def _open_draft(self, concept: str) -> Deposition | None:
        """The unpublished new-version draft of a concept, if one is open."""
        drafts = [d for d in self._deps.values()
                  if d.conceptrecid == concept and d.state == "unsubmitted"]
        return max(drafts, key=lambda d: d.id) if drafts else None

    def _json(self, dep: Deposition) -> dict:
        api, base = self._api(dep.id), self.base_url
        draft = self._open_draft(dep.conceptrecid)
        latest_draft = draft.id if draft else dep.id
        links = {"self": api, "html": f"{base}/deposit/{dep.id}",
                 "discard": f"{api}/actions/discard", "edit": f"{api}/actions/edit",
                 "files": f"{api}/files", "latest_draft": self._api(latest_draft),
                 "latest_draft_html": f"{base}/deposit/{latest_draft}",
                 "newversion": f"{api}/actions/newversion", "publish": f"{api}/actions/publish",
                 "registerconceptdoi": f"{api}/actions/registerconceptdoi"}
        if dep.state != "done":
            links["bucket"] = f"{base}/api/files/{dep.bucket}"
        doi = f"10.5072/zenodo.{dep.id}" if dep.published_at else ""
        body: dict[str, Any] = {"conceptrecid": dep.conceptrecid, "created": stamp(dep.created),
                                "doi": doi, "doi_url": f"https://doi.org/{doi}",
                                "files": [self._file_json(dep, f) for f in dep.files],
                                "id": dep.id, "links": links}
        metadata = copy.deepcopy(dep.metadata)
        metadata["prereserve_doi"] = {"doi": f"10.5281/zenodo.{dep.id}", "recid": dep.id}
        if dep.published_at:
            versions = self.zenodo.versions(dep.conceptrecid)
            latest = versions[-1] if versions else dep.id
            metadata["doi"] = doi
            body["conceptdoi"] = f"10.5072/zenodo.{dep.conceptrecid}"
            links.update({"doi": f"https://doi.org/{doi}", "record": f"{base}/api/records/{dep.id}",
                          "record_html": f"{base}/records/{dep.id}",
                          "latest": f"{base}/api/records/{latest}",
                          "latest_html": f"{base}/records/{latest}",
                          "conceptdoi": f"https://doi.org/10.5072/zenodo.{dep.conceptrecid}",
                          "badge": f"{base}/badge/doi/{doi}.svg"})
        body.update({"metadata": metadata, "modified": stamp(dep.modified), "owner": OWNER,
                     "record_id": dep.id, "state": dep.state,
                     "submitted": dep.published_at is not None,
                     "title": dep.metadata.get("title", "")})
        return body

    def _record(self, dep: Deposition, when: datetime) -> dict:
        """The published record (current shape, sandbox DOI prefix 10.5072)."""
        meta = dep.metadata
        kind = meta.get("upload_type", "other")
        rtype = {"title": UPLOAD_TYPES.get(kind, "Other"), "type": kind}
        subtype = meta.get(f"{kind}_type")
        if subtype:
            rtype["subtype"] = subtype
        license_id = str(meta.get("license") or ("cc0-1.0" if kind == "dataset" else "cc-by-4.0"))
        record_meta: dict[str, Any] = {
            "title": meta.get("title", ""), "publication_date": meta.get("publication_date", ""),
            "description": meta.get("description", ""),
            "access_right": meta.get("access_right", "open"),
            "creators": [{"name": c.get("name"), "affiliation": c.get("affiliation"),
                          **({"orcid": c["orcid"]} if c.get("orcid") else {})}
                         for c in meta.get("creators") or []],
        }
        for key in ("keywords", "related_identifiers", "version", "notes", "language"):
            if meta.get(key):
                record_meta[key] = meta[key]
        record_meta["license"] = {"id": license_id.lower()}
        record_meta["resource_type"] = rtype
        if meta.get("communities"):
            record_meta["communities"] = [{"id": c.get("identifier")} for c in meta["communities"]]
        files = [file_entry(self.base_url, dep.id, f.filename, len(f.data), f.md5, f.id)
                 for f in dep.files]
        return record_json(self.base_url, recid=dep.id, concept=dep.conceptrecid,
                           doi_prefix="10.5072", created=dep.published_at or when, updated=when,
                           revision=dep.revision, metadata=record_meta, files=files,
                           owner=str(OWNER))

    # ------------------------------------------------------------------ plumbing

    def _authenticated(self, handler: Handler) -> Handler:
        def run(request: Request) -> Response:
            identity = self.zenodo.authenticate(request)
            if isinstance(identity, Response):
                return identity
            if not identity:
                return zenodo_error(401, UNAUTHORIZED)
            with self._lock:
                return handler(request)
        return run

    def _dep(self, request: Request) -> Deposition | Response:
        dep = self._deps.get(int(request.params["id"]))
        return dep if dep is not None else zenodo_error(404, PID_NOT_FOUND)

    def _new(self, concept: str | None = None) -> Deposition:
        now = self.zenodo.now()
        concept = concept or str(self.zenodo.allocate_id())
        dep = Deposition(id=self.zenodo.allocate_id(), conceptrecid=concept,
                         bucket=self.zenodo.corpus.new_uuid(), created=now, modified=now)
        self._deps[dep.id] = dep
        self._buckets[dep.bucket] = dep.id
        return dep

    @staticmethod
    def _body(request: Request) -> dict | Response:
        if not request.body.strip():
            return {}
        if "application/json" not in (request.headers.get("Content-Type") or ""):
            return zenodo_error(415, "Invalid 'Content-Type' header. "
                                     "Expected one of: application/json.")
        try:
            body = request.json()
        except ValueError:
            return zenodo_error(400, "The browser (or proxy) sent a request that this server "
                                     "could not understand.")
        return body if isinstance(body, dict) else {}

    def _store_file(self, dep: Deposition, name: str, data: bytes) -> DepositFile | Response:
        if dep.published_at is not None:  # a published version's files are fixed
            return zenodo_error(403, DENIED)
        if not data:
            return zenodo_error(400, "Empty files are not accepted.")
        others = [f for f in dep.files if f.filename != name]   # same key: replaced
        if len(others) + 1 > self.max_files:
            self.refused.append(f"{dep.id}: {TOO_MANY_FILES}")
            return zenodo_error(400, TOO_MANY_FILES)
        if sum(len(f.data) for f in others) + len(data) > self.max_bytes:
            self.refused.append(f"{dep.id}: {QUOTA_EXCEEDED}")
            return zenodo_error(400, QUOTA_EXCEEDED)
        dep.files = others
        new = DepositFile(self.zenodo.corpus.new_uuid(), name, data,
                          self.zenodo.corpus.new_uuid(), self.zenodo.now())
        dep.files.append(new)
        dep.modified = new.created
        self._peak[dep.id] = max(self._peak.get(dep.id, 0), sum(len(f.data) for f in dep.files))
        return new

    # ------------------------------------------------------------------ depositions

    def _list(self, request: Request) -> Response:
        args = parse_search_args(request, page_max=100, authenticated=True, default_size=25,
                                 default_sort="newest")
        if isinstance(args, Response):
            return args
        status = request.arg("status")
        deps = sorted(self._deps.values(), key=lambda d: -d.id)
        if status == "draft":
            deps = [d for d in deps if d.state != "done"]
        elif status == "published":
            deps = [d for d in deps if d.published_at is not None]
        if args.q.strip():  # the same q semantics as the record search
            try:
                node = query.parse(args.q, now=self.zenodo.now())
            except query.QuerySyntaxError:
                node = query.free_text(args.q)
            except query.EngineError as exc:
                return zenodo_error(exc.status, exc.message)
            deps = [d for d in deps if node.match(make_doc(self._record(d, d.modified)))]
        start = (args.page - 1) * args.size
        return json_response(200, [self._json(d) for d in deps[start:start + args.size]])

    def _create(self, request: Request) -> Response:
        body = self._body(request)
        if isinstance(body, Response):
            return body
        metadata = body.get("metadata") or {}
        if metadata:
            errors = validate_metadata(metadata)
            if errors:
                return validation_error(errors)
        dep = self._new()
        dep.metadata = {k: v for k, v in metadata.items() if k not in ("prereserve_doi", "doi")}
        return json_response(201, self._json(dep))

    def _get(self, request: Request) -> Response:
        dep = self._dep(request)
        return dep if isinstance(dep, Response) else json_response(200, self._json(dep))

    def _update(self, request: Request) -> Response:
        dep = self._dep(request)
        if isinstance(dep, Response):
            return dep
        if dep.state == "done":  # published and not in edit mode (sandbox choice, see module)
            return zenodo_error(403, DENIED)
        body = self._body(request)
        if isinstance(body, Response):
            return body
        metadata = body.get("metadata") or {}
        errors = validate_metadata(metadata)
        if errors:
            return validation_error(errors)
        dep.metadata = {k: v for k, v in metadata.items() if k not in ("prereserve_doi", "doi")}
        dep.modified = self.zenodo.now()
        return json_response(200, self._json(dep))

    def _delete(self, request: Request) -> Response:
        dep = self._dep(request)
        if isinstance(dep, Response):
            return dep
        if dep.published_at is not None:
            return zenodo_error(403, DENIED)
        del self._deps[dep.id], self._buckets[dep.bucket]
        return Response(204)

    # ------------------------------------------------------------------ files

    def _files(self, request: Request) -> Response:
        dep = self._dep(request)
        if isinstance(dep, Response):
            return dep
        return json_response(200, [self._file_json(dep, f) for f in dep.files])

    def _file(self, request: Request) -> Response:
        dep = self._dep(request)
        if isinstance(dep, Response):
            return dep
        for f in dep.files:
            if f.id == request.params["file_id"]:
                return json_response(200, self._file_json(dep, f))
        return zenodo_error(404, "File does not exist.")

    def _delete_file(self, request: Request) -> Response:
        dep = self._dep(request)
        if isinstance(dep, Response):
            return dep
        if dep.published_at is not None:
            return zenodo_error(403, DENIED)
        kept = [f for f in dep.files if f.id != request.params["file_id"]]
        if len(kept) == len(dep.files):
            return zenodo_error(404, "File does not exist.")
        dep.files, dep.modified = kept, self.zenodo.now()
        return Response(204)

    def _multipart(self, request: Request) -> Response:
        """The old files API: multipart ``file`` (+ optional ``name``), bare-hex checksum."""
        dep = self._dep(request)
        if isinstance(dep, Response):
            return dep
        content_type = request.headers.get("Content-Type") or ""
        if "multipart/form-data" not in content_type:
            return zenodo_error(400, "The browser (or proxy) sent a request that this server "
                                     "could not understand.")
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body)
        name, data = None, None
        for part in message.iter_parts():
            field_name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if field_name == "name" and isinstance(payload, bytes):
                name = payload.decode()
            elif field_name == "file" and isinstance(payload, bytes):
                data, name = payload, name or part.get_filename()
        if data is None or not name:
            return validation_error([{"field": "file", "messages": ["Missing data for required "
                                                                    "field."]}])
        stored = self._store_file(dep, name, data)
        if isinstance(stored, Response):
            return stored
        return json_response(201, self._file_json(dep, stored))

    def _bucket(self, request: Request) -> Deposition | Response:
        dep_id = self._buckets.get(request.params["bucket"])
        if dep_id is None:
            return zenodo_error(404, "Bucket does not exist.")
        return self._deps[dep_id]

    def _bucket_file_json(self, dep: Deposition, f: DepositFile) -> dict:
        url = f"{self.base_url}/api/files/{dep.bucket}/{quote(f.filename)}"
        return {"key": f.filename,
                "mimetype": mimetypes.guess_type(f.filename)[0] or "application/octet-stream",
                "checksum": f"md5:{f.md5}", "version_id": f.version_id, "size": len(f.data),
                "created": stamp(f.created), "updated": stamp(f.created),
                "links": {"self": url, "version": f"{url}?versionId={f.version_id}",
                          "uploads": f"{url}?uploads"},
                "is_head": True, "delete_marker": False}

    def _put(self, request: Request) -> Response:
        dep = self._bucket(request)
        if isinstance(dep, Response):
            return dep
        stored = self._store_file(dep, request.params["key"], request.body)
        if isinstance(stored, Response):
            return stored
        return json_response(201, self._bucket_file_json(dep, stored))

    def _bucket_list(self, request: Request) -> Response:
        dep = self._bucket(request)
        if isinstance(dep, Response):
            return dep
        contents = [self._bucket_file_json(dep, f) for f in dep.files]
        return json_response(200, {"id": dep.bucket, "contents": contents,
                                   "size": sum(len(f.data) for f in dep.files),
                                   "locked": dep.state == "done",
                                   "links": {"self": f"{self.base_url}/api/files/{dep.bucket}"}})

    def _download(self, request: Request) -> Response:
        dep = self._bucket(request)
        if isinstance(dep, Response):
            return dep
        for f in dep.files:
            if f.filename == request.params["key"]:
                return Response(200, f.data, {"Content-Type": "application/octet-stream"})
        return zenodo_error(404, "Object does not exist.")

    def _bucket_delete(self, request: Request) -> Response:
        dep = self._bucket(request)
        if isinstance(dep, Response):
            return dep
        for f in dep.files:
            if f.filename == request.params["key"]:
                request.params["file_id"], request.params["id"] = f.id, str(dep.id)
                return self._delete_file(request)
        return zenodo_error(404, "Object does not exist.")

    # ------------------------------------------------------------------ actions

    def _action(self, request: Request) -> Response:
        dep = self._dep(request)
        if isinstance(dep, Response):
            return dep
        action = request.params["action"]
        if action == "publish":
            return self._publish(dep)
        if action == "newversion":
            return self._newversion(dep)
        if action == "edit":
            if dep.state == "done":
                dep.state, dep.modified = "inprogress", self.zenodo.now()
            return json_response(201, self._json(dep))
        # discard: an edit returns to the published metadata; a new draft is deleted
        if dep.state == "inprogress":
            dep.metadata, dep.state = copy.deepcopy(dep.published or {}), "done"
        elif dep.state == "unsubmitted":
            body = self._json(dep)
            del self._deps[dep.id], self._buckets[dep.bucket]
            return json_response(201, body)
        return json_response(201, self._json(dep))

    def _publish(self, dep: Deposition) -> Response:
        if dep.state == "done":
            return zenodo_error(403, DENIED)
        errors = validate_metadata(dep.metadata)
        if not dep.files:
            errors.append({"field": "files.enabled", "messages": [MISSING_FILES]})
        elif len(dep.files) > self.max_files:
            errors.append({"field": "files", "messages": [
                f"A record holds at most {self.max_files} files; this draft has "
                f"{len(dep.files)}."]})
        if errors:
            return validation_error(errors)
        now = self.zenodo.now()
        dep.published_at = dep.published_at or now
        dep.revision += 1
        dep.state, dep.modified = "done", now
        dep.published = copy.deepcopy(dep.metadata)
        self.zenodo.put(self._record(dep, now), {f.filename: f.data for f in dep.files})
        return json_response(202, self._json(dep))

    def _newversion(self, dep: Deposition) -> Response:
        if dep.published_at is None:
            return zenodo_error(404, PID_NOT_FOUND)  # not a record yet: nothing to version
        published = [d for d in self._deps.values()
                     if d.conceptrecid == dep.conceptrecid and d.published_at is not None]
        latest = max(published, key=lambda d: d.published_at or d.created)
        draft = self._open_draft(dep.conceptrecid)
        if draft is not None and draft.files:
            return validation_error([{"field": "files.enabled", "messages": [REMOVE_FILES]}])
        if draft is None:
            draft = self._new(dep.conceptrecid)
            draft.metadata = {k: v for k, v in copy.deepcopy(latest.published or {}).items()
                              if k not in ("version", "publication_date", "doi")}
        now = self.zenodo.now()
        draft.files = [DepositFile(self.zenodo.corpus.new_uuid(), f.filename, f.data,
                                   self.zenodo.corpus.new_uuid(), now) for f in latest.files]
        draft.modified = now
        return json_response(201, self._json(draft))
