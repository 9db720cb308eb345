"""The Kaggle wire protocol, served offline so the real ``kaggle`` client can publish to it.

Why a faithful fake: the pipeline publishes through the real ``kaggle`` package (SPEC section 8),
whose quirks are the risk (reference/KAGGLE_PROTOCOL.md): it drops a file silently when its blob
PUT fails (§3.4), it raises on ``code >= 400`` in a JSON body even on HTTP 200 (§2), it does not
raise on ``status: "error"`` (§3.1), it retries only 429 and connection errors (§2), and a new
version pushed while the previous one is still processing is refused (SPEC section 11). Tests can
only prove the publisher copes if the sandbox reproduces exactly these shapes, so this module
follows §2, §3 and §7 of KAGGLE_PROTOCOL.md:

* RPCs are ``POST {base}/api/v1/<service>/<Method>`` (and ``/v1/...`` without ``/api``, the PROD
  form), JSON in and out, camelCase keys, missing keys meaning defaults (§2: ``isPrivate`` is left
  out when false). Errors are always ``application/json`` ``{"code": N, "message": "..."}``.
* Auth (§1): ``Basic base64(user:key)`` or ``Bearer <token>`` (a token known to
  ``IntrospectToken``) on RPCs only; blob PUTs carry no credentials (§3.4). Wrong or missing:
  401 ``{"code": 401, "message": "Unauthenticated"}``.
* Blob uploads (§3.4): ``StartBlobUpload`` returns a token and an absolute ``createUrl`` on this
  sandbox; the PUT takes the whole body (Content-Length or chunked), the resume probe
  ``Content-Range: bytes */N`` (308 with ``Range: bytes=0-K`` and no ``Location``, which requests
  would follow) and the continuation ``Content-Range: bytes a-b/N``.
* A new dataset or version stays "processing" (``BLOBS_RECEIVED``) for :attr:`processing_polls`
  status polls before ``READY``; pushing a version meanwhile is refused with 403 (or 429 +
  ``Retry-After``, :attr:`busy_status`). Every refused push counts as a poll, so a client that
  only retries (the 429 path, §2) still gets through.

Realism knobs for tests are attributes and methods of :class:`KaggleService` (see its docstring).
What the sandbox received is kept in :attr:`KaggleService.datasets` so tests can assert on it.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import io
import re
import secrets as _secrets
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.sandbox import KAGGLE_KEY, KAGGLE_USERNAME
from pipeline.sandbox.server import Request, Response, Router, bytes_response, json_response

# A bearer token the sandbox accepts (KAGGLE_API_TOKEN style, §1); the legacy key works too.
KAGGLE_API_TOKEN = "KGAT_sandbox-kaggle-token"

BLOB_PATH = "/kaggle/blobs/"
_SERVICES = {
    "IntrospectToken": "security.OAuthService",
    "StartBlobUpload": "blobs.BlobApiService",
    "GetDatasetStatus": "datasets.DatasetApiService",
    "GetDataset": "datasets.DatasetApiService",
    "CreateDataset": "datasets.DatasetApiService",
    "CreateDatasetVersion": "datasets.DatasetApiService",
    "CreateDatasetVersionById": "datasets.DatasetApiService",
    "ListDatasetFiles": "datasets.DatasetApiService",
    "GetDatasetMetadata": "datasets.DatasetApiService",
    "DownloadDataset": "datasets.DatasetApiService",
}
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+)$")
BUSY_MESSAGE = ("Cannot create a new dataset version: the previous version is still processing. "
                "Please wait for it to finish and try again.")


def kaggle_error(status: int, message: str, *, http_status: int | None = None,
                 retry_after: float | None = None) -> Response:
    """Kaggle's error body (§2, §7). ``http_status`` differs from ``status`` to put an error
    ``code`` inside an HTTP 200, which the client raises as well (§2)."""
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    return json_response(status if http_status is None else http_status,
                         {"code": status, "message": message}, headers)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds") + "Z"


@dataclass
class Blob:
    """One ``StartBlobUpload`` and the bytes PUT to its ``createUrl`` so far."""

    token: str
    name: str
    length: int               # contentLength from StartBlobUpload (0 for empty files, §3.4)
    data: bytearray = field(default_factory=bytearray)
    complete: bool = False
    used: bool = False


@dataclass
class KaggleFile:
    name: str
    data: bytes = field(repr=False)
    sha256: str = ""          # "sha256:<hex>"
    description: str | None = None
    created: datetime = field(default_factory=_now)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class KaggleVersion:
    number: int
    notes: str
    files: dict[str, KaggleFile]
    created: datetime = field(default_factory=_now)
    polls_left: int = 0       # status polls still answered "processing"
    failed: bool = False

    @property
    def status(self) -> str:
        if self.failed:
            return "FAILED"
        return "BLOBS_RECEIVED" if self.polls_left > 0 else "READY"

    @property
    def checksums(self) -> dict[str, str]:
        """``{name: "sha256:<hex>"}`` of the files this version holds."""
        return {name: f.sha256 for name, f in sorted(self.files.items())}


@dataclass
class KaggleDataset:
    id: int
    owner: str
    slug: str
    title: str
    license: str
    private: bool
    subtitle: str | None = None
    description: str | None = None
    keywords: list[str] = field(default_factory=list)
    versions: list[KaggleVersion] = field(default_factory=list)
    hidden_polls: int = 0     # lookups still answered 404 right after creation (SPEC §11)

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.slug}"

    @property
    def current(self) -> KaggleVersion:
        return self.versions[-1]


class KaggleService:
    """Kaggle's RPC API and blob store on the sandbox (KAGGLE_PROTOCOL.md §7).

    Knobs (attributes; tests set them directly, or pass ``kaggle_<name>`` as a Sandbox option):

    ``processing_polls``   status polls a new dataset/version answers ``BLOBS_RECEIVED``
                           before ``READY`` (default 0: ready at once)
    ``busy_status``        answer to a push while the previous version is processing:
                           403 (default, what SPEC §11 reports) or 429 with ``Retry-After``
    ``busy_retry_after``   seconds in that 429's ``Retry-After`` (default 1)
    ``new_dataset_hidden_polls``  lookups (status/get) a brand-new dataset answers 404
                           (SPEC §11: "a new dataset 404s for hours"; default 0)
    ``users``, ``access_tokens``  accepted legacy keys and bearer tokens

    Methods: :meth:`fail_rpc` (any error, also ``code >= 400`` on HTTP 200), :meth:`rate_limit`
    (429 + ``Retry-After``), :meth:`fail_blob` (the PUT of a file answers e.g. 500: the client
    drops that file silently, §3.4), :meth:`interrupt_blob` (503 after part of the body: the
    resume dance), :meth:`fail_processing` (the current version ends ``FAILED``).

    Records: :attr:`datasets` (``"owner/slug"`` -> :class:`KaggleDataset` with its versions and
    their files), :attr:`calls` (``(method, request json)`` of every authenticated RPC).
    """

    def __init__(self, sandbox: Any) -> None:
        self.sandbox = sandbox
        options = getattr(sandbox, "options", {}) or {}
        self.processing_polls: int = int(options.get("kaggle_processing_polls", 0))
        self.busy_status: int = int(options.get("kaggle_busy_status", 403))
        self.busy_retry_after: float = float(options.get("kaggle_busy_retry_after", 1))
        self.new_dataset_hidden_polls: int = int(options.get("kaggle_new_dataset_hidden_polls", 0))
        self.users: dict[str, str] = {KAGGLE_USERNAME: KAGGLE_KEY}
        self.access_tokens: dict[str, str] = {KAGGLE_API_TOKEN: KAGGLE_USERNAME}
        self.datasets: dict[str, KaggleDataset] = {}
        self.blobs: dict[str, Blob] = {}
        self.calls: list[tuple[str, Any]] = []
        self._rpc_faults: list[dict[str, Any]] = []
        self._blob_faults: list[dict[str, Any]] = []
        self._next_id = 1000
        self._lock = threading.RLock()

    # -- knobs -------------------------------------------------------------------------------
    def fail_rpc(self, method: str, code: int, message: str, *, http_status: int | None = None,
                 retry_after: float | None = None, times: int = 1) -> None:
        """Answer the next ``times`` calls of RPC ``method`` with ``{"code", "message"}``.

        ``http_status=200`` puts the error code in the body of an HTTP 200 (§2)."""
        with self._lock:
            self._rpc_faults.append({"method": method, "code": code, "message": message,
                                     "http_status": http_status, "retry_after": retry_after,
                                     "times": times})

    def rate_limit(self, method: str, *, times: int = 1, retry_after: float = 1) -> None:
        """429 + ``Retry-After`` on the next ``times`` calls of ``method`` (retried, §2)."""
        self.fail_rpc(method, 429, "Too many requests. Please slow down.",
                      retry_after=retry_after, times=times)

    def fail_blob(self, name: str, *, status: int = 500, times: int = 1) -> None:
        """The next ``times`` full-body PUTs of file ``name`` answer ``status`` (500: the client
        reports nothing with quiet=True and leaves the file out of the version, §3.4)."""
        with self._lock:
            self._blob_faults.append({"name": name, "status": status, "keep": None,
                                      "times": times})

    def interrupt_blob(self, name: str, *, keep: int = 1, times: int = 1) -> None:
        """The next ``times`` full-body PUTs of ``name`` keep ``keep`` bytes and answer 503
        (no ``Retry-After``, which urllib3 would act on itself, §3.4): the client probes with
        ``Content-Range: bytes */N`` and sends the rest."""
        with self._lock:
            self._blob_faults.append({"name": name, "status": 503, "keep": keep,
                                      "times": times})

    def fail_processing(self, ref: str) -> None:
        """The current version of dataset ``ref`` ends in status ``FAILED``."""
        with self._lock:
            self.datasets[ref].current.failed = True

    # -- routing -----------------------------------------------------------------------------
    def register(self, router: Router) -> None:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            router.add(method, r"(?:/api)?/v1/(?P<service>[A-Za-z0-9_.]+)/(?P<rpc>[A-Za-z0-9_]+)",
                       self._rpc)
            router.add(method, re.escape(BLOB_PATH) + r"(?P<token>[A-Za-z0-9_-]+)", self._blob)

    def _rpc(self, request: Request) -> Response:
        rpc, service = request.params["rpc"], request.params["service"]
        if request.method != "POST":
            return kaggle_error(405, f"Method {request.method} not allowed; RPCs are POST")
        handler = getattr(self, f"_do_{rpc}", None)
        if handler is None or _SERVICES.get(rpc) != service:
            return kaggle_error(404, f"Unknown RPC {service}/{rpc}")
        user = self._authenticate(request)
        if user is None:
            return kaggle_error(401, "Unauthenticated")
        try:
            body = request.json() or {}
        except ValueError:
            return kaggle_error(400, "Request body is not valid JSON")
        if not isinstance(body, dict):
            return kaggle_error(400, "Request body must be a JSON object")
        with self._lock:
            self.calls.append((rpc, body))
            fault = self._take(self._rpc_faults, "method", rpc)
            if fault is not None:
                return kaggle_error(fault["code"], fault["message"],
                                    http_status=fault["http_status"],
                                    retry_after=fault["retry_after"])
            return handler(request, body, user)

    def _authenticate(self, request: Request) -> str | None:
        """The user behind the request's Authorization header, or None (§1)."""
        header = request.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return self.access_tokens.get(value.strip())
        if scheme.lower() == "basic":
            try:
                user, _, key = base64.b64decode(value.strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            if user in self.users and _secrets.compare_digest(self.users[user], key):
                return user
        return None

    @staticmethod
    def _take(faults: list[dict[str, Any]], key: str, value: str) -> dict[str, Any] | None:
        for fault in faults:
            if fault[key] == value and fault["times"] > 0:
                fault["times"] -= 1
                return fault
        return None

    def _dataset(self, body: dict[str, Any], *, lookup: bool = False
                 ) -> KaggleDataset | Response:
        ref = f"{body.get('ownerSlug', '')}/{body.get('datasetSlug', '')}"
        dataset = self.datasets.get(ref)
        if dataset is not None and lookup and dataset.hidden_polls > 0:
            dataset.hidden_polls -= 1
            dataset = None
        if dataset is None:
            return kaggle_error(404, f"Dataset {ref} not found")
        return dataset

    # -- RPCs --------------------------------------------------------------------------------
    def _do_IntrospectToken(self, request: Request, body: dict[str, Any], user: str) -> Response:
        username = self.access_tokens.get(str(body.get("token", "")))
        if username is None:
            return json_response(200, {"active": False})
        return json_response(200, {"active": True, "username": username,
                                   "scope": "resources.admin:*"})

    def _do_StartBlobUpload(self, request: Request, body: dict[str, Any], user: str) -> Response:
        name = str(body.get("name") or "")
        if not name:
            return kaggle_error(400, "A blob name is required")
        token = "blob-" + _secrets.token_hex(16)
        self.blobs[token] = Blob(token, name, int(body.get("contentLength") or 0))
        return json_response(200, {"token": token,
                                   "createUrl": f"{self.sandbox.url}{BLOB_PATH}{token}"})

    def _do_GetDatasetStatus(self, request: Request, body: dict[str, Any], user: str) -> Response:
        dataset = self._dataset(body, lookup=True)
        if isinstance(dataset, Response):
            return dataset
        version = dataset.current
        status = version.status
        if version.polls_left > 0:
            version.polls_left -= 1
        return json_response(200, {"status": status})

    def _do_GetDataset(self, request: Request, body: dict[str, Any], user: str) -> Response:
        dataset = self._dataset(body, lookup=True)
        if isinstance(dataset, Response):
            return dataset
        current = dataset.current
        return json_response(200, {
            "id": dataset.id, "ref": dataset.ref, "title": dataset.title,
            "subtitle": dataset.subtitle, "description": dataset.description,
            "url": self._url(dataset), "isPrivate": dataset.private,
            "licenseName": dataset.license, "ownerName": dataset.owner,
            "ownerRef": dataset.owner, "creatorName": dataset.owner,
            "currentVersionNumber": current.number,
            "totalBytes": sum(f.size for f in current.files.values()),
            "lastUpdated": _iso(current.created),
            "tags": [{"ref": k, "name": k} for k in dataset.keywords],
            "versions": [{"versionNumber": v.number, "creationDate": _iso(v.created),
                          "creatorName": dataset.owner, "versionNotes": v.notes,
                          "status": v.status} for v in reversed(dataset.versions)],
        })

    def _do_CreateDataset(self, request: Request, body: dict[str, Any], user: str) -> Response:
        owner, slug = str(body.get("ownerSlug") or ""), str(body.get("slug") or "")
        title = str(body.get("title") or "")
        if owner != user:
            return self._create_error("You are not allowed to create a dataset as this owner.")
        if not 6 <= len(slug) <= 50 or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", slug):
            return self._create_error(f"Invalid dataset slug {slug!r}")
        if not 6 <= len(title) <= 50:
            return self._create_error("The dataset title must be between 6 and 50 characters")
        if f"{owner}/{slug}" in self.datasets:
            return self._create_error(f"The requested slug {slug!r} is already in use.")
        files = self._claim(body.get("files") or [])
        if isinstance(files, Response):
            return files
        self._next_id += 1
        dataset = KaggleDataset(
            id=self._next_id, owner=owner, slug=slug, title=title,
            license=str(body.get("licenseName") or "unknown"),
            private=bool(body.get("isPrivate", False)), subtitle=body.get("subtitle"),
            description=body.get("description"), keywords=list(body.get("categoryIds") or []),
            hidden_polls=self.new_dataset_hidden_polls,
        )
        dataset.versions.append(KaggleVersion(1, "Initial release", files,
                                              polls_left=self.processing_polls))
        self.datasets[dataset.ref] = dataset
        return self._create_ok(dataset)

    def _do_CreateDatasetVersion(self, request: Request, body: dict[str, Any], user: str
                                 ) -> Response:
        dataset = self._dataset(body)
        if isinstance(dataset, Response):
            return dataset
        return self._new_version(dataset, body.get("body") or {}, user)

    def _do_CreateDatasetVersionById(self, request: Request, body: dict[str, Any], user: str
                                     ) -> Response:
        wanted = int(body.get("id") or 0)
        dataset = next((d for d in self.datasets.values() if d.id == wanted), None)
        if dataset is None:
            return kaggle_error(404, f"Dataset {wanted} not found")
        return self._new_version(dataset, body.get("body") or {}, user)

    def _do_ListDatasetFiles(self, request: Request, body: dict[str, Any], user: str) -> Response:
        found = self._dataset_version(body)
        if isinstance(found, Response):
            return found
        dataset, version = found
        size = int(body.get("pageSize") or 20)
        token = str(body.get("pageToken") or "")
        start = int(token[1:]) if token.startswith("p") and token[1:].isdigit() else 0
        names = sorted(version.files)
        page = names[start:start + size]
        more = start + size < len(names)
        return json_response(200, {
            "datasetFiles": [{
                "ref": f"{dataset.ref}/{name}", "datasetRef": dataset.ref,
                "ownerRef": dataset.owner, "name": name,
                "creationDate": _iso(version.files[name].created),
                "description": version.files[name].description,
                "fileType": "." + name.rsplit(".", 1)[-1] if "." in name else "",
                "url": f"{self._url(dataset)}?select={name}",
                "totalBytes": version.files[name].size, "columns": [],
            } for name in page],
            "errorMessage": None,
            "nextPageToken": f"p{start + size}" if more else "",
        })

    def _do_GetDatasetMetadata(self, request: Request, body: dict[str, Any], user: str
                               ) -> Response:
        dataset = self._dataset(body)
        if isinstance(dataset, Response):
            return dataset
        return json_response(200, {"info": {
            "datasetId": dataset.id, "datasetSlug": dataset.slug, "ownerUser": dataset.owner,
            "title": dataset.title, "subtitle": dataset.subtitle,
            "description": dataset.description, "isPrivate": dataset.private,
            "keywords": dataset.keywords, "licenses": [{"name": dataset.license}],
            "collaborators": [], "data": [],
        }, "errorMessage": None})

    def _do_DownloadDataset(self, request: Request, body: dict[str, Any], user: str) -> Response:
        found = self._dataset_version(body)
        if isinstance(found, Response):
            return found
        dataset, version = found
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, item in sorted(version.files.items()):
                info = zipfile.ZipInfo(name, date_time=item.created.timetuple()[:6])
                archive.writestr(info, item.data, zipfile.ZIP_DEFLATED)
        data = buffer.getvalue()
        # Never a JSON content type here: the client would parse the zip as JSON (§3.5).
        return bytes_response(request, data, "application/zip", {
            "Last-Modified": email.utils.formatdate(version.created.replace(tzinfo=UTC)
                                                    .timestamp(), usegmt=True),
            "ETag": '"' + hashlib.sha256(data).hexdigest()[:32] + '"',
            "Content-Disposition": f"attachment; filename={dataset.slug}.zip",
        })

    # -- helpers -----------------------------------------------------------------------------
    def _url(self, dataset: KaggleDataset) -> str:
        return f"{self.sandbox.url}/datasets/{dataset.ref}"

    def _create_ok(self, dataset: KaggleDataset) -> Response:
        return json_response(200, {"ref": dataset.ref, "url": self._url(dataset),
                                   "status": "ok", "error": "", "invalidTags": []})

    @staticmethod
    def _create_error(message: str) -> Response:
        """Create* refusals come back as HTTP 200 ``status: "error"`` (§3.1, kaggle-cli #25)."""
        return json_response(200, {"ref": "", "url": "", "status": "error", "error": message,
                                   "invalidTags": []})

    def _dataset_version(self, body: dict[str, Any]
                         ) -> tuple[KaggleDataset, KaggleVersion] | Response:
        """The dataset and version a read call names (the current one without a number)."""
        dataset = self._dataset(body)
        if isinstance(dataset, Response):
            return dataset
        version = self._version(dataset, body.get("datasetVersionNumber"))
        return version if isinstance(version, Response) else (dataset, version)

    def _version(self, dataset: KaggleDataset, number: Any) -> KaggleVersion | Response:
        if number in (None, "", 0):
            return dataset.current
        found = next((v for v in dataset.versions if v.number == int(number)), None)
        if found is None:
            return kaggle_error(404, f"Version {number} of dataset {dataset.ref} not found")
        return found

    def _claim(self, files: list[Any]) -> dict[str, KaggleFile] | Response:
        """Turn ``files[].token`` into the version's files; every token must be a finished,
        unused blob."""
        if not files:
            return self._create_error("A dataset version must contain at least one file.")
        claimed: dict[str, KaggleFile] = {}
        for item in files:
            token = str((item or {}).get("token") or "")
            blob = self.blobs.get(token)
            if blob is None or not blob.complete or blob.used:
                return kaggle_error(400, f"Invalid or incomplete blob token {token!r}")
            blob.used = True
            data = bytes(blob.data)
            claimed[blob.name] = KaggleFile(
                blob.name, data, "sha256:" + hashlib.sha256(data).hexdigest(),
                description=(item or {}).get("description"))
        return claimed

    def _new_version(self, dataset: KaggleDataset, body: dict[str, Any], user: str) -> Response:
        if dataset.owner != user:
            return kaggle_error(403, "You do not have permission to update this dataset.")
        current = dataset.current
        if current.polls_left > 0:
            current.polls_left -= 1  # a refused push counts as a poll (see module docstring)
            if self.busy_status == 429:
                return kaggle_error(429, BUSY_MESSAGE, retry_after=self.busy_retry_after)
            return kaggle_error(self.busy_status, BUSY_MESSAGE)
        files = self._claim(body.get("files") or [])
        if isinstance(files, Response):
            return files
        for key, attr in (("subtitle", "subtitle"), ("description", "description")):
            if body.get(key) is not None:
                setattr(dataset, attr, body[key])
        if body.get("categoryIds"):
            dataset.keywords = list(body["categoryIds"])
        version = KaggleVersion(current.number + 1, str(body.get("versionNotes") or ""), files,
                                polls_left=self.processing_polls)
        if body.get("deleteOldVersions"):
            dataset.versions.clear()
        dataset.versions.append(version)
        return self._create_ok(dataset)

    # -- blob PUTs (no auth, §3.4) -----------------------------------------------------------
    def _blob(self, request: Request) -> Response:
        if request.method != "PUT":
            return kaggle_error(405, "Blob uploads are PUT")
        with self._lock:
            blob = self.blobs.get(request.params["token"])
            if blob is None or blob.used:
                return kaggle_error(404, "Upload session not found or expired")
            content_range = (request.headers.get("Content-Range") or "").strip()
            if not content_range:
                return self._blob_full(blob, request.body)
            m = _CONTENT_RANGE.match(content_range)
            if not m or int(m.group(3)) != blob.length:
                return kaggle_error(400, f"Bad Content-Range {content_range!r}")
            if m.group(1) is None:  # the resume probe: bytes */N
                return self._blob_progress(blob)
            start, end = int(m.group(1)), int(m.group(2))
            if start != len(blob.data) or end - start + 1 != len(request.body):
                return kaggle_error(400, f"Content-Range {content_range!r} does not continue "
                                         f"the {len(blob.data)} bytes received")
            blob.data += request.body
            return self._blob_progress(blob)

    def _blob_full(self, blob: Blob, body: bytes) -> Response:
        fault = self._take(self._blob_faults, "name", blob.name)
        if fault is not None:
            if fault["keep"] is not None:
                blob.data = bytearray(body[:fault["keep"]])
                return kaggle_error(503, "Service unavailable; resume the upload")
            return kaggle_error(fault["status"], "Upload failed")
        blob.data = bytearray(body)
        if blob.length and len(body) != blob.length:
            return kaggle_error(400, f"Expected {blob.length} bytes, got {len(body)}")
        blob.length = len(body)
        blob.complete = True
        return json_response(200, {"token": blob.token, "size": len(body)})

    @staticmethod
    def _blob_progress(blob: Blob) -> Response:
        if len(blob.data) >= blob.length:
            blob.complete = True
            return json_response(200, {"token": blob.token, "size": len(blob.data)})
        # 308 "Resume Incomplete": Range says what arrived; no Location (requests follows it).
        headers = {"Range": f"bytes=0-{len(blob.data) - 1}"} if blob.data else {}
        return Response(308, b"", headers)
