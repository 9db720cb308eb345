"""Cost of incremental detection against the embedded sandbox (issue 2, "Measure").

1. A no-op ``detect`` with a state holding 100,000 records: wall time (load state, harvest the
   overlap window, decide, write the plan and the state) and HTTP requests.
2. A 10,000-record backfill within one day: wall time, search requests, records per second.
3. A 1,600-record day at the default cap (500), in detect + process cycles as the schedule runs
   them (real ``process`` over the sandbox, two workers): search requests and records per run.

The search pacing is set to what zenodo.org allows (30/min) but its sleeps are counted instead of
slept, so the figure "paced" says how long the same harvest would take against zenodo.org from
the request count alone; the wall time is the pipeline's own cost plus the sandbox's.

Run: ``python -m benchmarks.bench_detect``
"""

from __future__ import annotations

import os
import platform
import random
import tempfile
import time
from pathlib import Path

from pipeline import manifest as manifest_mod
from pipeline import sandbox as sb
from pipeline.demo import sandbox_manifest
from pipeline.detect import detect, load_plan
from pipeline.process import process
from pipeline.state import State, ingest_outcomes, records_folder
from pipeline.zenodo import ZenodoClient


def fake_state(path: Path, n: int) -> None:
    """A state of ``n`` done records, shaped as ``process`` leaves them."""
    rng = random.Random(1)
    state = State(path=path, cursor="2026-11-20T00:00:00.000000Z")
    for i in range(n):
        rid = str(10_000_000 + i)
        state.records[rid] = {
            "status": "done", "concept": str(9_000_000 + i // 2), "revision": rng.randint(1, 9),
            "updated": "2026-11-19T12:00:00+00:00", "attempts": 0, "reason": "",
            "checksums": {f"org/repo{i}-v1.zip": f"md5:{rng.getrandbits(128):032x}"},
            "images": rng.randint(1, 400), "files": rng.randint(1, 90),
            "output": f"records/{rid}.h5", "version": "1.20261119"}
    state.save()


def run_detect(m: manifest_mod.Manifest, out: Path, **kw: object) -> tuple[float, int, float, int]:
    started = time.perf_counter()
    return run_detect_state(m, State.load(m.state_path), out, started=started, **kw)


def run_detect_state(m: manifest_mod.Manifest, state: State, out: Path, *,
                     started: float | None = None, **kw: object) -> tuple[float, int, float, int]:
    slept: list[float] = []
    started = started if started is not None else time.perf_counter()
    # Sleeps are counted, not slept; the pacer's clock moves by what was "slept".
    client = ZenodoClient(m.source.zenodo, sleep=slept.append,
                          clock=lambda: time.monotonic() + sum(slept))
    plan = detect(m, state, client, out=out, **kw)
    wall = time.perf_counter() - started
    return wall, client.search_requests, sum(slept), len(plan.entries)


def main() -> None:
    os.environ["ZENODO_TOKEN"] = sb.ZENODO_TOKEN
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp, sb.Sandbox(seed=0, search_per_minute=None) as box:
        root = Path(tmp)
        m = manifest_mod.load(sandbox_manifest(
            box.url, root, overrides={"source.max_records_per_run": 20_000}))
        started = time.perf_counter()
        fake_state(m.state_path, 100_000)
        size = sum(p.stat().st_size for p in records_folder(m.state_path).glob("*.jsonl"))
        print(f"state of 100,000 records: {size / 1e6:.1f} MB of records files, "
              f"written in {time.perf_counter() - started:.2f} s")
        before = len(box.server.log)
        wall, searches, paced, planned = run_detect(m, root / "noop.json")
        print(f"no-op detect, 100,000-record state: {wall:.2f} s wall, {searches} search "
              f"request(s), {len(box.server.log) - before} HTTP request(s) in all, "
              f"{planned} planned")

        box.zenodo.add_bulk(10_000, "2026-11-18")
        m2 = manifest_mod.load(sandbox_manifest(
            box.url, root / "backfill", overrides={"source.max_records_per_run": 20_000}))
        before = len(box.server.log)
        wall, searches, paced, planned = run_detect(
            m2, root / "backfill.json", since="2026-11-18T00:00:00Z",
            until="2026-11-19T00:00:00Z")
        print(f"10,000-record backfill: {planned} planned, {wall:.2f} s wall "
              f"({planned / wall:,.0f} records/s), {searches} search requests, "
              f"{len(box.server.log) - before} HTTP requests; at zenodo.org's 30 searches/min "
              f"the pacing alone adds {paced:.0f} s")
        cycles(box, root / "cycles")


def cycles(box: sb.Sandbox, root: Path) -> None:
    """Detect + process until a 1,600-record day is done, as the scheduled runs do it."""
    box.zenodo.add_bulk(1_600, "2026-11-22")
    m = manifest_mod.load(sandbox_manifest(
        box.url, root, overrides={"source.since": "2026-11-22T00:00:00Z"}))
    workdir = root / "work"
    planned: list[str] = []
    for run in range(1, 6):
        state = State.load(m.state_path)
        ingest_outcomes(state, workdir)
        wall, searches, _, n = run_detect_state(m, state, root / "plan.json")
        planned += [e.id for e in load_plan(root / "plan.json")]
        started = time.perf_counter()
        report = process(m, State.load(m.state_path), workdir, plan_path=root / "plan.json",
                         jobs=2)
        print(f"1,600-record day, run {run} (cap {m.source.max_records_per_run}): {n} planned, "
              f"{searches} search requests, detect {wall:.2f} s, process "
              f"{time.perf_counter() - started:.1f} s ({len(report.done)} done, "
              f"{len(report.failed)} failed)")
        if not n:
            break
    software = {str(r["id"]) for r in box.zenodo.all() if r["updated"].startswith("2026-11-22")
                and r["metadata"]["resource_type"]["type"] == "software"}
    print(f"1,600-record day: {len(planned)} planned in all, {len(set(planned))} distinct, "
          f"{'every' if set(planned) == software else 'NOT every'} software record of the day")


if __name__ == "__main__":
    main()
