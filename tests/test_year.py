"""Daily cycles on fresh work folders against a Zenodo with a small per-record quota (issue 8).

Each cycle starts in a new folder holding only what the scheduled workflow commits (the state
and the feed), exactly as a GitHub Actions runner whose cache was evicted: the full pipeline
(detect, process, version, publish to Zenodo and Kaggle, notify) runs through
:func:`pipeline.orchestrate.run_all` against the embedded sandbox, whose deposit API refuses an
upload that would take a record over its byte quota or 20 files. The long version of this is
``benchmarks/bench_year.py``, which this test drives.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from pipeline.dataset import is_part, part_number
from pipeline.demo import KAGGLE_DATASET
from pipeline.loader import load_all, open_catalog
from pipeline.sandbox import Sandbox
from pipeline.state import State

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_year import simulate

QUOTA = 450_000
FILES = 20
KAGGLE = 120_000


@pytest.mark.timeout(240)
def test_six_days_on_fresh_runners_roll_volumes_over_before_the_quota(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("home", "tmp"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    kept = tmp_path / "runs" / "committed"
    with Sandbox(seed=0, search_per_minute=None, deposit_max_bytes=QUOTA,
                 deposit_max_files=FILES) as box:
        cycles = simulate(box, tmp_path / "runs", days=6, records_per_day=3,
                          zenodo_quota=QUOTA, zenodo_files=FILES, kaggle_bytes=KAGGLE,
                          report=None)
        peaks = box.deposit.peak_bytes()
        refused = list(box.deposit.refused)
        state = State.load(kept / "state" / "state.json")
        volumes = state.destinations["zenodo"]["volumes"]
        newest = volumes[str(max(int(v) for v in volumes))]
        record = requests.get(f"{box.url}/api/records/{newest['record_id']}", timeout=10).json()
        texts = {f["key"]: requests.get(f["links"]["self"], timeout=10).content
                 for f in record["files"] if f["key"] in ("catalog.json", "README.md")}
        kaggle = {n: f.size for n, f in box.kaggle.datasets[KAGGLE_DATASET].current.files.items()}
        # download every volume's newest record, one folder each, and load across them
        downloads = tmp_path / "downloads"
        for number, vol in volumes.items():
            rec = requests.get(f"{box.url}/api/records/{vol['record_id']}", timeout=10).json()
            folder = downloads / f"volume-{number}"
            folder.mkdir(parents=True)
            for f in rec["files"]:
                (folder / f["key"]).write_bytes(requests.get(f["links"]["self"],
                                                             timeout=10).content)

    assert [c.failed for c in cycles] == [[]] * 6, [c.failed for c in cycles]
    assert refused == []                                     # no upload hit the quota
    assert max(peaks.values()) <= QUOTA                      # no deposition exceeded it
    assert len(volumes) >= 2 and cycles[-1].volume >= 2      # a second volume started
    assert [c.volume for c in cycles] == sorted(c.volume for c in cycles)
    catalog = json.loads(texts["catalog.json"])
    others = [v["concept_doi"] for n, v in volumes.items() if n != str(catalog["volume"])]
    assert others and all(doi in texts["catalog.json"].decode() for doi in others)
    assert all(doi in texts["README.md"].decode() for doi in others)
    # every cycle downloads far less of the published dataset than a whole version
    for c in cycles[1:]:
        assert c.downloaded <= KAGGLE + 20_000 < c.dataset_bytes, c
    # Kaggle holds the newest parts within its budget, the catalog and the card, no more
    parts = sorted((n for n in kaggle if is_part(n)), key=part_number)
    newest = sorted((n for e in state.versions for n in e["files"] if is_part(n)),
                    key=part_number)
    assert parts and parts == newest[-len(parts):]
    assert sum(kaggle[n] + kaggle[n[:-3] + ".csv"] for n in parts) <= KAGGLE
    assert {"catalog.json", "README.md", "CHANGELOG.md"} <= set(kaggle)
    assert "SHA256SUMS" not in kaggle and max(c.kaggle_up for c in cycles) <= KAGGLE + 40_000
    # a reader holding every volume gets every live record exactly once
    live = {rid for rid, r in state.records.items() if r.get("part")}
    found = open_catalog(downloads)
    assert found is not None and len(found["volumes"]) == len(volumes)
    images = load_all(downloads)
    assert len(images) == sum(int(state.records[r]["images"]) for r in live)
    assert os.listdir(tmp_path / "runs") == ["committed"]     # every runner was thrown away
