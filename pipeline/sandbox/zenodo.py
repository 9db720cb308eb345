"""Zenodo's records API in the sandbox: search, records, versions, downloads and rate limits.

Why so faithful: a fake that is kinder than the real service hides bugs. Everything the harvester
and the fetcher can trip over on zenodo.org behaves the same here (reference ZENODO_API.md):

* search (§1.1): page size at most 25 anonymous / 100 with a token, else 400 with Zenodo's
  validation message; no hit beyond the 10,000th (``(page-1)*size >= 10000`` gives 400 "Invalid
  querystring parameters.", §1.2) while ``hits.total`` still counts everything; latest versions
  only unless ``all_versions``; ``mostrecent`` sorts by *created*, not updated; unknown sort keys
  are a 400; unknown ``communities`` slugs are silently ignored;
* ``q`` (§1.3): see :mod:`pipeline.sandbox.query`, including the unquoted ``+00:00`` trap that
  returns 200 with free-text results;
* rate limits (§4): ``X-RateLimit-Limit/-Remaining/-Reset`` and ``Retry-After`` on *every*
  response, and a moving-window limiter on search keyed by User-Agent + IP that answers 429
  ``{"message": "30 per 1 minute", "status": 429}``;
* records (§2.1, §5.6): 404 and 410 (tombstone) bodies as in fixtures 10 and 11; file downloads
  at ``links.self`` (keys with ``/``), with Range support and md5s that match.

:class:`ZenodoService` is also the record store the other sandbox parts use (the deposit service
publishes into it, the GitHub service serves the releases it knows, tests add and change records).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import unescape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from pipeline.sandbox import query
from pipeline.sandbox.corpus import (
    WINDOW_END,
    Blob,
    Corpus,
    CorpusRecord,
    file_entry,
    reissue,
    stamp,
)
from pipeline.sandbox.server import (
    Handler,
    Request,
    Response,
    Router,
    bytes_response,
    json_response,
    zenodo_error,
)
from pipeline.sandbox.sourcetree import ArchiveSpec, Release

if TYPE_CHECKING:
    from pipeline.sandbox import Sandbox

MAX_RESULTS = 10_000
UNAUTHORIZED = ("The server could not verify that you are authorized to access the URL requested. "
                "You either supplied the wrong credentials (e.g. a bad password), or your browser "
                "doesn't understand how to supply the credentials required.")
PID_NOT_FOUND = "The persistent identifier does not exist."
# sort key -> (Doc attribute, descending); §1.1 (RDM_SORT_OPTIONS + LEGACY_SORT_OPTIONS).
SORTS: dict[str, tuple[str, bool]] = {
    "bestmatch": ("score", True), "-bestmatch": ("score", False),
    "newest": ("created", True), "oldest": ("created", False),
    "mostrecent": ("created", True), "-mostrecent": ("created", False),
    "updated-desc": ("updated", True), "updated-asc": ("updated", False),
    "newestactivity": ("updated", True), "oldestactivity": ("updated", False),
    "version": ("index", True), "-version": ("index", False),
    "mostviewed": ("views", True), "-mostviewed": ("views", False),
    "mostdownloaded": ("downloads", True),
    "publication-desc": ("publication", True), "publication-asc": ("publication", False),
    "publication_date": ("publication", True), "-publication_date": ("publication", False),
    "conference-desc": ("none", True), "conference-asc": ("none", False),
    "journal-desc": ("none", True), "journal-asc": ("none", False),
    "journal": ("none", False), "-journal": ("none", True),
    "conference_session": ("none", False), "-conference_session": ("none", True),
}
_TRUE = {"true", "1", "yes", "y", "on", "t", ""}
_FALSE = {"false", "0", "no", "n", "off", "f"}
_MIME = {".zip": "application/zip", ".gz": "application/gzip", ".tgz": "application/gzip",
         ".pdf": "application/pdf", ".md": "text/markdown", ".csv": "text/csv",
         ".json": "application/json", ".txt": "text/plain"}


class MovingWindow:
    """Flask-Limiter's moving window: at most ``limit`` hits per ``window`` seconds per key.

    ``limit=None`` never refuses but still sends headers (advertising ``advertised``, the 1000
    that sandbox.zenodo.org showed in Oct 2025, fixture 5), so headers are on every response.
    """

    def __init__(self, limit: int | None, *, window: float = 60.0, advertised: int = 1000,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit = limit or None
        self.window = window
        self.advertised = advertised
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, dict[str, str]]:
        with self._lock:
            now = self.clock()
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            allowed = self.limit is None or len(hits) < self.limit
            if allowed:
                hits.append(now)
            limit = self.limit or self.advertised
            reset = hits[0] + self.window if hits else now + self.window
            return allowed, {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(max(0, limit - len(hits))),
                "X-RateLimit-Reset": str(math.ceil(reset)),
                "Retry-After": str(max(0, math.ceil(reset - now))),
            }


def _ms(text: str) -> int:
    return query.to_ms(datetime.fromisoformat(text))


def make_doc(record: dict) -> query.Doc:
    """What the search index holds for ``record`` (current JSON shape)."""
    meta = record.get("metadata") or {}
    rtype = meta.get("resource_type") or {}
    kind, sub = rtype.get("type", ""), rtype.get("subtype")
    subtype = f"{kind}-{sub}" if sub else None
    description = unescape(re.sub(r"<[^>]+>", " ", meta.get("description") or ""))
    text = {
        "title": meta.get("title") or record.get("title") or "",
        "description": description,
        "creators": " ".join(c.get("name", "") for c in meta.get("creators") or []),
        "keywords": " ".join(meta.get("keywords") or []),
    }
    files = record.get("files") or []
    keywords = {
        "id": (str(record["id"]),), "concept": (str(record["conceptrecid"]),),
        "doi": (record.get("doi", ""),), "conceptdoi": (record.get("conceptdoi", ""),),
        "type": (kind,), "subtype": (subtype,) if subtype else (), "rtid": (subtype or kind,),
        "version": (meta["version"],) if meta.get("version") else (),
        "communities": tuple(c["id"] for c in meta.get("communities") or []),
        "related": tuple(r.get("identifier", "") for r in meta.get("related_identifiers") or []),
        "filename": tuple(f["key"] for f in files),
        "checksum": tuple(f["checksum"] for f in files),
        "filetype": tuple(f["key"].rsplit(".", 1)[-1].lower() for f in files if "." in f["key"]),
        "access": (meta.get("access_right", "open"),),
    }
    pub = meta.get("publication_date")
    stats = record.get("stats") or {}
    return query.Doc(
        id=int(record["id"]), concept=str(record["conceptrecid"]),
        created=_ms(record["created"]), updated=_ms(record["updated"]),
        publication=query.to_ms(datetime.fromisoformat(pub).replace(tzinfo=UTC)) if pub else None,
        type=kind, subtype=subtype, text={k: query.Doc.padded(v) for k, v in text.items()},
        keywords=keywords, views=int(stats.get("views", 0)),
        downloads=int(stats.get("downloads", 0)))


@dataclass(frozen=True)
class SearchArgs:
    """The validated query-string arguments of a search (or a versions listing)."""

    q: str
    sort: str
    page: int
    size: int
    all_versions: bool = False
    type: str | None = None
    subtype: str | None = None
    communities: tuple[str, ...] = ()
    facets: tuple[tuple[str, tuple[str, ...]], ...] = ()


def parse_search_args(request: Request, *, page_max: int | None, authenticated: bool,
                      default_size: int = 25, default_sort: str | None = None
                      ) -> SearchArgs | Response:
    """Validate like ``ZenodoArgsSchema`` (zenodo-rdm params.py, §1.1); an error is a Response."""
    errors: list[dict[str, Any]] = []

    def integer(name: str, default: int) -> int:
        raw = request.arg(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            errors.append({"field": name, "messages": ["Not a valid integer."]})
            return default
        if value < 1:
            errors.append({"field": name, "messages": ["Must be greater than or equal to 1."]})
        return value

    size, page = integer("size", default_size), integer("page", 1)
    if page_max is not None and size > page_max:
        message = f"Page size cannot be greater than {page_max}."
        if not authenticated:
            message += " Please use authenticated requests to increase the limit to 100."
        errors.append({"field": "size", "messages": [message]})
    all_versions = False
    raw = request.arg("all_versions", request.arg("allversions"))
    if raw is not None:
        if raw.strip().lower() in _TRUE:
            all_versions = True
        elif raw.strip().lower() not in _FALSE:
            errors.append({"field": "allversions", "messages": ["Not a valid boolean."]})
    if errors:
        return zenodo_error(400, "A validation error occurred.", errors)
    q = request.arg("q") or ""
    sort = request.arg("sort") or default_sort or ("bestmatch" if q.strip() else "newest")
    if sort not in SORTS:
        return zenodo_error(400, f"Invalid sort option '{sort}'.")
    if (page - 1) * size >= MAX_RESULTS:  # invenio-records-resources pagination.valid(), §1.2
        return zenodo_error(400, "Invalid querystring parameters.")
    facets = tuple((name, tuple(request.query[name])) for name in ("resource_type", "file_type",
                                                                   "access_status")
                   if name in request.query)
    return SearchArgs(q=q, sort=sort, page=page, size=size, all_versions=all_versions,
                      type=request.arg("type") or None, subtype=request.arg("subtype") or None,
                      communities=tuple(request.query.get("communities", [])), facets=facets)


def _facet_ok(doc: query.Doc, name: str, values: tuple[str, ...]) -> bool:
    if name == "resource_type":
        return doc.type in values or (doc.subtype or "") in values
    if name == "file_type":
        return any(v.lower() in doc.keywords["filetype"] for v in values)
    return any(v in doc.keywords["access"] for v in values)


class ZenodoService:
    """The record store and the ``/api/records`` routes (see the module docstring)."""

    def __init__(self, sandbox: Sandbox) -> None:
        options = sandbox.options
        self.sandbox = sandbox
        self.base_url = sandbox.url
        self.corpus = Corpus(seed=options.get("seed", 0), base_url=self.base_url)
        self.anonymous_page_max: int = options.get("anonymous_page_max", 25)
        self.auth_page_max: int = options.get("auth_page_max", 100)
        self.search_limiter = MovingWindow(options.get("search_per_minute", 30))
        self.global_limiter = MovingWindow(options.get("requests_per_minute"))
        self._lock = threading.RLock()
        self._json: dict[int, bytes] = {}
        self._docs: dict[int, query.Doc] = {}
        self._blobs: dict[int, dict[str, Blob]] = {}
        self._concepts: dict[str, list[int]] = {}
        self._tombstones: dict[int, dict] = {}
        self._releases: dict[tuple[str, str, str], Release] = {}
        self._relations: dict[int, tuple[int, bool]] = {}  # what each JSON says now
        self._sorted: dict[str, list[tuple[int, int]]] = {"updated": [], "created": []}
        self._communities: set[str] = set()
        self._results: OrderedDict[tuple, list[int]] = OrderedDict()
        self._generation = 0
        self._last_stamp = WINDOW_END  # "now" is after the corpus even on a clock set back
        self._put_many(self.corpus.initial(options.get("concepts", 12)), bulk=True)

    # ------------------------------------------------------------------ store: public API

    def allocate_id(self) -> int:
        """A fresh record/deposition id from the same sequence as the corpus."""
        with self._lock:
            return self.corpus.allocate_id()

    def now(self) -> datetime:
        """The real UTC time, strictly increasing across calls (``updated`` of new changes)."""
        with self._lock:
            now = max(datetime.now(UTC), self._last_stamp + timedelta(microseconds=1))
            self._last_stamp = now
            return now

    def put(self, record: dict, blobs: Mapping[str, Blob] | None = None,
            release: Release | None = None) -> None:
        """Store (or replace) a published record; ``blobs`` are the bytes behind its file keys."""
        self._put_many([CorpusRecord(record, dict(blobs or {}), release)])

    def get(self, record_id: int | str) -> dict | None:
        """The record as served (a fresh copy), or None (unknown or deleted)."""
        with self._lock:
            data = self._json.get(int(record_id)) if str(record_id).isdigit() else None
        return json.loads(data) if data is not None else None

    def all(self) -> list[dict]:
        """Every live record, oldest ``updated`` first."""
        with self._lock:
            ids = [i for _, i in self._sorted["updated"]]
            return [json.loads(self._json[i]) for i in ids]

    def versions(self, concept: str) -> list[int]:
        """Live record ids of a concept, oldest first."""
        with self._lock:
            return list(self._concepts.get(str(concept), []))

    def file_bytes(self, record_id: int, key: str) -> bytes:
        """The bytes served for ``key`` of a record (KeyError when unknown)."""
        with self._lock:
            blob = self._blobs[int(record_id)][key]
        return blob.build() if isinstance(blob, ArchiveSpec) else blob

    def release(self, owner: str, repo: str, ref: str) -> Release | None:
        """The GitHub release behind a corpus record, if one has that owner/repo/tag."""
        with self._lock:
            return self._releases.get((owner.lower(), repo.lower(), ref))

    def add_records(self, n: int = 3) -> list[dict]:
        """Records published "since yesterday": new versions and new concepts, updated now."""
        with self._lock:
            when = self.now()
            made = self.corpus.new_records(n, when)
            self._last_stamp = max(self._last_stamp, when + timedelta(microseconds=n))
            self._put_many(made)
        return [json.loads(self._json[c.record["id"]]) for c in made]

    def add_planted_secrets(self) -> tuple[dict, list]:
        """A record published now whose archive plants fake secrets of every kind; its JSON and
        the :class:`~pipeline.sandbox.secrets.Planted` list (what must never be republished)."""
        from pipeline.sandbox.sourcetree import planted_secrets

        with self._lock:
            made = self.corpus.planted_secrets(self.now())
            self._put_many([made])
        spec = next(iter(made.blobs.values()))
        assert isinstance(spec, ArchiveSpec)
        return json.loads(self._json[made.record["id"]]), planted_secrets(spec.release)

    def add_bulk(self, n: int, day: date | str) -> list[int]:
        """``n`` software records (+ ``n // 50`` datasets) all updated within ``day``; their ids."""
        when = date.fromisoformat(day) if isinstance(day, str) else day
        return self._put_many(self.corpus.bulk(n, when), bulk=True)

    def update_record(self, record_id: int, *, files: bool = False,
                      title: str | None = None) -> dict:
        """A new revision: ``revision`` + 1, ``updated`` = now; optionally new file contents."""
        with self._lock:
            record = self.get(record_id)
            if record is None:
                raise KeyError(record_id)
            now = self.now()
            record["revision"] += 1
            record["updated"] = record["modified"] = stamp(now)
            if title:
                record["title"] = record["metadata"]["title"] = title
            blobs = self._blobs[record["id"]]
            if files:
                blobs = reissue(blobs, record["revision"])
                record["files"] = [self._entry(record["id"], key, blob)
                                   for key, blob in blobs.items()]
            self.put(record, blobs)
            return record

    def delete_record(self, record_id: int, *, reason: str = "spam",
                      note: str = "Removed by the sandbox.") -> None:
        """Delete a record: it leaves search and its URLs answer 410 with a tombstone."""
        with self._lock:
            record = self.get(record_id)
            if record is None:
                raise KeyError(record_id)
            rid, concept = record["id"], record["conceptrecid"]
            self._unindex(rid)
            del self._json[rid], self._docs[rid], self._blobs[rid]
            self._concepts[concept].remove(rid)
            creators = record["metadata"].get("creators") or [{"name": "Unknown"}]
            year = record["metadata"].get("publication_date", "")[:4]
            self._tombstones[rid] = {"status": 410, "message": "Record deleted", "tombstone": {
                "note": note, "removed_by": {"user": "system"}, "removal_date": stamp(self.now()),
                "citation_text": (f"{creators[0]['name']} ({year}). {record['title']}. Zenodo. "
                                  f"https://doi.org/{record['doi']}"),
                "is_visible": True, "removal_reason": {"id": reason}}}
            self._relink(concept)
            self._generation += 1

    # ------------------------------------------------------------------ store: internals

    def _entry(self, rid: int, key: str, blob: Blob) -> dict:
        size, md5 = blob.digest() if isinstance(blob, ArchiveSpec) else (
            len(blob), hashlib.md5(blob).hexdigest())
        return file_entry(self.base_url, rid, key, size, md5, self.corpus.new_uuid())

    def _unindex(self, rid: int) -> None:
        doc = self._docs[rid]
        for name, ms in (("updated", doc.updated), ("created", doc.created)):
            index = self._sorted[name]
            index.pop(bisect.bisect_left(index, (ms, rid)))

    def _put_many(self, made: Iterable[CorpusRecord], *, bulk: bool = False) -> list[int]:
        """Store records (streamed: a bulk corpus is never held twice); their ids."""
        with self._lock:
            touched, ids = set(), []
            for item in made:
                record = item.record
                rid, concept = int(record["id"]), str(record["conceptrecid"])
                ids.append(rid)
                if rid in self._docs:
                    self._unindex(rid)
                doc = make_doc(record)
                self._docs[rid] = doc
                self._json[rid] = json.dumps(record).encode()
                self._blobs[rid] = dict(item.blobs)
                relation = ((record["metadata"].get("relations") or {}).get("version") or [{}])[0]
                self._relations[rid] = (relation.get("index", -1), relation.get("is_last", False))
                self._tombstones.pop(rid, None)
                self._communities.update(doc.keywords["communities"])
                versions = self._concepts.setdefault(concept, [])
                if rid not in versions:
                    versions.append(rid)
                touched.add(concept)
                if item.release is not None:
                    r = item.release
                    self._releases[(r.owner.lower(), r.repo.lower(), r.tag)] = r
                for name, ms in (("updated", doc.updated), ("created", doc.created)):
                    if bulk:
                        self._sorted[name].append((ms, rid))
                    else:
                        bisect.insort(self._sorted[name], (ms, rid))
            if bulk:
                for index in self._sorted.values():
                    index.sort()
            for concept in touched:
                self._relink(concept)
            self._generation += 1
            return ids

    def _relink(self, concept: str) -> None:
        """Recompute versions.index / is_latest and ``metadata.relations.version``."""
        versions = self._concepts.get(concept, [])
        versions.sort(key=lambda i: (self._docs[i].created, i))
        for position, rid in enumerate(versions):
            doc = self._docs[rid]
            is_last = position == len(versions) - 1
            doc.index, doc.latest = position + 1, is_last
            if self._relations[rid] == (position, is_last):
                continue
            self._relations[rid] = (position, is_last)
            record = json.loads(self._json[rid])
            record["metadata"]["relations"] = {"version": [{
                "index": position, "is_last": is_last,
                "parent": {"pid_type": "recid", "pid_value": concept}}]}
            self._json[rid] = json.dumps(record).encode()

    def _matching(self, args: SearchArgs, concept: str | None = None) -> list[int]:
        """Ids matching ``args`` in the requested order (cached per store generation)."""
        key = (args.q, args.sort, args.all_versions, args.type, args.subtype, args.communities,
               args.facets, concept, self._generation)
        cached = self._results.get(key)
        if cached is not None:
            self._results.move_to_end(key)
            return cached
        now = datetime.now(UTC)
        try:
            node = query.parse(args.q, now=now)
        except query.QuerySyntaxError:
            node = query.free_text(args.q)  # §1.3: no error, free-text results
        if concept is not None:
            ids: Iterable[int] = self._concepts.get(concept, [])
        else:
            ids = self._candidates(node)
        communities = [c for c in args.communities if c in self._communities]
        docs = []
        for rid in ids:
            doc = self._docs[rid]
            if concept is None and not args.all_versions and not doc.latest:
                continue
            if args.type and doc.type != args.type:
                continue
            if args.type and args.subtype and doc.subtype != f"{args.type}-{args.subtype}":
                continue
            if communities and not set(communities) & set(doc.keywords["communities"]):
                continue
            if not all(_facet_ok(doc, name, values) for name, values in args.facets):
                continue
            if node.match(doc):
                docs.append(doc)
        attribute, descending = SORTS[args.sort]
        docs.sort(key=lambda d: d.id)
        if attribute == "score":
            docs.sort(key=node.score, reverse=descending)
        elif attribute != "none":
            docs.sort(key=lambda d: (getattr(d, attribute) is not None, getattr(d, attribute) or 0),
                      reverse=descending)
        result = [d.id for d in docs]
        if "now" not in args.q:
            self._results[key] = result
            while len(self._results) > 32:
                self._results.popitem(last=False)
        return result

    def _candidates(self, node: query.Node) -> Iterable[int]:
        chosen: set[int] | None = None
        for name, low, high in query.required_spans(node):
            if name not in self._sorted:
                continue
            index = self._sorted[name]
            start = 0 if low is None else bisect.bisect_left(index, (low, -1))
            end = len(index) if high is None else bisect.bisect_right(index, (high, math.inf))
            ids = {rid for _, rid in index[start:end]}
            chosen = ids if chosen is None else chosen & ids
        return sorted(chosen) if chosen is not None else list(self._docs)

    # ------------------------------------------------------------------ HTTP

    def authenticate(self, request: Request) -> bool | Response:
        """True with a valid token, False anonymous, a 401 Response for a wrong token (§5.1)."""
        token = None
        header = request.headers.get("Authorization")
        if header:
            scheme, _, value = header.strip().partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else header
        token = token or request.arg("access_token")
        if token is None:
            return False
        if token in self.sandbox.tokens:
            return True
        return zenodo_error(401, UNAUTHORIZED)

    def guarded(self, handler: Handler, *, search: bool = False) -> Handler:
        """Wrap a handler with the rate limits and their headers (every response, §4)."""
        limiter = self.search_limiter if search else self.global_limiter

        def run(request: Request) -> Response:
            key = f"{request.headers.get('User-Agent', '')}|{request.client}"
            allowed, headers = limiter.hit(key)
            if allowed:
                response = handler(request)
            else:
                response = json_response(429, {"message": f"{limiter.limit} per 1 minute",
                                               "status": 429})
            response.headers.update(headers)
            return response

        return run

    def register(self, router: Router) -> None:
        one = r"/api/records/(?P<id>[^/]+)"
        routes = [(r"/api/records/?", self.guarded(self._search, search=True)),
                  (one, self.guarded(self._record)),
                  (one + "/versions", self.guarded(self._versions)),
                  (one + "/versions/latest", self.guarded(self._latest)),
                  (one + "/files/(?P<key>.+)/content", self.guarded(self._content))]
        for pattern, handler in routes:
            for method in ("GET", "HEAD"):  # Flask answers HEAD wherever it answers GET
                router.add(method, pattern, handler)

    def _page(self, request: Request, args: SearchArgs, ids: list[int], path: str) -> Response:
        start = (args.page - 1) * args.size
        page_ids = ids[start:start + args.size]
        with self._lock:
            hits = b", ".join(self._json[i] for i in page_ids if i in self._json)
        params = {k: v[-1] for k, v in request.query.items() if k not in ("page", "size")}
        links = {"self": self._url(path, params, args.page, args.size)}
        if args.page > 1:
            links["prev"] = self._url(path, params, args.page - 1, args.size)
        if args.page * args.size < min(len(ids), MAX_RESULTS):
            links["next"] = self._url(path, params, args.page + 1, args.size)
        body = (b'{"hits": {"hits": [' + hits + b'], "total": ' + str(len(ids)).encode()
                + b'}, "aggregations": {}, "links": ' + json.dumps(links).encode()
                + b', "sortBy": ' + json.dumps(args.sort).encode() + b"}")
        return Response(200, body, {"Content-Type": "application/json"})

    def _url(self, path: str, params: dict[str, str], page: int, size: int) -> str:
        return f"{self.base_url}{path}?{urlencode({**params, 'page': page, 'size': size})}"

    def _search(self, request: Request) -> Response:
        identity = self.authenticate(request)
        if isinstance(identity, Response):
            return identity
        if "vnd.inveniordm" in (request.headers.get("Accept") or ""):
            return zenodo_error(406, "The sandbox serves the legacy-compatible JSON only "
                                     "(Accept: application/json).")
        page_max = self.auth_page_max if identity else self.anonymous_page_max
        args = parse_search_args(request, page_max=page_max, authenticated=identity)
        if isinstance(args, Response):
            return args
        try:
            with self._lock:
                ids = self._matching(args)
        except query.EngineError as exc:
            return zenodo_error(exc.status, exc.message)
        return self._page(request, args, ids, "/api/records")

    def _gone_or_missing(self, raw_id: str) -> Response | None:
        """404/410 for an id that is not a live record; None when it is one."""
        rid = int(raw_id) if raw_id.isdigit() else -1
        with self._lock:
            if rid in self._json:
                return None
            if rid in self._tombstones:
                return json_response(410, self._tombstones[rid])
        return zenodo_error(404, PID_NOT_FOUND)

    def _record(self, request: Request) -> Response:
        identity = self.authenticate(request)
        if isinstance(identity, Response):
            return identity
        raw = request.params["id"]
        with self._lock:
            latest = self._concepts.get(raw)
            if latest and raw.isdigit() and int(raw) not in self._json:
                # a concept id resolves to its latest version
                return Response(302, b"", {"Location": f"{self.base_url}/api/records/{latest[-1]}"})
            data = self._json.get(int(raw)) if raw.isdigit() else None
        if data is None:
            return self._gone_or_missing(raw) or zenodo_error(404, PID_NOT_FOUND)
        return Response(200, data, {"Content-Type": "application/json"})

    def _versions(self, request: Request) -> Response:
        identity = self.authenticate(request)
        if isinstance(identity, Response):
            return identity
        problem = self._gone_or_missing(request.params["id"])
        if problem is not None:
            return problem
        args = parse_search_args(request, page_max=None, authenticated=identity,
                                 default_size=10, default_sort="version")
        if isinstance(args, Response):
            return args
        with self._lock:
            concept = self._docs[int(request.params["id"])].concept
            ids = self._matching(args, concept=concept)
        return self._page(request, args, ids, f"/api/records/{request.params['id']}/versions")

    def _latest(self, request: Request) -> Response:
        problem = self._gone_or_missing(request.params["id"])
        if problem is not None:
            return problem
        with self._lock:
            concept = self._docs[int(request.params["id"])].concept
            latest = self._concepts[concept][-1]
        return Response(302, b"", {"Location": f"{self.base_url}/api/records/{latest}"})

    def _content(self, request: Request) -> Response:
        identity = self.authenticate(request)
        if isinstance(identity, Response):
            return identity
        rid, key = request.params["id"], request.params["key"]
        problem = self._gone_or_missing(rid)
        if problem is not None:
            return problem
        try:
            data = self.file_bytes(int(rid), key)
        except KeyError:
            return zenodo_error(404, f"Record '{rid}' has no file '{key}'.")
        name = key.rsplit("/", 1)[-1]
        suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
        disposition = (f'attachment; filename="{name}"' if name.isascii()
                       else f"attachment; filename*=UTF-8''{quote(name)}")
        return bytes_response(request, data, _MIME.get(suffix, "application/octet-stream"),
                              {"Content-Disposition": disposition})
