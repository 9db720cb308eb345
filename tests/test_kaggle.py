"""Kaggle publishing: the real ``kaggle`` client, over real sockets, against the sandbox.

Why real: the risks are the client's quirks (reference/KAGGLE_PROTOCOL.md, written for 2.2.4):
silent file drops (§3.4, fixed in 2.2.5: it raises), errors inside HTTP 200 (§2),
``status: "error"`` not raised (§3.1), import-time
authentication (§0.3) and stale upload-resume state (§0.4). A mocked client would hide all of
them. The client sets no HTTP timeouts (§0.5), so every test has a timeout of its own.

Environment: every ``KAGGLE_*`` variable is cleared, then the sandbox's key is set; ``HOME``,
``TMPDIR`` and ``tempfile.tempdir`` point into the test's folder. ``kaggle`` authenticates when it
is first imported, once per process, so no test relies on being the first to import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import requests

import pipeline.sandbox as sandbox_pkg
from pipeline.errors import AuthError, PublishError
from pipeline.manifest import KaggleDestination
from pipeline.publish import BuiltVersion, Journal
from pipeline.publish.kaggle import (
    STATUS_RPC,
    KagglePublisher,
    compare_files,
    dataset_ref_problem,
    kaggle_metadata,
    kaggle_title,
    select_files,
    version_notes,
)
from pipeline.sandbox import KAGGLE_KEY, KAGGLE_USERNAME, Sandbox
from pipeline.sandbox.kaggle import BLOB_PATH, BUSY_MESSAGE, KAGGLE_API_TOKEN
from pipeline.state import State

pytestmark = pytest.mark.timeout(60)

DATASET = f"{KAGGLE_USERNAME}/code-images-test"
RPC = "/api/v1/datasets.DatasetApiService/"
NOT_UPLOADED = {"dataset-metadata.json", "datapackage.json"}


# -- fixtures and builders --------------------------------------------------------------------
@pytest.fixture(autouse=True)
def kaggle_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolated env with the sandbox's credentials; returns the default temp dir."""
    for key in list(os.environ):
        if key.startswith("KAGGLE_") or key.lower() in ("http_proxy", "https_proxy",
                                                         "all_proxy"):
            monkeypatch.delenv(key)
    home, default_tmp = tmp_path / "home", tmp_path / "default-tmp"
    home.mkdir()
    default_tmp.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(default_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(default_tmp))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("KAGGLE_USERNAME", KAGGLE_USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", KAGGLE_KEY)
    return default_tmp


@pytest.fixture
def kaggle_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A sandbox with only its Kaggle part: these tests need no corpus and must not depend on
    the other services."""
    monkeypatch.setattr(sandbox_pkg, "PARTS",
                        tuple(p for p in sandbox_pkg.PARTS if p[0] == "kaggle"))
    with Sandbox(port=0) as sb:
        yield sb


@pytest.fixture
def state(tmp_path: Path) -> State:
    return State(path=tmp_path / "state" / "state.json")


def build_version(root: Path, version: str, files: dict[str, bytes], *, notes: str = "",
                  title: str = "Code images of research software") -> BuiltVersion:
    """A flat version folder like ``version`` writes, with Kaggle's metadata."""
    folder = root / "versions" / version
    folder.mkdir(parents=True)
    meta = {"id": "placeholder/overwritten-by-publisher", "title": title,
            "licenses": [{"name": "CC-BY-4.0"}], "keywords": ["software", "images"],
            "description": "Source files of Zenodo software records as 80x80 code images.",
            "resources": [{"path": "index.csv", "description": "one row per record"},
                          {"path": "part-0001.h5", "description": "images"}]}
    everything = {**files, "dataset-metadata.json": json.dumps(meta).encode(),
                  "datapackage.json": b'{"name": "code-images", "resources": []}'}
    for name, data in everything.items():
        (folder / name).write_bytes(data)
    return BuiltVersion(
        version=version, folder=folder,
        files={n: "sha256:" + hashlib.sha256(d).hexdigest() for n, d in everything.items()},
        md5={n: "md5:" + hashlib.md5(d).hexdigest() for n, d in everything.items()},
        sizes={n: len(d) for n, d in everything.items()}, notes=notes)


V1_FILES = {"part-0001.h5": b"\x89HDF\r\n" + bytes(range(256)) * 8, "index.csv": b"id,part\n1,1\n",
            "README.md": b"# Code images\n", "CHANGELOG.md": b"## 1.20261121\n- 1 record\n",
            "SHA256SUMS": b"abc  part-0001.h5\n"}
V2_FILES = {**V1_FILES, "part-0002.h5": b"\x89HDF\r\n" + b"\x01\x02" * 700,
            "index.csv": b"id,part\n1,1\n2,2\n",
            "CHANGELOG.md": b"## 2.20261122\n- 1 record\n## 1.20261121\n- 1 record\n"}


@pytest.fixture
def v1(tmp_path: Path) -> BuiltVersion:
    return build_version(tmp_path, "1.20261121", V1_FILES, notes="## 1.20261121\n- 1 record")


@pytest.fixture
def v2(tmp_path: Path) -> BuiltVersion:
    return build_version(tmp_path, "2.20261122", V2_FILES, notes="## 2.20261122\n- 1 record")


def destination(url: str | None, **overrides: Any) -> KaggleDestination:
    fields: dict[str, Any] = {"enabled": True, "dataset": DATASET, "public": False,
                              "api_url": url, "files": "all", "status_timeout_seconds": 60}
    return KaggleDestination(**{**fields, **overrides})


def make_publisher(sb: Sandbox, tmp_path: Path, sleeps: list[float] | None = None,
                   **overrides: Any) -> KagglePublisher:
    record = sleeps if sleeps is not None else []
    return KagglePublisher(destination(sb.url, **overrides), tmp_root=tmp_path / "work-tmp",
                           sleep=record.append, poll_interval=5.0)


def uploaded(built: BuiltVersion) -> dict[str, str]:
    return {n: c for n, c in built.files.items() if n not in NOT_UPLOADED}


def rpc_calls(sb: Sandbox, method: str) -> list[dict[str, Any]]:
    return [body for name, body in sb.kaggle.calls if name == method]


# -- pure decisions ---------------------------------------------------------------------------
def test_select_files_all_and_latest_parts(v2: BuiltVersion) -> None:
    assert select_files(v2, "all", {}) == sorted(v2.files)
    previous = {"part-0001.h5": v2.files["part-0001.h5"], "index.csv": "sha256:old"}
    latest = select_files(v2, "latest-parts", previous)
    assert "part-0001.h5" not in latest
    assert "part-0002.h5" in latest and "index.csv" in latest and "README.md" in latest
    changed = {"part-0001.h5": "sha256:other"}
    assert "part-0001.h5" in select_files(v2, "latest-parts", changed)


def test_kaggle_title_and_metadata_follow_the_client_rules() -> None:
    assert kaggle_title("Code images", "code-images-test") == "Code images"
    long = kaggle_title("Code images of every open research software record on Zenodo", "x")
    assert 6 <= len(long) <= 50 and not long.endswith(" ")
    assert kaggle_title("Tiny", "code-images-test") == "Code Images Test"
    raw = {"id": "x/y", "id_no": 7, "title": "A title here", "subtitle": "too short",
           "licenses": [{"name": "CC0-1.0"}, {"name": "MIT"}], "keywords": ["a", 3],
           "resources": [{"path": "gone.h5"}, {"path": "index.csv"}, {"path": "index.csv"}]}
    meta = kaggle_metadata(raw, DATASET, ["index.csv"])
    assert meta["id"] == DATASET and "id_no" not in meta and "subtitle" not in meta
    assert meta["licenses"] == [{"name": "CC0-1.0"}] and meta["keywords"] == ["a"]
    assert meta["resources"] == [{"path": "index.csv"}]
    with pytest.raises(PublishError, match="no license"):
        kaggle_metadata({"title": "A title here"}, DATASET, [])


def test_small_rules() -> None:
    assert dataset_ref_problem("me/abcde") is not None  # the manifest allows 5, Kaggle wants 6
    assert dataset_ref_problem(DATASET) is None
    assert compare_files({"a": 1, "b": 2}, {"a": 1, "c": 3}) == ["missing b", "unexpected c"]
    assert compare_files({"a": 1}, {"a": 2}) == ["a has 2 bytes instead of 1"]
    built = BuiltVersion("3.1", Path("."), {}, {}, {}, notes="- things")
    assert version_notes(built).startswith("Version 3.1\n\n- things")


# -- publishing end to end --------------------------------------------------------------------
def test_create_private_then_new_version_holding_every_file(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion,
        v2: BuiltVersion) -> None:
    sleeps: list[float] = []
    publisher = make_publisher(kaggle_sandbox, tmp_path, sleeps)
    publisher.list_page_size = 2  # exercise ListDatasetFiles paging

    known = publisher.publish(v1, {}, Journal(state, "kaggle"))

    dataset = kaggle_sandbox.kaggle.datasets[DATASET]
    assert dataset.private is True
    assert dataset.title == "Code images of research software"
    assert dataset.license == "CC-BY-4.0"
    assert dataset.versions[0].checksums == uploaded(v1)
    created = rpc_calls(kaggle_sandbox, "CreateDataset")
    assert len(created) == 1 and created[0]["isPrivate"] is True
    assert known == {"dataset": DATASET, "url": f"{kaggle_sandbox.url}/datasets/{DATASET}",
                     "version_number": 1, "versions": {"1.20261121": 1},
                     "parts": {"part-0001.h5": v1.files["part-0001.h5"]}}
    assert state.journal == {} and State.load(state.path).destinations["kaggle"] == known

    known2 = publisher.publish(v2, known, Journal(state, "kaggle"))

    assert [v.number for v in dataset.versions] == [1, 2]
    assert dataset.current.checksums == uploaded(v2)
    assert "2.20261122" in dataset.current.notes
    assert known2["version_number"] == 2
    assert known2["versions"] == {"1.20261121": 1, "2.20261122": 2}
    assert len(rpc_calls(kaggle_sandbox, "ListDatasetFiles")) >= 2 * 3  # paged, both versions
    assert sleeps == []  # ready at once: no waiting
    assert not list(publisher.tmp_root.iterdir())  # the run folder is gone

    # Publishing the same version again changes nothing.
    assert publisher.publish(v2, known2, Journal(state, "kaggle")) == known2
    assert len(rpc_calls(kaggle_sandbox, "CreateDatasetVersion")) == 1


def test_latest_parts_leaves_unchanged_parts_out(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion,
        v2: BuiltVersion) -> None:
    publisher = make_publisher(kaggle_sandbox, tmp_path, files="latest-parts")
    known = publisher.publish(v1, {}, Journal(state, "kaggle"))
    lines = publisher.describe(v2, known)
    assert any("part-0001.h5 (part unchanged" in line for line in lines)

    publisher.publish(v2, known, Journal(state, "kaggle"))

    files = kaggle_sandbox.kaggle.datasets[DATASET].current.files
    assert "part-0002.h5" in files and "part-0001.h5" not in files and "index.csv" in files


def test_failed_file_upload_pushes_nothing_and_the_rerun_completes(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion) -> None:
    """kaggle 2.2.4 created the version without the file (§3.4); 2.2.5 raises before pushing,
    and the publisher says which file and that nothing was created."""
    kaggle_sandbox.kaggle.fail_blob("part-0001.h5", status=500)
    publisher = make_publisher(kaggle_sandbox, tmp_path)

    with pytest.raises(PublishError) as caught:
        publisher.publish(v1, {}, Journal(state, "kaggle"))

    message = str(caught.value)
    assert "uploading part-0001.h5 to Kaggle failed; no Kaggle version was created" in message
    assert "rerun publish" in message
    assert DATASET not in kaggle_sandbox.kaggle.datasets
    assert not rpc_calls(kaggle_sandbox, "CreateDataset")

    fresh = State.load(state.path)
    known = publisher.publish(v1, {}, Journal(fresh, "kaggle"))

    assert known["version_number"] == 1
    assert kaggle_sandbox.kaggle.datasets[DATASET].current.checksums == uploaded(v1)
    assert fresh.journal == {}


def test_interrupted_upload_resumes_with_the_503_308_dance(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion) -> None:
    kaggle_sandbox.kaggle.interrupt_blob("part-0001.h5", keep=100)
    publisher = make_publisher(kaggle_sandbox, tmp_path)

    publisher.publish(v1, {}, Journal(state, "kaggle"))

    size = v1.sizes["part-0001.h5"]
    by_path: dict[str, list[tuple[int, int]]] = {}
    for entry in kaggle_sandbox.server.requests("PUT", BLOB_PATH):
        by_path.setdefault(entry["path"], []).append((entry["status"], entry["bytes_in"]))
    assert [(503, size), (308, 0), (200, size - 100)] in by_path.values()
    stored = kaggle_sandbox.kaggle.datasets[DATASET].current.files["part-0001.h5"]
    assert stored.sha256 == v1.files["part-0001.h5"]


def test_waits_while_processing_and_retries_a_refused_push(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion,
        v2: BuiltVersion) -> None:
    service = kaggle_sandbox.kaggle
    service.processing_polls = 2
    sleeps: list[float] = []
    publisher = make_publisher(kaggle_sandbox, tmp_path, sleeps)
    known = publisher.publish(v1, {}, Journal(state, "kaggle"))
    assert sleeps == [5.0, 5.0]  # two "BLOBS_RECEIVED" polls, then READY

    # Another push is still processing, and the first push after it is refused anyway (the
    # race SPEC §11 describes): wait, then retry.
    service.datasets[DATASET].current.polls_left = 3
    service.fail_rpc("CreateDatasetVersion", 403, BUSY_MESSAGE)
    sleeps.clear()

    known2 = publisher.publish(v2, known, Journal(state, "kaggle"))

    assert known2["version_number"] == 2
    assert len(rpc_calls(kaggle_sandbox, "CreateDatasetVersion")) == 2
    assert [v.number for v in service.datasets[DATASET].versions] == [1, 2]
    assert len(sleeps) >= 3 and set(sleeps) == {5.0}


def test_status_wait_is_bounded_and_the_rerun_does_not_push_again(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion) -> None:
    service = kaggle_sandbox.kaggle
    service.processing_polls = 100
    sleeps: list[float] = []
    publisher = make_publisher(kaggle_sandbox, tmp_path, sleeps, status_timeout_seconds=12)

    with pytest.raises(PublishError, match="not ready after 12 s") as caught:
        publisher.publish(v1, {}, Journal(state, "kaggle"))

    assert "does not push again" in str(caught.value)
    assert sleeps == [5.0, 5.0, 2.0]  # the last pause stops at the bound
    service.datasets[DATASET].current.polls_left = 0
    known = publisher.publish(v1, {}, Journal(State.load(state.path), "kaggle"))
    assert known["version_number"] == 1
    assert len(rpc_calls(kaggle_sandbox, "CreateDataset")) == 1


def test_failed_processing_is_reported_and_the_rerun_pushes_again(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion) -> None:
    def fail_after_create(request: Any, response: Any) -> None:
        if request.path.endswith("/CreateDataset") and response.status == 200:
            kaggle_sandbox.kaggle.fail_processing(DATASET)

    kaggle_sandbox.server.after.append(fail_after_create)
    publisher = make_publisher(kaggle_sandbox, tmp_path)
    with pytest.raises(PublishError, match="could not process version 1") as caught:
        publisher.publish(v1, {}, Journal(state, "kaggle"))
    assert "got status failed" in str(caught.value)

    known = publisher.publish(v1, {}, Journal(State.load(state.path), "kaggle"))

    assert known["version_number"] == 2
    assert [v.status for v in kaggle_sandbox.kaggle.datasets[DATASET].versions] == [
        "FAILED", "READY"]


def test_new_dataset_that_404s_for_a_while_is_waited_for(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion) -> None:
    kaggle_sandbox.kaggle.new_dataset_hidden_polls = 3
    sleeps: list[float] = []
    known = make_publisher(kaggle_sandbox, tmp_path, sleeps).publish(
        v1, {}, Journal(state, "kaggle"))
    assert known["version_number"] == 1 and sleeps


@pytest.mark.parametrize("variable", ["KAGGLE_KEY", "KAGGLE_API_TOKEN"])
def test_wrong_key_or_token_is_a_clear_auth_error(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion,
        monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "wrong-secret-0123456789")
    with pytest.raises(AuthError) as caught:
        make_publisher(kaggle_sandbox, tmp_path).publish(v1, {}, Journal(state, "kaggle"))
    message = str(caught.value)
    assert "HTTP 401" in message and "Unauthenticated" in message
    assert "KAGGLE_USERNAME/KAGGLE_KEY" in message and kaggle_sandbox.url in message
    assert "wrong-secret" not in message
    assert kaggle_sandbox.kaggle.datasets == {}
    assert rpc_calls(kaggle_sandbox, "StartBlobUpload") == []


def test_missing_credentials_name_the_variables(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(AuthError) as caught:
        make_publisher(kaggle_sandbox, tmp_path).publish(v1, {}, Journal(state, "kaggle"))
    message = str(caught.value)
    assert "KAGGLE_KEY" in message and "KAGGLE_API_TOKEN" in message
    assert kaggle_sandbox.server.log == []


def test_bearer_token_works(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", KAGGLE_API_TOKEN)
    known = make_publisher(kaggle_sandbox, tmp_path).publish(v1, {}, Journal(state, "kaggle"))
    assert known["version_number"] == 1
    assert rpc_calls(kaggle_sandbox, "IntrospectToken")


def test_error_code_inside_http_200_is_a_clear_error(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion,
        v2: BuiltVersion) -> None:
    publisher = make_publisher(kaggle_sandbox, tmp_path)
    known = publisher.publish(v1, {}, Journal(state, "kaggle"))
    kaggle_sandbox.kaggle.fail_rpc("CreateDatasetVersion", 400, "Version notes are invalid",
                                   http_status=200)
    with pytest.raises(PublishError) as caught:
        publisher.publish(v2, known, Journal(state, "kaggle"))
    message = str(caught.value)
    assert "CreateDatasetVersion failed" in message and "Version notes are invalid" in message
    assert "HTTP 200 with error code 400" in message
    assert f"{RPC}CreateDatasetVersion" in message


def test_status_error_reply_is_not_taken_for_success(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion) -> None:
    publisher = make_publisher(kaggle_sandbox, tmp_path, dataset="someone-else/code-images-x")
    with pytest.raises(PublishError, match="not allowed to create a dataset as this owner"):
        publisher.publish(v1, {}, Journal(state, "kaggle"))


def test_429_with_retry_after_is_retried(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion) -> None:
    kaggle_sandbox.kaggle.rate_limit("CreateDataset", retry_after=1)
    started = time.monotonic()
    known = make_publisher(kaggle_sandbox, tmp_path).publish(v1, {}, Journal(state, "kaggle"))
    assert known["version_number"] == 1
    statuses = [e["status"] for e in kaggle_sandbox.server.requests("POST", RPC + "CreateDataset")]
    assert statuses == [429, 200]
    assert time.monotonic() - started >= 0.9  # the client honoured Retry-After: 1


class Crash(Exception):
    """Stands for the process being killed."""


class CrashingJournal(Journal):
    def __init__(self, state: State, destination: str, crash_at: str) -> None:
        super().__init__(state, destination)
        self.crash_at = crash_at

    def step(self, name: str, **data: Any) -> None:
        if name == self.crash_at:
            raise Crash(name)
        super().step(name, **data)


@pytest.mark.parametrize("crash_at", ["created", "ready"])
def test_rerun_after_a_crash_past_create_version_does_not_push_again(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion,
        v2: BuiltVersion, crash_at: str) -> None:
    publisher = make_publisher(kaggle_sandbox, tmp_path)
    known = publisher.publish(v1, {}, Journal(state, "kaggle"))
    with pytest.raises(Crash):
        publisher.publish(v2, known, CrashingJournal(state, "kaggle", crash_at))
    assert len(rpc_calls(kaggle_sandbox, "CreateDatasetVersion")) == 1

    reloaded = State.load(state.path)  # a new process
    known2 = publisher.publish(v2, reloaded.destinations["kaggle"], Journal(reloaded, "kaggle"))

    assert known2["version_number"] == 2
    assert len(rpc_calls(kaggle_sandbox, "CreateDatasetVersion")) == 1
    assert [v.number for v in kaggle_sandbox.kaggle.datasets[DATASET].versions] == [1, 2]
    assert reloaded.journal == {}


def plant_stale_resume_file(default_tmp: Path, data_file: Path, sb: Sandbox) -> Path:
    """What a crashed run leaves in ``$TMPDIR/.kaggle-uploads-<uid>`` (§0.4; kaggle 2.2.5's
    per-user folder): a resume record for ``data_file`` pointing at an upload URL the server no
    longer knows."""
    stat = data_file.stat()
    record = {
        "path": str(data_file),
        "start_blob_upload_request": {"type": "DATASET", "name": data_file.name,
                                      "contentLength": stat.st_size,
                                      "lastModifiedEpochSeconds": int(stat.st_mtime)},
        "timestamp": int(time.time()),
        "start_blob_upload_response": {"token": "blob-stale",
                                       "createUrl": f"{sb.url}{BLOB_PATH}blob-stale"},
        "upload_complete": False,
    }
    folder = default_tmp / f".kaggle-uploads-{os.geteuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / (str(data_file).replace(os.sep, "_").replace(":", "_") + ".json")
    path.write_text(json.dumps(record))
    return path


def test_stale_resume_state_in_the_default_temp_dir_cannot_affect_a_run(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v1: BuiltVersion,
        kaggle_env: Path) -> None:
    publisher = make_publisher(kaggle_sandbox, tmp_path)
    staged = publisher.run_dir(v1) / "stage" / "part-0001.h5"
    staged.parent.mkdir(parents=True)
    os.link(v1.folder / "part-0001.h5", staged)  # as a crashed run staged it
    stale = plant_stale_resume_file(kaggle_env, staged, kaggle_sandbox)
    before = stale.read_bytes()

    publisher.publish(v1, {}, Journal(state, "kaggle"))

    assert kaggle_sandbox.kaggle.datasets[DATASET].current.checksums == uploaded(v1)
    assert not kaggle_sandbox.server.requests("PUT", BLOB_PATH + "blob-stale")
    assert stale.read_bytes() == before
    assert tempfile.tempdir == str(kaggle_env)  # restored


def test_stale_resume_state_is_restarted_by_the_bare_client(
        kaggle_sandbox: Sandbox, tmp_path: Path, v1: BuiltVersion, kaggle_env: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The trap the isolation above exists for, with the client alone (§0.4)."""
    import kagglesdk.kaggle_env as kenv

    monkeypatch.setitem(kenv._env_to_endpoint, kenv.KaggleEnv.LOCAL, kaggle_sandbox.url)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    from kaggle.api.kaggle_api_extended import KaggleApi

    folder = tmp_path / "bare"
    folder.mkdir()
    for name in ("part-0001.h5", "index.csv", "dataset-metadata.json"):
        os.link(v1.folder / name, folder / name)
    meta = json.loads((folder / "dataset-metadata.json").read_text())
    (folder / "dataset-metadata.json").unlink()
    (folder / "dataset-metadata.json").write_text(json.dumps(
        {**meta, "id": DATASET, "resources": []}))
    plant_stale_resume_file(kaggle_env, folder / "part-0001.h5", kaggle_sandbox)
    api = KaggleApi()
    api.args = ["--local"]
    api.authenticate()

    result = api.dataset_create_new(str(folder), quiet=True)

    # 2.2.4 answered "ok" with only index.csv in the version (the trap our per-run temp dir
    # exists for); 2.2.5 treats the dead URL's 404 as an expired upload and starts it afresh.
    assert result.status == "ok"
    assert sorted(kaggle_sandbox.kaggle.datasets[DATASET].current.files) == ["index.csv",
                                                                           "part-0001.h5"]
    assert [e["status"] for e in kaggle_sandbox.server.requests(
        "PUT", BLOB_PATH + "blob-stale")] == [404]


def test_endpoint_guard_production_never_local(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kagglesdk.kaggle_env as kenv

    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")  # must not redirect production
    local_before = kenv._env_to_endpoint[kenv.KaggleEnv.LOCAL]
    production = KagglePublisher(destination(None), tmp_root=tmp_path)
    with production._client(tmp_path / "run-prod") as api:  # legacy key: no network call
        target = api.build_kaggle_client().http_client()._get_request_url(*STATUS_RPC)
        assert os.environ["HOME"] == str(tmp_path / "run-prod" / "home")
    assert target == "https://api.kaggle.com/v1/datasets.DatasetApiService/GetDatasetStatus"

    sandboxed = KagglePublisher(destination("http://127.0.0.1:9"), tmp_root=tmp_path)
    with sandboxed._client(tmp_path / "run-sb") as api:
        target = api.build_kaggle_client().http_client()._get_request_url(*STATUS_RPC)
    assert target == "http://127.0.0.1:9/api/v1/datasets.DatasetApiService/GetDatasetStatus"

    assert kenv._env_to_endpoint[kenv.KaggleEnv.LOCAL] == local_before
    assert os.environ["KAGGLE_API_ENVIRONMENT"] == "LOCALHOST"
    assert os.environ["HOME"] == str(tmp_path / "home")


def test_describe_is_a_dry_run(kaggle_sandbox: Sandbox, tmp_path: Path, v1: BuiltVersion
                               ) -> None:
    publisher = make_publisher(kaggle_sandbox, tmp_path)
    lines = publisher.describe(v1, {})
    text = "\n".join(lines)
    assert f"create private dataset {DATASET} at {kaggle_sandbox.url}" in text
    assert f"part-0001.h5  {v1.sizes['part-0001.h5'] / 1024:.1f} KiB" in text
    assert "index.csv  12 B" in text
    assert "datapackage.json (read as metadata by the client)" in text
    assert "title 'Code images of research software', license CC-BY-4.0" in text
    later = publisher.describe(v1, {"version_number": 4})
    assert "new version of" in later[0] and "after Kaggle version 4" in later[0]
    assert kaggle_sandbox.server.log == []


# -- the sandbox's protocol, seen raw ---------------------------------------------------------
def test_sandbox_speaks_kaggle_errors_paging_busy_and_download(
        kaggle_sandbox: Sandbox, tmp_path: Path, state: State, v2: BuiltVersion) -> None:
    base = kaggle_sandbox.url
    auth = (KAGGLE_USERNAME, KAGGLE_KEY)
    ref = {"ownerSlug": KAGGLE_USERNAME, "datasetSlug": "code-images-test"}

    reply = requests.post(f"{base}{RPC}GetDatasetStatus", json=ref, timeout=10)
    assert reply.status_code == 401 and reply.json() == {"code": 401, "message": "Unauthenticated"}
    assert reply.headers["Content-Type"] == "application/json"
    for prefix in ("/api/v1/", "/v1/"):
        reply = requests.post(f"{base}{prefix}datasets.DatasetApiService/GetDatasetStatus",
                              json=ref, auth=auth, timeout=10)
        assert reply.status_code == 404
        assert reply.json() == {"code": 404, "message": f"Dataset {DATASET} not found"}

    make_publisher(kaggle_sandbox, tmp_path).publish(v2, {}, Journal(state, "kaggle"))

    names, token = [], ""
    while True:
        page = requests.post(f"{base}{RPC}ListDatasetFiles", auth=auth, timeout=10,
                             json={**ref, "pageSize": 2, "pageToken": token}).json()
        names += [f["name"] for f in page["datasetFiles"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert names == sorted(uploaded(v2))

    service = kaggle_sandbox.kaggle
    service.datasets[DATASET].current.polls_left = 5
    body = {**ref, "body": {"versionNotes": "x", "files": []}}
    reply = requests.post(f"{base}{RPC}CreateDatasetVersion", json=body, auth=auth, timeout=10)
    assert reply.status_code == 403 and "still processing" in reply.json()["message"]
    service.busy_status = 429
    reply = requests.post(f"{base}{RPC}CreateDatasetVersion", json=body, auth=auth, timeout=10)
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
    status = requests.post(f"{base}{RPC}GetDatasetStatus", json=ref, auth=auth, timeout=10)
    assert status.json() == {"status": "BLOBS_RECEIVED"}

    start = requests.post(f"{base}/api/v1/blobs.BlobApiService/StartBlobUpload", auth=auth,
                          json={"type": "DATASET", "name": "empty.txt"}, timeout=10).json()
    assert start["createUrl"].startswith(f"{base}{BLOB_PATH}")
    put = requests.put(start["createUrl"], data=iter([b""]), timeout=10)  # chunked, no auth
    assert put.status_code == 200

    zipped = requests.post(f"{base}{RPC}DownloadDataset", json=ref, auth=auth, timeout=10)
    assert zipped.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(BytesIO(zipped.content)) as archive:
        assert sorted(archive.namelist()) == sorted(uploaded(v2))
        assert archive.read("index.csv") == V2_FILES["index.csv"]
