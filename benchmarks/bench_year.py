"""A simulated year: many daily cycles against the sandbox with every limit scaled down, each on a
fresh work folder that keeps only the committed files (the state folder and the feed), as a
GitHub Actions runner does. Prints one row per cycle; every column must stay flat.

Why: the costs that grow with the whole dataset (issue 8) only show after many versions, and a
CI runner starts from nothing but the repository. Scaling every limit down (records a day, the
Zenodo quota per record, files per record, the Kaggle budget) makes a year of volumes roll over
in minutes while exercising exactly the production code paths over real sockets: detect, process,
version, publish to Zenodo and Kaggle (the real ``kaggle`` client), notify.

Columns: search requests; bytes of the *published dataset* downloaded (part indexes to rewrite,
Kaggle parts not written this cycle); bytes uploaded to Zenodo and to Kaggle; peak disk of the
work folder (sampled every 20 ms); wall time; size of the state folder; volume; dataset size.

    python benchmarks/bench_year.py [--days 365] [--records-per-day 3]
        [--zenodo-quota 2000000] [--zenodo-files 100] [--kaggle-bytes 900000]

The defaults keep production's ratios: a day's part is about 1/22 of a volume (2 GB a day,
45 GB a volume), so volumes roll over on bytes before files; the Kaggle budget is 20/45 of a
volume; a plan holds at most twice a day's records (the initial corpus drains in a few days).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.dataset import max_parts_per_volume
from pipeline.demo import patched_environ, sandbox_environ, sandbox_manifest
from pipeline.manifest import load
from pipeline.orchestrate import Context, StageResult, run_all
from pipeline.sandbox import Sandbox
from pipeline.sandbox.kaggle import BLOB_PATH
from pipeline.state import State

COMMITTED = ("state", "feed")   # what the scheduled workflow commits back, so a runner has it


@dataclass
class Cycle:
    day: int
    new_records: int
    search_requests: int
    downloaded: int       # bytes of the published dataset fetched from Zenodo
    zenodo_up: int
    kaggle_up: int
    peak_disk: int
    seconds: float
    state_bytes: int
    volume: int
    dataset_bytes: int    # every volume's current size, for comparison
    failed: list[str]


def tree_bytes(folder: Path) -> int:
    """Bytes of the files below ``folder``, each hard-linked file counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):   # removed while walking
                st = os.lstat(os.path.join(root, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


@contextmanager
def peak_disk(folder: Path, interval: float = 0.02) -> Iterator[list[int]]:
    """Sample the size of ``folder`` in a thread; the list holds the peak when done."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_bytes(folder))
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], tree_bytes(folder))


def scaled_manifest(url: str, folder: Path, *, zenodo_quota: int, zenodo_files: int,
                    kaggle_bytes: int, max_records: int) -> Path:
    """The demo's manifest with every limit scaled down to the sandbox's."""
    return sandbox_manifest(url, folder, overrides={
        "source.zenodo.search_requests_per_minute": 6000,
        "source.max_records_per_run": max_records,
        # a simulated day lasts seconds: the harvest overlap (10 minutes of a real day) scaled
        # to a fraction of a second, or every cycle would re-read the last minutes' records
        "source.overlap_minutes": 0.01,
        "dataset.max_parts": max_parts_per_volume(90, max_files=zenodo_files),
        "destinations.zenodo.volume_max_bytes": zenodo_quota,
        "destinations.kaggle.max_bytes": kaggle_bytes,
        "destinations.kaggle.status_timeout_seconds": 60,
    })


def volume_sizes(state: State) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for entry in state.versions:
        sizes[int(entry.get("volume") or 1)] = sum(entry["sizes"].values())
    return sizes


def simulate(box: Sandbox, root: Path, *, days: int, records_per_day: int, zenodo_quota: int,
             zenodo_files: int, kaggle_bytes: int, report: Any = None) -> list[Cycle]:
    """Run ``days`` cycles; each starts in a new folder holding only the committed files."""
    carried = root / "committed"
    carried.mkdir(parents=True, exist_ok=True)
    cycles: list[Cycle] = []
    with patched_environ(sandbox_environ(box.url)):
        for day in range(1, days + 1):
            if day > 1:
                box.zenodo.add_records(records_per_day)
            runner = root / f"runner-{day}"
            shutil.copytree(carried, runner)
            manifest = load(scaled_manifest(box.url, runner, zenodo_quota=zenodo_quota,
                                            zenodo_files=zenodo_files,
                                            kaggle_bytes=kaggle_bytes,
                                            max_records=2 * records_per_day))
            ctx = Context(manifest=manifest, workdir=runner / "work", sleep=lambda s: None)
            failed: list[str] = []

            def on_stage(result: StageResult, failed: list[str] = failed) -> None:
                if not result.ok:
                    failed.append(f"{result.name}: {result.text}")

            before = len(State.load(manifest.state_path).versions)
            start = len(box.server.log)
            t0 = time.perf_counter()
            with peak_disk(runner / "work") as peak:
                ok = run_all(ctx, on_stage=on_stage)
            seconds = time.perf_counter() - t0
            log = box.server.log[start:]
            state = State.load(manifest.state_path)
            cycles.append(Cycle(
                day=day, new_records=sum(int(state.versions[-1]["counts"].get(k, 0))
                                         for k in ("added", "updated"))
                if len(state.versions) > before else 0,
                search_requests=ctx.stats.search_requests,
                downloaded=ctx.stats.published_bytes_downloaded,
                zenodo_up=sum(e["bytes_in"] for e in log if e["method"] == "PUT"
                              and e["path"].startswith("/api/files/")),
                kaggle_up=sum(e["bytes_in"] for e in log if e["path"].startswith(BLOB_PATH)),
                peak_disk=peak[0], seconds=seconds, state_bytes=tree_bytes(runner / "state"),
                volume=int(state.versions[-1].get("volume") or 1) if state.versions else 0,
                dataset_bytes=sum(volume_sizes(state).values()),
                failed=failed if not ok or failed else []))
            shutil.rmtree(carried)
            carried.mkdir()
            for name in COMMITTED:
                if (runner / name).exists():
                    shutil.copytree(runner / name, carried / name)
            shutil.rmtree(runner)     # the runner is gone; only the committed files remain
            if report is not None:
                report(cycles[-1])
    return cycles


HEADER = ("day", "new", "searches", "downloaded", "zenodo_up", "kaggle_up", "peak_disk", "seconds",
          "state_bytes", "volume", "dataset_bytes")


def row(c: Cycle) -> str:
    values = (c.day, c.new_records, c.search_requests, c.downloaded, c.zenodo_up, c.kaggle_up,
              c.peak_disk, f"{c.seconds:.2f}", c.state_bytes, c.volume, c.dataset_bytes)
    return " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in values) + (
        "  FAILED: " + "; ".join(c.failed) if c.failed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--records-per-day", type=int, default=3)
    parser.add_argument("--zenodo-quota", type=int, default=2_000_000)
    parser.add_argument("--zenodo-files", type=int, default=100)
    parser.add_argument("--kaggle-bytes", type=int, default=900_000)
    args = parser.parse_args()
    import logging
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, \
            Sandbox(seed=0, search_per_minute=None, deposit_max_bytes=args.zenodo_quota,
                    deposit_max_files=args.zenodo_files) as box:
        root = Path(tmp)
        for name in ("home", "tmp"):
            (root / name).mkdir()
        os.environ.update(HOME=str(root / "home"), TMPDIR=str(root / "tmp"),
                          NO_PROXY="127.0.0.1,localhost")
        tempfile.tempdir = str(root / "tmp")
        print(" | ".join(HEADER), flush=True)
        cycles = simulate(box, root, days=args.days, records_per_day=args.records_per_day,
                          zenodo_quota=args.zenodo_quota, zenodo_files=args.zenodo_files,
                          kaggle_bytes=args.kaggle_bytes,
                          report=lambda c: print(row(c), flush=True))
        peaks = box.deposit.peak_bytes()
        refused = list(box.deposit.refused)
    later = cycles[1:]
    print(f"\n{len(cycles)} cycles, {len([c for c in cycles if c.failed])} failed; volumes: "
          f"{cycles[-1].volume}; largest deposition {max(peaks.values()):,} bytes (quota "
          f"{args.zenodo_quota:,}); quota refusals: {len(refused)}")
    for name in ("search_requests", "downloaded", "zenodo_up", "kaggle_up", "peak_disk",
                 "state_bytes"):
        values = [getattr(c, name) for c in later]
        half = len(values) // 2
        first, second = values[:half] or [0], values[half:] or [0]
        print(f"{name}: max {max(values):,}; mean first half {sum(first) / len(first):,.0f}, "
              f"second half {sum(second) / len(second):,.0f}")
    secs = [c.seconds for c in later]
    print(f"seconds: mean {sum(secs) / len(secs):.2f}, max {max(secs):.2f}; dataset at the end "
          f"{cycles[-1].dataset_bytes:,} bytes")


if __name__ == "__main__":
    main()
