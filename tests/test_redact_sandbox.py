"""Must-show of issue 10: a sandbox record whose archive plants a fake secret of every kind goes
through ``python -m pipeline run``; what both destinations serve afterwards, decoded back to text,
holds none of the planted values; the record's metadata lists one redaction per planted secret;
index, card, feed, notifications and logs carry counts only."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import requests

from pipeline.code_images import read_metadata
from pipeline.demo import sandbox_environ, sandbox_manifest
from pipeline.loader import iter_images
from pipeline.manifest import load
from pipeline.sandbox import KAGGLE_KEY, KAGGLE_USERNAME, Sandbox
from pipeline.sandbox.secrets import Planted
from pipeline.state import State

ROOT = Path(__file__).resolve().parent.parent
RPC = "/api/v1/datasets.DatasetApiService/"


def _texts(folder: Path) -> dict[str, str]:
    """Every file of every record of a version folder, decoded from its images back to text."""
    out = {}
    for entry, pages in iter_images(folder):
        rows = np.concatenate(list(pages)) if len(pages) else np.empty((0, 80), np.uint8)
        out[f"{entry.record_id}:{entry.path}"] = "\n".join(
            "".join(map(chr, row)).rstrip() for row in rows)
    return out


def _inside(path: str) -> str:
    """A record file's path inside its release (without the archive key and top folder)."""
    return path.split(".zip/", 1)[1].split("/", 1)[1]


def _leaks(planted: list[Planted], text: str) -> list[str]:
    return [f"{p.kind}: {v[:6]}..." for p in planted for v in p.values if v in text]


@pytest.mark.timeout(240)
def test_planted_secrets_never_reach_either_destination(sandbox: Sandbox, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    record, planted = sandbox.zenodo.add_planted_secrets()
    rid = str(record["id"])
    assert len({p.kind for p in planted}) == len(planted) >= 25
    manifest = sandbox_manifest(sandbox.url, tmp_path / "project")
    env = {**sandbox_environ(sandbox.url), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pipeline", "--manifest", str(manifest),
                           "--workdir", str(tmp_path / "work"), "-v", "run", "--record", rid],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _leaks(planted, done.stdout + done.stderr) == []

    for key, value in sandbox_environ(sandbox.url).items():
        monkeypatch.setenv(key, value)
    config = load(manifest)
    state = State.load(config.state_path)
    entry = state.latest_version
    assert entry is not None
    # The published Zenodo record, downloaded file by file as a reader would (one volume: the
    # whole dataset, carried parts included).
    published = requests.get(f"{sandbox.url}/api/records/"
                             f"{entry['published']['zenodo']['record_id']}", timeout=30).json()
    from_zenodo = tmp_path / "zenodo"
    from_zenodo.mkdir()
    for f in published["files"]:
        got = requests.get(f["links"]["self"], timeout=60)
        assert got.status_code == 200
        (from_zenodo / f["key"]).write_bytes(got.content)
    zipped = requests.post(f"{sandbox.url}{RPC}DownloadDataset", timeout=30,
                           auth=(KAGGLE_USERNAME, KAGGLE_KEY),
                           json={"ownerSlug": KAGGLE_USERNAME,
                                 "datasetSlug": config.destinations.kaggle.dataset.split("/")[1]})
    assert zipped.status_code == 200
    from_kaggle = tmp_path / "kaggle"
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        archive.extractall(from_kaggle)

    planted_paths = {p.path for p in planted}
    for folder in (from_zenodo, from_kaggle):
        texts = _texts(folder)
        mine = {k: v for k, v in texts.items() if k.startswith(f"{rid}:")}
        # every planted file was converted (and so was scanned), and nothing of a value is left
        assert {_inside(k) for k in mine} >= planted_paths
        assert _leaks(planted, "\n".join(texts.values())) == []
        # what was masked is still code: the lines around a secret are intact
        settings = next(v for k, v in mine.items() if k.endswith("settings.py"))
        assert 'GITHUB_TOKEN = "' in settings and "*" * 40 in settings

        part = next(p for p in sorted(folder.glob("part-*.h5")))
        with h5py.File(part) as h5:
            meta = read_metadata(h5[f"records/{rid}"])   # stored gzip-compressed
        redactions = meta["redactions"]
        assert meta["redaction"]["policy"] == "secrets"
        assert meta["redaction"]["count"] == len(redactions) == len(planted)
        listed = sorted((_inside(r["path"]), r["line"]) for r in redactions)
        assert listed == sorted((p.path, p.line) for p in planted)
        assert all(set(r) == {"path", "line", "column", "end_line", "end_column", "chars", "rule"}
                   for r in redactions)
        assert _leaks(planted, json.dumps(meta)) == []

        # index, card, and every other published text: counts, never a value
        rows = {row["id"]: row for index in sorted(folder.glob("part-*.csv"))
                for row in csv.DictReader(io.StringIO(index.read_text(encoding="utf-8")))}
        assert rows[rid]["redactions"] == str(len(planted))
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert f"**{len(planted)}** values are masked" in card
        for name in os.listdir(folder):
            if not name.endswith((".h5", ".png")):
                assert _leaks(planted, (folder / name).read_text(encoding="utf-8")) == [], name

    feed = (manifest.parent / "feed" / "dataset.atom").read_text(encoding="utf-8")
    assert _leaks(planted, feed) == []
    deliveries = sandbox.hooks.deliveries()
    assert deliveries
    assert _leaks(planted, "\n".join(d.body.decode("utf-8", "replace") for d in deliveries)) == []
