"""detect + process against the embedded sandbox: fallback, multi-archive, bad records, shards,
the download cache and Range resume, and a run killed with SIGKILL that resumes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import pytest

from pipeline import sandbox as sb
from pipeline.cli import main
from pipeline.demo import sandbox_manifest
from pipeline.fetch import Source, cache_path, fetch
from pipeline.http import HttpClient
from pipeline.process import in_shard

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sandbox: sb.Sandbox) -> dict[str, str]:
    monkeypatch.setenv("ZENODO_TOKEN", sb.ZENODO_TOKEN)
    return {"ZENODO_TOKEN": sb.ZENODO_TOKEN}


def cli(tmp_path: Path, *args: str) -> int:
    return main(["--manifest", str(tmp_path / "data_manifest.yaml"), "--workdir",
                 str(tmp_path / "work"), *args])


def plan_ids(tmp_path: Path) -> list[str]:
    return [r["id"] for r in json.loads((tmp_path / "work" / "plan.json").read_text())["records"]]


def outcomes(tmp_path: Path) -> dict[str, dict]:
    folder = tmp_path / "work" / "outcomes"
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert cli(tmp_path, "status", "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_detect_then_process_end_to_end_with_fallback_and_multi_archive(
        sandbox: sb.Sandbox, tmp_path: Path, env: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    # From January: the corpus's multi-archive record is an older version.
    sandbox_manifest(sandbox.url, tmp_path, overrides={"source.since": "2026-01-01T00:00:00Z"})
    assert cli(tmp_path, "detect") == 0
    ids = plan_ids(tmp_path)
    assert cli(tmp_path, "process", "--jobs", "2") == 0
    info = status(tmp_path, capsys)
    assert info["counts"]["done"] == len(ids) and info["counts"]["failed"] == 0
    assert info["pending"] == 0
    records = tmp_path / "work" / "records"
    fallback = multi = 0
    for rid in ids:
        meta = json.loads((records / f"{rid}.json").read_text())
        assert meta["record"]["id"] == int(rid)  # Zenodo's own JSON is kept
        keys = [s["key"] for s in meta["sources"]]
        with h5py.File(records / f"{rid}.h5") as h5:
            paths = [p.decode() if isinstance(p, bytes) else p for p in h5["files"]["path"]]
            assert h5["images"].shape[1:] == (80, 80)
            assert len(h5["images"]) == meta["counts"]["images"] > 0
        # Every file sits under the key of the archive it came from.
        assert all(any(p.startswith(k.strip("/") + "/") for k in keys) for p in paths)
        if keys[0].startswith("github:"):
            fallback += 1
            assert not any(k.endswith((".zip", ".tar.gz")) for k in
                           (f["key"] for f in meta["record"]["files"]))
        if len(keys) > 1:
            multi += 1
            assert all(any(p.startswith(k + "/") for p in paths) for k in keys)
    assert fallback >= 1 and multi >= 1
    github_gets = [e for e in sandbox.server.requests("GET") if "/tar.gz/" in e["path"]]
    assert len(github_gets) == fallback


def _tamper(sandbox: sb.Sandbox, record_id: int) -> None:
    """Serve different bytes than the record's md5 says (a corrupted file on Zenodo)."""
    record = sandbox.zenodo.get(record_id)
    key = next(f["key"] for f in record["files"] if f["key"].endswith((".zip", ".tar.gz")))
    data = bytearray(sandbox.zenodo.file_bytes(record_id, key))
    data[len(data) // 2] ^= 0xFF
    blobs = {f["key"]: sandbox.zenodo.file_bytes(record_id, f["key"]) for f in record["files"]}
    blobs[key] = bytes(data)
    sandbox.zenodo.put(record, blobs)


def _hostile(sandbox: sb.Sandbox, record_id: int, tmp_path: Path) -> None:
    """Replace a record's archive by one whose member climbs out of the tree."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("repo/ok.py", "print('fine')\n")
        zf.writestr(f"../../../../{tmp_path.name}-escaped.txt", "owned\n")
    data = buf.getvalue()
    record = sandbox.zenodo.get(record_id)
    blobs = {f["key"]: sandbox.zenodo.file_bytes(record_id, f["key"]) for f in record["files"]}
    entry = next(f for f in record["files"] if f["key"].endswith(".zip"))
    entry["size"] = len(data)
    entry["checksum"] = "md5:" + hashlib.md5(data).hexdigest()
    blobs[entry["key"]] = data
    sandbox.zenodo.put(record, blobs)


def test_a_checksum_mismatch_or_hostile_archive_fails_only_its_record(
        sandbox: sb.Sandbox, tmp_path: Path, env: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    zips = [r for r in sandbox.zenodo.all() if r["updated"] >= "2026-11"
            and r["metadata"]["resource_type"]["type"] == "software"
            and any(f["key"].endswith(".zip") for f in r["files"])]
    bad_md5, hostile = zips[0]["id"], zips[1]["id"]
    _tamper(sandbox, bad_md5)
    _hostile(sandbox, hostile, tmp_path)
    sandbox_manifest(sandbox.url, tmp_path)
    assert cli(tmp_path, "detect") == 0
    assert cli(tmp_path, "process") == 1  # a stage failed for some records; the rest is kept
    info = status(tmp_path, capsys)
    failed = {f["id"]: f for f in info["failed"]}
    assert set(failed) == {str(bad_md5), str(hostile)}
    assert "checksum" in failed[str(bad_md5)]["reason"] and "md5:" in \
        failed[str(bad_md5)]["reason"]
    assert ".." in failed[str(hostile)]["reason"]
    assert all(f["attempts"] == 1 for f in failed.values())
    assert info["counts"]["done"] == len(plan_ids(tmp_path)) - 2
    assert not list(tmp_path.parent.glob(f"{tmp_path.name}-escaped.txt"))
    assert not (tmp_path / "work" / "records" / f"{hostile}.h5").exists()
    # The bad bytes were not kept in the cache; the next run retries both.
    assert cli(tmp_path, "detect") == 0
    plan = json.loads((tmp_path / "work" / "plan.json").read_text())
    assert {r["id"]: r["action"] for r in plan["records"]} == {
        str(bad_md5): "retry", str(hostile): "retry"}


def test_downloads_are_cached_by_checksum_and_resumed_with_range(
        sandbox: sb.Sandbox, tmp_path: Path) -> None:
    record = next(r for r in sandbox.zenodo.all() if r["files"])
    f = record["files"][0]
    data = sandbox.zenodo.file_bytes(record["id"], f["key"])
    source = Source(key=f["key"], url=f["links"]["self"], md5=f["checksum"], size=f["size"],
                    origin="zenodo")
    http = HttpClient(service="Zenodo files")
    cache = tmp_path / "cache"
    part = cache_path(cache, source).with_name(cache_path(cache, source).name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 2])
    got = fetch(http, source, cache, record=str(record["id"]), max_bytes=10**9)
    assert got.path.read_bytes() == data and not got.reused
    downloads = [e for e in sandbox.server.requests("GET") if e["path"].endswith("/content")]
    assert downloads[-1]["status"] == 206
    assert downloads[-1]["bytes_out"] == len(data) - len(data) // 2
    again = fetch(http, source, cache, record=str(record["id"]), max_bytes=10**9)
    assert again.reused and len(sandbox.server.requests("GET", "/api/records")) == \
        len([e for e in sandbox.server.requests("GET", "/api/records")])
    assert [e for e in sandbox.server.requests("GET") if e["path"].endswith("/content")] == \
        downloads
    with pytest.raises(Exception) as info:
        fetch(http, Source(f["key"] + "x", source.url, "md5:" + "0" * 32, f["size"], "zenodo"),
              cache, record="1", max_bytes=10**9)
    assert "checksum" in str(info.value) and "md5:" + "0" * 32 in str(info.value)
    with pytest.raises(Exception) as info:
        fetch(http, Source(f["key"] + "y", source.url, "", 0, "zenodo"), cache, record="1",
              max_bytes=10)
    assert "max_download_bytes" in str(info.value)


def test_shards_partition_the_plan_exactly_once(
        sandbox: sb.Sandbox, tmp_path: Path, env: dict) -> None:
    sandbox_manifest(sandbox.url, tmp_path)
    assert cli(tmp_path, "detect") == 0
    ids = plan_ids(tmp_path)
    seen: list[set[str]] = []
    before: set[str] = set()
    for k in (1, 2, 3):
        assert cli(tmp_path, "process", "--shard", f"{k}/3") == 0
        now = set(outcomes(tmp_path))
        seen.append(now - before)
        before = now
        assert seen[-1] == {i for i in ids if in_shard(i, (k, 3))}
    assert set().union(*seen) == set(ids)
    assert sum(len(s) for s in seen) == len(ids)
    assert main(["--manifest", str(tmp_path / "data_manifest.yaml"), "process",
                 "--shard", "4/3"]) == 2


@pytest.mark.timeout(180)
def test_a_run_killed_with_sigkill_resumes_and_loses_only_records_in_progress(
        sandbox: sb.Sandbox, tmp_path: Path, env: dict) -> None:
    sandbox.zenodo.add_bulk(300, "2026-11-20")
    sandbox_manifest(sandbox.url, tmp_path, overrides={"source.max_records_per_run": 400})
    assert cli(tmp_path, "detect", "--since", "2026-11-20T00:00:00Z",
               "--until", "2026-11-21T00:00:00Z") == 0
    ids = plan_ids(tmp_path)
    assert len(ids) == 300
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--manifest", str(tmp_path / "data_manifest.yaml"),
         "--workdir", str(tmp_path / "work"), "process", "--jobs", "2"],
        cwd=ROOT, env={**os.environ, **env}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(outcomes(tmp_path)) < 30 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers, as a cancelled CI job
    assert proc.wait(30) == -signal.SIGKILL
    survived = outcomes(tmp_path)
    assert 30 <= len(survived) < 300, "the kill came too late to test resuming"
    downloads_before = len([e for e in sandbox.server.requests("GET")
                            if e["path"].endswith("/content")])
    assert cli(tmp_path, "process", "--jobs", "2") == 0
    after = outcomes(tmp_path)
    assert set(after) == set(ids)
    for rid, outcome in survived.items():
        assert after[rid] == outcome  # finished records were not processed again
    assert all(o["status"] == "done" for o in after.values())
    records = tmp_path / "work" / "records"
    assert len(list(records.glob("*.h5"))) == 300
    for path in records.glob("*.h5"):
        with h5py.File(path) as h5:
            assert len(h5["images"]) == len(h5["images"][:])
    downloads_after = len([e for e in sandbox.server.requests("GET")
                           if e["path"].endswith("/content")])
    # The second run downloaded at most the records it still had to do.
    assert downloads_after - downloads_before <= 300 - len(survived) + 2


def test_worker_processes_never_share_the_parents_http_sessions(
        sandbox: sb.Sandbox, tmp_path: Path) -> None:
    """A pool forked after an in-process run must open its own connections."""
    from concurrent.futures import ProcessPoolExecutor

    from pipeline import process as process_mod

    client = process_mod._client(_manifest_for(sandbox, tmp_path), "zenodo")
    with ProcessPoolExecutor(max_workers=1) as pool:
        inherited = pool.submit(_has_zenodo_client).result()
    assert process_mod._CLIENTS["zenodo"].http is client
    assert inherited is False


def _has_zenodo_client() -> bool:
    from pipeline import process as process_mod

    return "zenodo" in process_mod._CLIENTS


def _manifest_for(sandbox: sb.Sandbox, tmp_path: Path):
    from pipeline.manifest import load

    return load(sandbox_manifest(sandbox.url, tmp_path))
