"""The state at a million records (issue 8, "state that stays small in git").

1. Writes a state of 1,000,000 done records shaped as ``process`` and ``version`` leave them
   (consecutive ids: the densest case, 10,000 records in every records file): largest file,
   total size, time to write, time to read every record.
2. A no-op ``detect`` with that state against the embedded sandbox (load, harvest the overlap
   window, decide, write plan and state): wall time and records files read.
3. Commits the state in a temporary git repository, simulates a 2,000-record day (1,950 new
   records, 50 updated ones, all assigned to the day's version) and measures the commit's diff
   with a real ``git diff --stat`` / ``git diff --numstat``.

Run: ``python -m benchmarks.bench_state``
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from pipeline import manifest as manifest_mod
from pipeline import sandbox as sb
from pipeline.demo import sandbox_manifest
from pipeline.detect import detect
from pipeline.state import State, records_folder
from pipeline.zenodo import ZenodoClient, format_ts, parse_ts

N = 1_000_000
FIRST_ID = 10_000_000


def entry(rng: random.Random, i: int, version: str) -> dict:
    """A done record as ``State.apply_outcome`` and ``version`` leave it."""
    rid = FIRST_ID + i
    return {"status": "done", "concept": str(9_000_000 + i // 2), "revision": rng.randint(1, 9),
            "updated": "2026-11-19T12:00:00.123456+00:00", "attempts": 0, "reason": "",
            "checksums": {f"org/repo{i}-v1.2.{i % 10}.zip": f"md5:{rng.getrandbits(128):032x}"},
            "images": rng.randint(1, 400), "files": rng.randint(1, 90),
            "output": f"records/{rid}.h5", "sha256": f"sha256:{rng.getrandbits(256):064x}",
            "version": version}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def main() -> None:
    os.environ["ZENODO_TOKEN"] = sb.ZENODO_TOKEN
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp, sb.Sandbox(seed=0, search_per_minute=None) as box:
        root = Path(tmp)
        m = manifest_mod.load(sandbox_manifest(box.url, root))
        # The sandbox's own records, done, with the cursor just past the newest: the no-op
        # detect's overlap window then holds a done record, whose file it must read.
        client = ZenodoClient(m.source.zenodo, sleep=lambda s: None)
        seen = detect(m, State(path=root / "scratch" / "state.json"), client,
                      out=root / "scratch" / "plan.json", now=box.zenodo.now())
        state = State(path=m.state_path)
        for e in seen.entries:
            state.records[e.id] = {"status": "done", "revision": e.record["revision"],
                                   "checksums": {f["key"]: f["checksum"]
                                                 for f in e.record["files"]}}
        newest = max(parse_ts(e.record["updated"]) for e in seen.entries)
        state.cursor = format_ts(newest + timedelta(minutes=1))
        for i in range(N):
            state.records[str(FIRST_ID + i)] = entry(rng, i, f"{1 + i // 2_000}.2026")
        assert str(FIRST_ID) not in {e.id for e in seen.entries}
        started = time.perf_counter()
        state.save()
        wrote = time.perf_counter() - started
        files = sorted(records_folder(m.state_path).glob("*.jsonl"))
        sizes = [p.stat().st_size for p in files]
        print(f"state of {N:,} records: {len(files)} records files, largest "
              f"{max(sizes) / 1e6:.1f} MB, total {sum(sizes) / 1e6:.0f} MB "
              f"({sum(sizes) / N:.0f} bytes/record); state.json "
              f"{m.state_path.stat().st_size / 1e3:.0f} kB; written in {wrote:.1f} s")

        started = time.perf_counter()
        loaded = State.load(m.state_path)
        head = time.perf_counter() - started
        counts = loaded.counts()
        started = time.perf_counter()
        loaded.records.load_all()
        every = time.perf_counter() - started
        print(f"load: state.json {head * 1000:.0f} ms ({counts['done']:,} done from the "
              f"summaries); every record {every:.1f} s (what `version` pays)")

        started = time.perf_counter()
        noop = State.load(m.state_path)
        client = ZenodoClient(m.source.zenodo, sleep=lambda s: None)
        plan = detect(m, noop, client, out=root / "noop.json", now=box.zenodo.now())
        wall = time.perf_counter() - started
        print(f"no-op detect: {wall:.2f} s wall, {client.search_requests} search request(s), "
              f"{len(plan.entries)} planned, {len(noop.records._files)} records file(s) read")
        started = time.perf_counter()
        one = State.load(m.state_path)
        one.records.get(str(FIRST_ID + N // 2))
        print(f"one lookup in a full records file (10,000 records): "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")

        repo = root
        git(repo, "init", "-q")
        git(repo, "config", "user.email", "bench@example.org")
        git(repo, "config", "user.name", "bench")
        started = time.perf_counter()
        git(repo, "add", "state")
        git(repo, "commit", "-q", "-m", "a million records")
        print(f"initial commit: {time.perf_counter() - started:.1f} s")

        day = State.load(m.state_path)
        version = "501.20261129"
        for i in range(N, N + 1_950):  # new records: the next ids
            day.records[str(FIRST_ID + i)] = entry(rng, i, version)
        for i in rng.sample(range(N), 50):  # updated records, anywhere in the id range
            day.records[str(FIRST_ID + i)] = entry(rng, i, version)
        day.cursor = "2026-11-29T00:00:00.000000Z"
        day.versions.append({"version": version, "created": "2026-11-29T06:00:00Z"})
        started = time.perf_counter()
        day.save()
        saved = time.perf_counter() - started
        git(repo, "add", "-A", "state")  # as the commit job does; new records files included
        numstat = git(repo, "diff", "--cached", "--numstat").splitlines()
        added = sum(int(line.split()[0]) for line in numstat)
        removed = sum(int(line.split()[1]) for line in numstat)
        patch = git(repo, "diff", "--cached")
        print(f"a 2,000-record day: saved in {saved:.2f} s, {len(numstat)} file(s) changed, "
              f"+{added:,} -{removed:,} lines, patch {len(patch.encode()) / 1e3:.0f} kB")
        print("git diff --cached --stat: "
              + git(repo, "diff", "--cached", "--stat").splitlines()[-1].strip())


if __name__ == "__main__":
    main()
