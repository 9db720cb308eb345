"""``process`` at scale (issue 3, "Measure"): the ``--jobs 1`` to ``--jobs 2`` speed-up, and the
peak memory of one record whose archive is over 500 MB.

1. Speed-up: 16 records are put into the embedded sandbox, each a zip of about 4 MB of real
   source (slices of the interpreter's standard library), then ``detect`` plans them and
   ``process`` runs them with 1 and with 2 workers into separate work folders (each downloads its
   own copies, through the sandbox, md5-verified). Ratio of wall times, same run.
2. Memory: a ``.tar`` of more than 500 MB of source (the standard library's ``*.py`` repeated
   under different folders) is converted and stored by :func:`pipeline.store.write_record` in a
   fresh interpreter; its peak RSS is read from ``VmHWM`` in ``/proc/self/status``
   (``ru_maxrss`` would include the parent's peak, which Linux keeps across exec).

Run: ``python -m benchmarks.bench_process [--skip-memory]``
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from pipeline import sandbox as sb
from pipeline.cli import main as cli
from pipeline.demo import patched_environ, sandbox_manifest
from pipeline.sandbox.corpus import file_entry, record_json

ROOT = Path(__file__).resolve().parent.parent


def stdlib_files() -> list[tuple[str, bytes]]:
    base = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(base.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            out.append((str(path.relative_to(base)), path.read_bytes()))
        except OSError:
            continue
    return out


def put_records(box: sb.Sandbox, files: list[tuple[str, bytes]], n: int, mb: float) -> None:
    """``n`` software records, each a zip of about ``mb`` MB of source."""
    per = int(mb * 1e6)
    start = 0
    for i in range(n):
        buf, size = io.BytesIO(), 0
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            while size < per:
                name, data = files[start % len(files)]
                start += 1
                zf.writestr(f"bench-{i}/{name}", data)
                size += len(data)
        data = buf.getvalue()
        rid = box.zenodo.allocate_id()
        key = f"bench-org/bench-{i}-v1.0.zip"
        entry = file_entry(box.url, rid, key, len(data), hashlib.md5(data).hexdigest(),
                           box.zenodo.corpus.new_uuid())
        record = record_json(
            box.url, recid=rid, concept=str(rid - 1), doi_prefix="10.5281",
            created=datetime(2026, 11, 19, 10, tzinfo=UTC),
            updated=datetime(2026, 11, 19, 10, 0, i, tzinfo=UTC), revision=2,
            metadata={"title": f"bench-org/bench-{i}: v1.0", "version": "v1.0",
                      "resource_type": {"title": "Software", "type": "software"},
                      "license": {"id": "mit"}, "creators": [{"name": "Bench, Mark"}],
                      "publication_date": "2026-11-19", "related_identifiers": []},
            files=[entry], owner="1")
        box.zenodo.put(record, {key: data})


def speedup(n: int, mb: float) -> None:
    files = stdlib_files()
    with tempfile.TemporaryDirectory() as tmp, sb.Sandbox(seed=0, search_per_minute=None) as box:
        put_records(box, files, n, mb)
        times = {}
        for jobs in (1, 2):
            root = Path(tmp) / f"jobs{jobs}"
            manifest = sandbox_manifest(box.url, root)
            args = ["--manifest", str(manifest), "--workdir", str(root / "work")]
            with patched_environ(sb_env()):
                assert cli([*args, "detect", "--since", "2026-11-19T00:00:00Z",
                            "--until", "2026-11-20T00:00:00Z"]) == 0
                started = time.perf_counter()
                assert cli([*args, "process", "--jobs", str(jobs)]) == 0
                times[jobs] = time.perf_counter() - started
        source_mb = n * mb
        print(f"process {n} records of ~{mb:g} MB source each (download + verify + convert + "
              f"write): --jobs 1 {times[1]:.2f} s ({source_mb / times[1]:.1f} MB/s), --jobs 2 "
              f"{times[2]:.2f} s ({source_mb / times[2]:.1f} MB/s); speed-up "
              f"{times[1] / times[2]:.2f}x")


def sb_env() -> dict[str, str]:
    return {"ZENODO_TOKEN": sb.ZENODO_TOKEN}


MEMORY_SCRIPT = """
import sys
from pathlib import Path
from pipeline.manifest import default_processing
from pipeline.store import SourceArchive, write_record
archive = Path(sys.argv[1])
out = write_record(Path(sys.argv[2]), "1", [SourceArchive("big.tar", archive)],
                   processing=default_processing())
# VmHWM: this process's own peak (ru_maxrss would include the parent's, kept across exec).
status = Path("/proc/self/status").read_text()
print(out.source_bytes, out.images, out.hdf5_bytes,
      next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
"""


def memory(target_mb: int) -> None:
    files = stdlib_files()
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "big.tar"
        written, copy = 0, 0
        with tarfile.open(archive, "w") as tf:
            while written < target_mb * 1e6:
                for name, data in files:
                    info = tarfile.TarInfo(f"copy{copy}/{name}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
                    written += len(data)
                copy += 1
        size = archive.stat().st_size
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(archive),
                               str(Path(tmp) / "out")], cwd=ROOT, capture_output=True,
                              text=True, check=True)
        wall = time.perf_counter() - started
        source, images, h5_bytes, peak_kib = map(int, done.stdout.split())
        print(f"one record, archive {size / 1e6:.0f} MB ({source / 1e6:.0f} MB converted, "
              f"{images} images, HDF5 {h5_bytes / 1e6:.0f} MB): peak RSS (VmHWM) "
              f"{peak_kib / 1024:.0f} MiB, {wall:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=16)
    parser.add_argument("--mb", type=float, default=4.0, help="source MB per record")
    parser.add_argument("--memory-mb", type=int, default=520)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    speedup(args.records, args.mb)
    if not args.skip_memory:
        memory(args.memory_mb)


if __name__ == "__main__":
    main()
