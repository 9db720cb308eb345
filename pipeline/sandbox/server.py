"""The sandbox's HTTP core: a threaded stdlib server, a tiny router, and shared response helpers.

Why stdlib: the sandbox must start in-process in a pytest fixture and from ``pipeline sandbox``
with nothing to install, and speak plain HTTP/1.1 (keep-alive, chunked request bodies, Range
downloads) exactly as the real clients expect. Each service (Zenodo records, deposit API, GitHub
archives, Kaggle, webhook receiver) lives in its own module and registers routes on the
:class:`Router` through a ``register(router, sandbox)`` function.

Every request is appended to :attr:`SandboxServer.log` (method, path, status, bytes in and out) so
tests can count search requests or uploaded bytes without looking inside the client.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    """One parsed request. ``path`` is percent-decoded; ``raw_path`` is as sent."""

    method: str
    raw_path: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    client: str
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj).encode("utf-8")
    return Response(status, body, {"Content-Type": "application/json", **(headers or {})})


def zenodo_error(status: int, message: str, errors: list[dict] | None = None) -> Response:
    """Zenodo's current error body: ``{"status", "message", "errors"?}`` (ZENODO_API.md §5.6)."""
    body: dict[str, Any] = {"status": status, "message": message}
    if errors:
        body["errors"] = errors
    return json_response(status, body)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def bytes_response(request: Request, data: bytes, content_type: str, extra: dict | None = None
                   ) -> Response:
    """Serve ``data`` honouring a single ``Range: bytes=a-b`` (206/416), as Zenodo's files do."""
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes", **(extra or {})}
    wanted = request.headers.get("Range")
    if wanted:
        m = _RANGE.match(wanted.strip())
        if m and (m.group(1) or m.group(2)):
            size = len(data)
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
            else:
                start, end = max(0, size - int(m.group(2))), size - 1
            end = min(end, size - 1)
            if start >= size or start > end:
                return Response(416, b"", {"Content-Range": f"bytes */{size}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return Response(206, data[start:end + 1], headers)
    return Response(200, data, headers)


@dataclass
class FaultRule:
    """Answer a share of matching requests with an error instead of serving them.

    Deterministic (seeded) so a failing test can be rerun as it was.
    """

    path_prefix: str
    rate: float
    status: int = 429
    retry_after: int = 1
    methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE")
    seed: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def fires(self, request: Request) -> bool:
        return (request.method in self.methods and request.path.startswith(self.path_prefix)
                and self._rng.random() < self.rate)

    def response(self) -> Response:
        self.hits += 1
        message = "30 per 1 minute" if self.status == 429 else "Internal server error."
        # "status" is Zenodo's key, "code" Kaggle's: one body serves both protocols.
        return json_response(self.status, {"status": self.status, "code": self.status,
                                           "message": message},
                             {"Retry-After": str(self.retry_after)})


class Router:
    """Routes ``(method, regex)`` to handlers; named groups become ``request.params``."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile("^" + pattern + "$"), handler))

    def dispatch(self, request: Request) -> Response:
        allowed = False
        for method, regex, handler in self._routes:
            m = regex.match(request.path)
            if not m:
                continue
            allowed = True
            if method == request.method:
                request.params = {k: v for k, v in m.groupdict().items() if v is not None}
                return handler(request)
        if allowed:
            return zenodo_error(405, "The method is not allowed for the requested URL.")
        return zenodo_error(404, "The requested URL was not found on the server.")


def _read_chunked(rfile) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = rfile.readline().strip()
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            while rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        chunks.append(rfile.read(size))
        rfile.readline()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a keep-alive client's delayed ACK
    # stalls every response by ~40 ms (measured: 44 ms vs 1.3 ms per request on a Session).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        split = urlsplit(self.path)  # absolute-form targets (HTTP_PROXY clients) work too
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(self.rfile)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = Request(
            method=self.command, raw_path=split.path, path=unquote(split.path),
            query=parse_qs(split.query, keep_blank_values=True), headers=self.headers,
            body=body, client=self.client_address[0],
        )
        owner = self.server.owner
        try:
            response = owner.handle(request)
        except Exception as exc:  # a sandbox bug must show up as a 500, not a hung client
            response = json_response(500, {"status": 500, "code": 500,
                                           "message": f"sandbox error: {exc!r}"})
        payload = response.body if request.method != "HEAD" else b""
        owner.record(request, response)  # before replying: a client that got it sees it logged
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: SandboxServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (tests kill clients on purpose) is not news."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class SandboxServer:
    """Binds 127.0.0.1 (port 0 = any free port), serves in a thread, logs every request."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.router = Router()
        self.faults: list[FaultRule] = []
        self.log: list[dict[str, Any]] = []
        self.before: list[Callable[[Request], Response | None]] = []
        self.after: list[Callable[[Request, Response], None]] = []
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def handle(self, request: Request) -> Response:
        for rule in self.faults:
            if rule.fires(request):
                return rule.response()
        for hook in self.before:
            early = hook(request)
            if early is not None:
                return early
        response = self.router.dispatch(request)
        for after in self.after:
            after(request, response)
        return response

    def record(self, request: Request, response: Response) -> None:
        with self._lock:
            self.log.append({
                "method": request.method, "path": request.path,
                "query": {k: v[-1] for k, v in request.query.items()},
                "status": response.status, "bytes_in": len(request.body),
                "bytes_out": len(response.body),
            })

    def requests(self, method: str | None = None, prefix: str = "") -> list[dict[str, Any]]:
        """Logged requests filtered by method and path prefix (a copy, safe to keep)."""
        with self._lock:
            return [e for e in self.log
                    if (method is None or e["method"] == method) and e["path"].startswith(prefix)]

    def start(self) -> SandboxServer:
        # a short poll interval: stop() (every test fixture teardown) returns in ~50 ms, not 0.5 s
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sandbox",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def iter_chunks(data: bytes, size: int = 1 << 16) -> Iterable[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]
