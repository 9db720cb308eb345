"""A hostile Zenodo for tests: a real HTTP server on 127.0.0.1 whose answers are written byte by
byte, so it can do what the faithful sandbox never does: trickle, hang, lie in headers, close
mid-body, answer 200 with garbage, and serve records whose fields are attacks.

Routes are exact paths (the query string is ignored); a route is a function given the request
handler. Helpers build Zenodo-shaped records and archives (zip, tar with GNU long names, pax
headers and non-UTF-8 names) so a test lists its cases in a few lines and drives the real CLI
(``python -m pipeline``) against the server in a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.demo import sandbox_manifest

ROOT = Path(__file__).resolve().parent.parent
Route = Callable[[BaseHTTPRequestHandler], None]
UPDATED = "2026-11-20T10:00:00.000000+00:00"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.owner.seen.append((path, dict(self.headers)))
        route = self.server.owner.routes.get(path)
        try:
            if route is None:
                send_json(self, {"status": 404, "message": "not found"}, status=404)
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Hostile


@dataclass
class Hostile:
    """The server; ``routes`` may be changed while it runs."""

    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def start(self) -> Hostile:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._stop = threading.Event()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def hang(self, handler: BaseHTTPRequestHandler) -> None:
        """Accept the request and never answer (until the server stops)."""
        self._stop.wait(120)

    def serve_records(self, records: list[Any]) -> None:
        """The search endpoint lists ``records`` (page 1), each also readable by id."""
        def search(h: BaseHTTPRequestHandler) -> None:
            page = 1
            if "page=" in h.path:
                page = int(h.path.split("page=")[1].split("&")[0])
            hits = records if page == 1 else []
            send_json(h, {"hits": {"hits": hits, "total": len(records)}})
        self.routes["/api/records"] = search
        for r in records:
            if isinstance(r, dict) and isinstance(r.get("id"), int):
                self.routes[f"/api/records/{r['id']}"] = _fixed_json(r)

    def file(self, rid: int, key: str, route: Route) -> str:
        path = f"/files/{rid}/{key}/content"
        self.routes[path] = route
        return self.url + path


def _fixed_json(obj: Any) -> Route:
    return lambda h: send_json(h, obj)


def send_raw(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes,
             *, close_after: int | None = None) -> None:
    """Write a response exactly as given (headers are not checked or completed)."""
    h.wfile.write(f"HTTP/1.1 {status} X\r\n".encode())
    for k, v in headers.items():
        h.wfile.write(f"{k}: {v}\r\n".encode())
    h.wfile.write(b"Connection: close\r\n\r\n")
    h.wfile.write(body if close_after is None else body[:close_after])
    h.wfile.flush()


def send_json(h: BaseHTTPRequestHandler, obj: Any, status: int = 200) -> None:
    body = json.dumps(obj).encode()
    send_raw(h, status, {"Content-Type": "application/json",
                         "Content-Length": str(len(body))}, body)


def bytes_route(data: bytes, headers: dict[str, str] | None = None, *,
                close_after: int | None = None, status: int = 200) -> Route:
    hdrs = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
            **(headers or {})}
    return lambda h: send_raw(h, status, hdrs, data, close_after=close_after)


def trickle_route(data: bytes, every: float = 0.2) -> Route:
    """The right headers, then one byte every ``every`` seconds (never trips a read timeout)."""
    def route(h: BaseHTTPRequestHandler) -> None:
        send_raw(h, 200, {"Content-Length": str(len(data))}, b"", close_after=0)
        for i in range(len(data)):
            h.wfile.write(data[i:i + 1])
            h.wfile.flush()
            time.sleep(every)
    return route


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def record(server: Hostile, rid: int, files: dict[str, bytes], *,
           routes: dict[str, Route] | None = None, **top: Any) -> dict[str, Any]:
    """A current-shape Zenodo record whose files are served by ``server`` (``routes`` override
    how a key is served; the md5 and size stay those of the honest bytes)."""
    entries = []
    for key, data in files.items():
        route = (routes or {}).get(key) or bytes_route(data)
        entries.append({"key": key, "size": len(data), "checksum": md5(data),
                        "links": {"self": server.file(rid, key, route)}})
    body: dict[str, Any] = {
        "id": rid, "conceptrecid": str(rid + 1), "revision": 1, "doi": f"10.5281/zenodo.{rid}",
        "created": UPDATED, "updated": UPDATED, "files": entries,
        "metadata": {"title": f"record {rid}", "version": "1.0",
                     "resource_type": {"type": "software"}, "license": {"id": "mit"}}}
    body.update(top)
    return body


# -- archives ------------------------------------------------------------------------------

def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_header(name: bytes, size: int, typeflag: bytes = b"0") -> bytes:
    """One ustar header block, by hand (tarfile would refuse to write hostile ones)."""
    h = bytearray(512)
    h[0:len(name[:100])] = name[:100]
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = f"{size:011o}\0".encode() if size < 8**11 else \
        b"\x80" + size.to_bytes(11, "big")
    h[136:148] = b"00000000000\0"
    h[156:157] = typeflag
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


def tar_member(name: bytes, data: bytes, typeflag: bytes = b"0") -> bytes:
    pad = -len(data) % 512
    return tar_header(name, len(data), typeflag) + data + b"\0" * pad


def tar_end() -> bytes:
    return b"\0" * 1024


# -- the CLI -------------------------------------------------------------------------------

@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float
    max_rss_mb: float

    @property
    def text(self) -> str:
        return self.out + self.err


def manifest(server_url: str, folder: Path, **overrides: Any) -> Path:
    """A manifest aimed at the hostile server, with small limits so nothing waits long."""
    base = {"source.since": "2026-11-01T00:00:00Z", "source.zenodo.max_retries": 1,
            "source.zenodo.timeout_seconds": 3, "processing.download_retries": 0,
            "processing.download_grace_seconds": 2,
            "processing.download_min_bytes_per_second": 65536}
    return sandbox_manifest(server_url, folder, overrides={**base, **overrides})


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """``(VmHWM, VmRSS)`` of one process in KiB, (0, 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return (int(values.get("VmHWM", "0 kB").split()[0]),
            int(values.get("VmRSS", "0 kB").split()[0]))


class _MemoryWatch(threading.Thread):
    """Peak memory of a process tree: the largest single high-water mark, or the largest sum of
    the tree's resident sizes at one moment (shared pages counted in each: an overestimate).

    Why not ``wait4``'s ``ru_maxrss``: a child inherits the high-water mark of the process it
    was forked from, so a test process grown to 600 MB would make every command look that big.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            sizes = [_memory_kb(p) for p in _tree(self.pid)]
            self.peak_kb = max(self.peak_kb, *(hwm for hwm, _ in sizes),
                               sum(rss for _, rss in sizes))
            self.done.wait(0.05)


def cli(folder: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> Run:
    """``python -m pipeline`` in a subprocess, with its peak memory (workers included)."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("ZENODO_", "KAGGLE_", "GITHUB_"))}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(ROOT)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--manifest", str(folder / "data_manifest.yaml"),
         "--workdir", str(folder / "work"), *args], cwd=folder, env=full_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watch = _MemoryWatch(proc.pid)
    watch.start()
    streams: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, s=s: streams.__setitem__(n, s.read()))
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        # Reaped only after the watch had its last look (the zombie keeps no memory figures).
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        watch.done.set()
        watch.join()
        _, status = os.waitpid(proc.pid, 0)
    finally:
        killer.cancel()
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert time.monotonic() - started < timeout, f"the command hung: {args}"
    return Run(proc.returncode, streams["out"].decode(errors="replace"),
               streams["err"].decode(errors="replace"), time.monotonic() - started,
               watch.peak_kb / 1024)


def files_outside(root: Path, allowed: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` that are not under one of its ``allowed`` top-level names."""
    return [p for p in root.rglob("*") if p.is_file()
            and p.relative_to(root).parts[0] not in allowed]
