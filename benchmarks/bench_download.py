"""Download throughput of :func:`pipeline.fetch.fetch` (issue 13: the deadline-checked ``read1``
loop of :func:`pipeline.http.iter_body`) against what ``fetch`` did before (a plain
``iter_content`` loop, then md5 + sha256 of the file), same server, same run, as a ratio.

Why: a deadline can only be checked between reads if a read returns what one ``recv`` brought;
``read1`` does, ``iter_content`` fills whole 1 MiB blocks. Smaller reads mean more Python
iterations per byte; this measures what that costs on a fast local connection (the worst case:
on a real network the wire is far slower than either loop).

Run: ``python -m benchmarks.bench_download [--mib 256] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from pipeline.fetch import DownloadLimits, Source, fetch
from pipeline.fsutil import file_digests
from pipeline.http import HttpClient


def serve(data: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            view = memoryview(data)
            for i in range(0, len(data), 1 << 20):
                self.wfile.write(view[i:i + (1 << 20)])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(args.mib << 20)
    server = serve(data)
    url = f"http://127.0.0.1:{server.server_address[1]}/a.zip"
    md5 = "md5:" + hashlib.md5(data).hexdigest()
    times: dict[str, list[float]] = {"fetch (read1 + deadline)": [], "plain iter_content": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            cache = Path(tmp) / f"c{r}"
            started = time.perf_counter()
            fetch(HttpClient(service="bench"), Source("a.zip", url, md5, len(data), "zenodo"),
                  cache, record="1", max_bytes=len(data), limits=DownloadLimits(len(data)))
            times["fetch (read1 + deadline)"].append(time.perf_counter() - started)
            started = time.perf_counter()
            with requests.get(url, stream=True, timeout=30) as response, \
                    open(Path(tmp) / f"plain{r}", "wb") as out:
                for block in response.iter_content(1 << 20):
                    out.write(block)
            file_digests(Path(tmp) / f"plain{r}", ("md5", "sha256"))  # as fetch does
            times["plain iter_content"].append(time.perf_counter() - started)
    server.shutdown()
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {args.mib} MiB, best of {args.rounds}")
    best = {k: min(v) for k, v in times.items()}
    for name, seconds in best.items():
        print(f"  {name:28s} {seconds:6.2f} s  {args.mib / seconds:7.1f} MiB/s")
    ratio = best["fetch (read1 + deadline)"] / best["plain iter_content"]
    print(f"  ratio fetch / plain: {ratio:.2f} (both write the file, then hash it: md5 + sha256)")


if __name__ == "__main__":
    main()
