"""Restoring a lost version folder from Zenodo (SPEC section 7), against the embedded sandbox.

The scenario is the scheduled workflow's: version 1 was built and published by an earlier run,
whose work folder is gone (the Actions cache was evicted); only the state file survived. The next
``version`` must download version 1 from its Zenodo record, prove it byte-identical to what the
state recorded, and build version 2 on top of it, so that version 2 still uploads only its new
bytes. Bad bytes must never be put in place.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_publish_crash import World

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.fsutil import file_digest
from pipeline.restore import (
    expected_listing,
    parse_sums,
    published_record,
    restore_version,
    sums_problems,
)
from pipeline.sandbox import ZENODO_TOKEN, Sandbox
from pipeline.sandbox.server import Request, Response
from pipeline.version import built_version

CONTENT = re.compile(r"/api/records/\d+/files/(?P<key>[^/]+)/content")


@pytest.fixture
def world(tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> World:
    """The crash tests' world, used in-process only (no subprocess to clean up)."""
    return World(tmp_path, sandbox, monkeypatch)


def lose_the_work_folder(world: World) -> dict[str, Any]:
    """Build and publish version 1, delete every version folder, make version 2's records
    ready; return version 1's state entry."""
    world.cli("detect", "process", "version", "publish")
    shutil.rmtree(world.workdir / "versions")
    world.sandbox.zenodo.add_records(3)
    world.cli("detect", "process")
    return world.state().versions[0]


def downloads(world: World, since: int) -> list[str]:
    return [m["key"] for e in world.sandbox.server.log[since:]
            if e["method"] == "GET" and (m := CONTENT.fullmatch(e["path"]))]


# -- pure decisions ---------------------------------------------------------------------------

def test_published_record_and_expected_listing() -> None:
    entry = {"md5": {"a": "md5:1", "b": "md5:2"}, "sizes": {"a": 3, "b": 4},
             "published": {"zenodo": {"record_id": 17}}}
    assert published_record(entry) == "17"
    assert published_record({"published": {"kaggle": {"version_number": 1}}}) is None
    assert published_record({}) is None
    assert expected_listing(entry) == {"a": (3, "md5:1"), "b": (4, "md5:2")}


def test_sha256sums_are_parsed_and_compared_both_ways() -> None:
    text = f"{'a' * 64}  index.csv\n{'B' * 64} *part-000001.h5\n\n"
    sums = parse_sums(text)
    assert sums == {"index.csv": "sha256:" + "a" * 64, "part-000001.h5": "sha256:" + "b" * 64}
    assert sums_problems(sums, dict(sums)) == []
    assert sums_problems(sums, {"index.csv": "sha256:" + "c" * 64, "README.md": "sha256:0"}) == [
        "SHA256SUMS lacks README.md",
        "SHA256SUMS lists part-000001.h5, which the version does not hold",
        f"index.csv: SHA256SUMS says sha256:{'a' * 64}, the state sha256:{'c' * 64}"]


def test_a_version_never_published_or_without_a_zenodo_destination_is_a_clear_error(
        tmp_path: Path) -> None:
    entry = {"version": "3.20261121", "folder": "versions/3.20261121", "published": {}}
    with pytest.raises(PipelineError, match=r"^\[version\] the folder of version 3.20261121 .* "
                       r"was never published to Zenodo, so it cannot be downloaded\. restore "
                       r"the folder from a copy of the work folder") as err:
        restore_version(entry, tmp_path, None)
    assert err.value.stage == "version"
    published = {**entry, "published": {"zenodo": {"record_id": "41"}}}
    with pytest.raises(PipelineError, match="no destinations.zenodo to download it from "
                       r"\(record 41\)\. set destinations.zenodo.url"):
        restore_version(published, tmp_path, None)
    assert not (tmp_path / "versions").exists()


# -- against the sandbox ----------------------------------------------------------------------

@pytest.mark.parametrize("token", [True, False], ids=["with-token", "anonymous"])
def test_a_lost_folder_is_restored_and_version_2_uploads_only_new_bytes(
        world: World, monkeypatch: pytest.MonkeyPatch, token: bool) -> None:
    v1 = lose_the_work_folder(world)
    authorization: list[str | None] = []

    def note_credentials(request: Request) -> None:
        if request.path.startswith("/api/records/"):
            authorization.append(request.headers.get("Authorization"))

    world.sandbox.server.before.append(note_credentials)
    if not token:  # a published record is public: a run without the secret can restore it
        monkeypatch.delenv("ZENODO_PUBLISH_TOKEN")
    start = len(world.sandbox.server.log)
    world.cli("version")

    folder = world.workdir / v1["folder"]
    assert sorted(downloads(world, start)) == sorted(v1["files"])      # each file once
    assert {p.name for p in folder.iterdir()} == set(v1["files"])
    assert {p.name: file_digest(p) for p in folder.iterdir()} == v1["files"]
    assert not list((world.workdir / "versions").glob(".tmp-*"))
    assert authorization and set(authorization) == (
        {f"Bearer {ZENODO_TOKEN}"} if token else {None})

    state = world.state()
    assert len(state.versions) == 2
    v2 = built_version(state.versions[-1], world.workdir)
    assert v2.md5["part-000001.h5"] == v1["md5"]["part-000001.h5"]      # carried over...
    assert (v2.folder / "part-000001.h5").stat().st_ino == \
        (folder / "part-000001.h5").stat().st_ino                         # ...as a hard link
    index = json.loads((v2.folder / "index.json").read_text(encoding="utf-8"))
    assert {r["part"] for r in index["records"]} == {"part-000001.h5", "part-000002.h5"}

    monkeypatch.setenv("ZENODO_PUBLISH_TOKEN", ZENODO_TOKEN)
    start = len(world.sandbox.server.log)
    world.cli("publish")
    uploaded = {e["path"].rsplit("/", 1)[1]: e["bytes_in"] for e in world.sandbox.server.log[start:]
                if e["method"] == "PUT" and e["path"].startswith("/api/files/")}
    changed = {n: v2.sizes[n] for n in v2.md5 if v1["md5"].get(n) != v2.md5[n]}
    assert "part-000001.h5" not in changed and "part-000002.h5" in changed
    assert uploaded == changed
    record_id = world.state().versions[-1]["published"]["zenodo"]["record_id"]
    record = world.sandbox.zenodo.get(record_id)
    assert record is not None
    assert {f["key"]: f["checksum"] for f in record["files"]} == v2.md5


def flip_a_byte(key: str) -> Callable[[Request, Response], None]:
    """An ``after`` hook that garbles the download of ``key`` (same size, other bytes)."""
    def hook(request: Request, response: Response) -> None:
        m = CONTENT.fullmatch(request.path)
        if m and m["key"] == key and response.status == 200:
            body = bytearray(response.body)
            body[len(body) // 2] ^= 0xFF
            response.body = bytes(body)
    return hook


def test_a_tampered_download_fails_clearly_and_nothing_is_put_in_place(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = lose_the_work_folder(world)
    hook = flip_a_byte("part-000001.h5")
    world.sandbox.server.after.append(hook)
    capsys.readouterr()
    assert main([*world.args, "version"]) == 1
    error = capsys.readouterr().err
    assert "[version] part-000001.h5 downloaded from Zenodo record" in error
    assert f"does not match the record and the state of version {v1['version']}" in error
    size = v1["sizes"]["part-000001.h5"]
    assert f"expected {size} bytes {v1['md5']['part-000001.h5']}, got {size} bytes md5:" in error
    assert "the bad bytes were deleted and nothing was put in place" in error
    assert not (world.workdir / "versions").exists() or \
        list((world.workdir / "versions").iterdir()) == []
    assert len(world.state().versions) == 1

    leftover = world.workdir / "versions" / f".tmp-restore-{v1['version']}"
    leftover.mkdir(parents=True)                   # what a restore killed midway leaves
    (leftover / "part-000001.h5").write_bytes(b"half a part")
    world.sandbox.server.after.remove(hook)        # the next run succeeds
    world.cli("version")
    assert len(world.state().versions) == 2
    folder = world.workdir / v1["folder"]
    assert {p.name: file_digest(p) for p in folder.iterdir()} == v1["files"]
    assert not leftover.exists()


def test_a_record_that_differs_from_the_state_is_refused_before_downloading(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = lose_the_work_folder(world)
    record_id = v1["published"]["zenodo"]["record_id"]
    wrong = "md5:" + hashlib.md5(b"other").hexdigest()

    def other_index(request: Request, response: Response) -> None:
        if request.path == f"/api/records/{record_id}":
            record = json.loads(response.body)
            for f in record["files"]:
                if f["key"] == "index.csv":
                    f["checksum"] = wrong
            response.body = json.dumps(record).encode()

    world.sandbox.server.after.append(other_index)
    start = len(world.sandbox.server.log)
    capsys.readouterr()
    assert main([*world.args, "version"]) == 1
    error = capsys.readouterr().err
    assert f"Zenodo record {record_id} does not hold version {v1['version']} as the state " \
           "recorded it" in error
    assert f"index.csv: expected {v1['sizes']['index.csv']} bytes {v1['md5']['index.csv']}, " \
           f"got {v1['sizes']['index.csv']} bytes {wrong}" in error
    assert downloads(world, start) == []


def test_a_state_whose_sha256_disagrees_with_the_files_fails_the_sums_check(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = lose_the_work_folder(world)
    raw = json.loads(world.state_path.read_text(encoding="utf-8"))
    bogus = "sha256:" + "0" * 64
    raw["versions"][0]["files"]["index.csv"] = bogus    # md5 still right: downloads pass
    world.state_path.write_text(json.dumps(raw), encoding="utf-8")
    capsys.readouterr()
    assert main([*world.args, "version"]) == 1
    error = capsys.readouterr().err
    assert f"the files of version {v1['version']} downloaded from Zenodo fail their sha256 " \
           "check" in error
    assert f"index.csv: SHA256SUMS says {v1['files']['index.csv']}, the state {bogus}" in error
    assert not (world.workdir / v1["folder"]).exists()
    assert not list((world.workdir / "versions").glob(".tmp-*"))


def test_a_lost_folder_of_a_version_never_published_stops_version(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.cli("detect", "process", "version")                   # built, not published
    shutil.rmtree(world.workdir / "versions")
    world.sandbox.zenodo.add_records(3)
    world.cli("detect", "process")
    capsys.readouterr()
    assert main([*world.args, "version"]) == 1
    error = capsys.readouterr().err
    assert "error: [version] the folder of version 1." in error
    assert "was never published to Zenodo, so it cannot be downloaded" in error
    assert len(world.state().versions) == 1
