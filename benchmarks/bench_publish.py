"""Bytes uploaded per destination, and wall time of ``version`` + ``publish``, for a version that
adds 1% new records to a dataset of 10,000 records (both destinations in the embedded sandbox).

Why: the point of carrying parts over (pipeline/version.py) is that a new Zenodo version uploads
only new bytes (ZENODO_API.md §5.3: newversion inherits the files); this measures it end to end
through the real code paths, over real sockets. Kaggle's client re-uploads every file of a new
version (KAGGLE_PROTOCOL.md §3.2), so its bytes depend on ``destinations.kaggle.files``.

Records are produced by the real ``store.write_record`` for a pool of distinct small archives and
cloned under new ids (conversion speed is benchmarked elsewhere); each clone is a valid record
output with its own state entry and checksum.

    python benchmarks/bench_publish.py [--records 10000] [--new-percent 1]
                                       [--kaggle-files all|latest-parts] [--no-kaggle]
                                       [--kaggle-bytes N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.fsutil import file_digest
from pipeline.manifest import Manifest, from_dict, validate
from pipeline.publish import publish
from pipeline.sandbox import KAGGLE_KEY, KAGGLE_USERNAME, ZENODO_TOKEN, Sandbox
from pipeline.sandbox.kaggle import BLOB_PATH
from pipeline.state import State
from pipeline.store import SourceArchive, write_record
from pipeline.version import build_version

POOL = 40


def _manifest(workdir: Path, url: str, kaggle_files: str, kaggle: bool,
              kaggle_bytes: int) -> Manifest:
    destinations: dict[str, Any] = {"zenodo": {"url": url}}
    if kaggle:
        destinations["kaggle"] = {"dataset": f"{KAGGLE_USERNAME}/code-images-bench",
                                  "api_url": url, "files": kaggle_files,
                                  "max_bytes": kaggle_bytes}
    data = {"dataset": {"title": "Code Images benchmark", "description": "Benchmark data.",
                        "creators": [{"name": "Bench, Mark"}]},
            "destinations": destinations}
    return from_dict(validate(data), path=workdir / "data_manifest.yaml")


def _pool(workdir: Path, manifest: Manifest) -> list[Path]:
    """``POOL`` distinct record outputs written by the real store."""
    rng = random.Random(0)
    folder = workdir / "pool"
    outputs = []
    for i in range(POOL):
        archive = workdir / "archives" / f"{i}.zip"
        archive.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(archive, "w") as zf:
            for j in range(rng.randint(2, 6)):
                zf.writestr(f"tool-{i}/src/m{j}.py", "".join(
                    f"def f{k}(x):\n    return x * {rng.random()!r}\n"
                    for k in range(rng.randint(20, 200))))
        out = write_record(folder, f"p{i}", [SourceArchive(f"tool-{i}.zip", archive)],
                           processing=manifest.processing, record={"title": f"Tool {i}"})
        outputs.append(out.hdf5)
    return outputs


def _add(workdir: Path, state: State, pool: list[Path], ids: range) -> None:
    records = workdir / "records"
    records.mkdir(exist_ok=True)
    for n in ids:
        rid = str(n)
        source = pool[n % len(pool)]
        shutil.copyfile(source, records / f"{rid}.h5")
        meta = json.loads(source.with_suffix(".json").read_text())
        meta["record"] = {"id": n, "conceptrecid": str(n), "doi": f"10.5281/zenodo.{n}",
                          "title": f"Tool {n}", "metadata": {"version": "v1"}}
        meta.pop("hdf5", None)
        (records / f"{rid}.json").write_text(json.dumps(meta))
        state.apply_outcome({
            "id": rid, "status": "done", "concept": rid, "revision": 1, "attempts": 0,
            "updated": "2026-11-20T00:00:00+00:00", "checksums": {}, "reason": "",
            "images": meta["counts"]["images"], "files": meta["counts"]["converted"],
            "output": f"records/{rid}.h5", "metadata": f"records/{rid}.json",
            "sha256": file_digest(records / f"{rid}.h5"), "processed_at": "2026-11-20T00:00:00Z"})


def _round(sandbox: Sandbox, manifest: Manifest, state: State, workdir: Path, day: int
           ) -> dict[str, Any]:
    start = len(sandbox.server.log)
    t0 = time.perf_counter()
    built = build_version(manifest, state, workdir, now=datetime(2026, 11, day, tzinfo=UTC))
    written = sum(built.sizes[n] for n in built.written) if built else 0
    t1 = time.perf_counter()
    report = publish(manifest, state, workdir, sleep=lambda s: None)
    t2 = time.perf_counter()
    if built is None or report.failed:
        raise SystemExit(f"benchmark round failed:\n{report.text()}")
    log = sandbox.server.log[start:]
    zenodo = sum(e["bytes_in"] for e in log if e["method"] == "PUT"
                 and e["path"].startswith("/api/files/"))
    kaggle = sum(e["bytes_in"] for e in log if e["path"].startswith(BLOB_PATH))
    return {"version": built.version, "records": built.counts["records"], "written": written,
            "dataset_bytes": sum(built.sizes.values()), "zenodo_bytes": zenodo,
            "kaggle_bytes": kaggle, "version_s": round(t1 - t0, 2),
            "publish_s": round(t2 - t1, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--new-percent", type=float, default=1.0)
    parser.add_argument("--kaggle-files", choices=("all", "latest-parts"), default="all")
    parser.add_argument("--no-kaggle", action="store_true")
    parser.add_argument("--kaggle-bytes", type=int, default=20_000_000_000,
                        help="destinations.kaggle.max_bytes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            Sandbox(seed=0, search_per_minute=None, concepts=1) as sandbox:
        root = Path(tmp)
        for name in ("home", "tmp"):
            (root / name).mkdir()
        os.environ.update(HOME=str(root / "home"), TMPDIR=str(root / "tmp"),
                          NO_PROXY="127.0.0.1,localhost", ZENODO_PUBLISH_TOKEN=ZENODO_TOKEN,
                          KAGGLE_USERNAME=KAGGLE_USERNAME, KAGGLE_KEY=KAGGLE_KEY)
        tempfile.tempdir = str(root / "tmp")
        workdir = root / "work"
        workdir.mkdir()
        manifest = _manifest(workdir, sandbox.url, args.kaggle_files, not args.no_kaggle,
                             args.kaggle_bytes)
        state = State(path=workdir / "state.json")
        pool = _pool(root, manifest)
        _add(workdir, state, pool, range(1, args.records + 1))
        first = _round(sandbox, manifest, state, workdir, 21)
        new = max(1, round(args.records * args.new_percent / 100))
        _add(workdir, state, pool, range(args.records + 1, args.records + new + 1))
        second = _round(sandbox, manifest, state, workdir, 22)
    header = ("version", "records", "dataset_bytes", "written", "zenodo_bytes", "kaggle_bytes",
              "version_s", "publish_s")
    print(" | ".join(header))
    for row in (first, second):
        print(" | ".join(f"{row[h]:,}" if isinstance(row[h], int) else str(row[h])
                         for h in header))
    share = second["zenodo_bytes"] / second["dataset_bytes"]
    print(f"\nversion {second['version']} adds {new} records ({args.new_percent}%): Zenodo "
          f"received {second['zenodo_bytes']:,} bytes ({share:.1%} of the dataset), Kaggle "
          f"{second['kaggle_bytes']:,} (files: {args.kaggle_files}).")


if __name__ == "__main__":
    main()
