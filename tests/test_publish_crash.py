"""A real SIGKILL of a ``publish`` process at every step boundary, then a rerun (issue 4).

Why a real process and a real signal: the in-process crash tests (test_publish_zenodo.py,
test_kaggle.py) raise an exception inside the publisher, which still lets ``finally`` blocks,
context managers and buffered writes run. A killed CI runner gives the code no such chance. Here
``python -m pipeline publish`` runs as a subprocess against the embedded sandbox, and the
sandbox itself kills it with SIGKILL from a request hook (``SandboxServer.before`` / ``.after``)
when the request that marks the boundary arrives. An ``after`` hook runs once the server has done
the work but before the answer is sent, so "the server did it, the client never heard back" is
exact; a ``before`` hook kills and then answers at once, so the server never acts on the request,
as when a connection dies mid-request. The hook returns only once the process is dead, so no
answer can reach it. No product code has a test seam.

Every case then reruns ``publish`` in a fresh process and checks the contract of SPEC section 8:
exactly one new version per destination, holding exactly the built files, no draft left open,
and both destinations recorded in the state.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import requests

from pipeline.cli import main
from pipeline.demo import KAGGLE_DATASET, sandbox_environ, sandbox_manifest
from pipeline.publish import BuiltVersion, kaggle_names
from pipeline.publish.kaggle import uploaded_names
from pipeline.sandbox import Sandbox
from pipeline.sandbox.kaggle import BLOB_PATH
from pipeline.sandbox.server import Request, Response
from pipeline.state import State
from pipeline.version import built_version

REPO = Path(__file__).resolve().parent.parent
DEPOSITIONS = "/api/deposit/depositions"
KAGGLE_RPC = "/api/v1/datasets.DatasetApiService/"
PROCESS_TIMEOUT = 90.0


@dataclass(frozen=True)
class Boundary:
    """Where to kill: the request that marks a step boundary, and which hook sees it.

    ``path`` must match the whole request path. ``step`` is the last step the publisher's
    journal must hold after the kill (proof that the kill landed where the name says).
    ``blob`` narrows a Kaggle blob PUT to the file being uploaded (the PUT URL carries only a
    token); ``after_rpc`` fires only once the Kaggle RPC of that name has been answered in this
    run (the status polls before and after the push look alike); ``answer`` (``after`` hooks)
    must occur in the response body.
    """

    id: str
    destination: Literal["zenodo", "kaggle"]
    hook: Literal["before", "after"]
    method: str
    path: str
    step: str
    blob: str | None = None
    after_rpc: str | None = None
    answer: str | None = None


BOUNDARIES = {b.id: b for b in (
    # Zenodo, first publish: the deposition created by the server, the answer lost
    Boundary("zenodo-after-create", "zenodo", "after", "POST", DEPOSITIONS + "/?",
             "create-requested"),
    # Zenodo: newversion answered by the server, the answer lost
    Boundary("zenodo-after-newversion", "zenodo", "after", "POST",
             DEPOSITIONS + r"/\d+/actions/newversion", "newversion-requested"),
    # Zenodo: the part's PUT cut off, not stored (the smaller files before it are)
    Boundary("zenodo-mid-upload", "zenodo", "before", "PUT", r"/api/files/[0-9a-f-]+/part-.*",
             "draft"),
    # Zenodo: the part stored by the server, the answer (with its md5) lost
    Boundary("zenodo-after-part-stored", "zenodo", "after", "PUT",
             r"/api/files/[0-9a-f-]+/part-.*", "draft"),
    # Zenodo: every file uploaded and verified, the metadata PUT not acted on
    Boundary("zenodo-after-upload", "zenodo", "before", "PUT", DEPOSITIONS + r"/\d+", "files"),
    # Zenodo: published by the server, the 202 lost
    Boundary("zenodo-after-publish", "zenodo", "after", "POST",
             DEPOSITIONS + r"/\d+/actions/publish", "publish-requested"),
    # Zenodo: the verifying read of the new record, its last request; nothing saved after it
    Boundary("zenodo-before-state-saved", "zenodo", "after", "GET", r"/api/records/\d+",
             "published"),
    # Kaggle, first publish: the dataset created by the server, the answer lost
    Boundary("kaggle-after-create", "kaggle", "after", "POST", KAGGLE_RPC + "CreateDataset",
             "uploading"),
    # Kaggle: every blob uploaded, the version push not acted on
    Boundary("kaggle-before-create-version", "kaggle", "before", "POST",
             KAGGLE_RPC + "CreateDatasetVersion", "uploading"),
    # Kaggle: the new version created by the server, the answer lost
    Boundary("kaggle-after-create-version", "kaggle", "after", "POST",
             KAGGLE_RPC + "CreateDatasetVersion", "uploading"),
    # Kaggle: the new part's blob PUT cut off, not stored
    Boundary("kaggle-mid-blob-upload", "kaggle", "before", "PUT", re.escape(BLOB_PATH) + r".+",
             "uploading", blob="part-000002.h5"),
    # Kaggle: the status poll after the push answered READY, the answer lost
    Boundary("kaggle-after-ready-poll", "kaggle", "after", "POST",
             KAGGLE_RPC + "GetDatasetStatus", "created", after_rpc="CreateDatasetVersion",
             answer='"READY"'),
    # Kaggle: the file list verified, its last request; nothing saved after it
    Boundary("kaggle-before-state-saved", "kaggle", "after", "POST",
             KAGGLE_RPC + "ListDatasetFiles", "ready"),
)}
# The boundaries of a new version (issue 4), each killed once and then rerun.
NEW_VERSION = [b for b in BOUNDARIES.values() if b.id not in ("zenodo-after-create",
                                                               "kaggle-after-create")]


class Killer:
    """A sandbox hook that SIGKILLs the armed process when the boundary's request arrives.

    It fires once. It waits for :meth:`arm` (so it can never miss the process it belongs to)
    and then for the process to be reaped, so the request it fired on is answered only to a
    dead client.
    """

    def __init__(self, sandbox: Sandbox, boundary: Boundary) -> None:
        self.sandbox, self.boundary = sandbox, boundary
        self.proc: subprocess.Popen[bytes] | None = None
        self.start = len(sandbox.server.log)   # the requests of the run to be killed follow
        self.fired_on: str | None = None
        self._armed = threading.Event()
        self._lock = threading.Lock()

    def arm(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._armed.set()

    def install(self) -> None:
        if self.boundary.hook == "before":
            self.sandbox.server.before.append(self._before)
        else:
            self.sandbox.server.after.append(self._after)

    def _before(self, request: Request) -> Response | None:
        # Answering here stops the server from acting on the request, as if the connection had
        # died before the request was complete; no one reads the answer (499, nginx's "client
        # closed request", marks it in the server log).
        return Response(499) if self._maybe_kill(request, None) else None

    def _after(self, request: Request, response: Response) -> None:
        self._maybe_kill(request, response)

    def _matches(self, request: Request, response: Response | None) -> bool:
        b = self.boundary
        if request.method != b.method or not re.fullmatch(b.path, request.path):
            return False
        if b.answer is not None and (response is None or b.answer.encode() not in response.body):
            return False
        if b.blob is not None:
            blob = self.sandbox.kaggle.blobs.get(request.path.rsplit("/", 1)[1])
            if blob is None or blob.name != b.blob:
                return False
        if b.after_rpc is not None:
            answered = self.sandbox.server.log[self.start:]
            return any(e["path"] == KAGGLE_RPC + b.after_rpc for e in answered)
        return True

    def _maybe_kill(self, request: Request, response: Response | None) -> bool:
        """Kill the process if ``request`` is the boundary's; True if this call killed it."""
        if not self._armed.wait(PROCESS_TIMEOUT):
            raise AssertionError("a request arrived before the publish process was started")
        with self._lock:
            if self.fired_on is not None or not self._matches(request, response):
                return False
            self.fired_on = f"{request.method} {request.path}"
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(PROCESS_TIMEOUT)   # dead before this request is answered
            return True


class World:
    """A sandbox, a manifest aimed at it, a work folder, and the CLI in and out of process."""

    def __init__(self, tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch,
                 overrides: dict[str, Any] | None = None) -> None:
        self.tmp, self.sandbox = tmp_path, sandbox
        self.env = sandbox_environ(sandbox.url)
        # The kaggle client reads ~/.kaggle and keeps upload-resume state under $TMPDIR:
        # both point into the test's folder, for this process and the subprocesses alike.
        for name in ("HOME", "TMPDIR"):
            (tmp_path / name).mkdir()
            self.env[name] = str(tmp_path / name)
        self.env["NO_PROXY"] = "127.0.0.1,localhost"
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(tempfile, "tempdir", self.env["TMPDIR"])
        self.manifest = sandbox_manifest(sandbox.url, tmp_path, overrides=overrides)
        self.workdir = tmp_path / "work"
        self.args = ["--manifest", str(self.manifest), "--workdir", str(self.workdir)]
        self.state_path = tmp_path / "state" / "state.json"
        self.runs = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    def cli(self, *commands: str) -> None:
        """Run CLI commands in this process, each of which must succeed."""
        for command in commands:
            assert main([*self.args, command]) == 0, command

    def spawn(self) -> subprocess.Popen[bytes]:
        """``python -m pipeline publish`` in a fresh process; output to files in the test dir."""
        self.runs += 1
        env = {**self.env, "PATH": os.environ.get("PATH", os.defpath),
               "PYTHONDONTWRITEBYTECODE": "1"}
        out = open(self.tmp / f"publish-{self.runs}.log", "wb")  # noqa: SIM115 (closed below)
        try:
            proc = subprocess.Popen([sys.executable, "-m", "pipeline", *self.args, "publish"],
                                    cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()   # the child has its own descriptor
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """Kill whatever a failed test left running (only the processes this world started)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(PROCESS_TIMEOUT)

    def output(self) -> str:
        return (self.tmp / f"publish-{self.runs}.log").read_text(encoding="utf-8", errors="replace")

    def state(self) -> State:
        return State.load(self.state_path)

    def version_2(self) -> BuiltVersion:
        """Publish version 1 in-process, let the sandbox publish records, build version 2."""
        self.cli("detect", "process", "version", "publish")
        assert self.state().versions[-1]["published"].keys() == {"zenodo", "kaggle"}
        self.sandbox.zenodo.add_records(3)
        self.cli("detect", "process", "version")
        state = self.state()
        assert len(state.versions) == 2
        return built_version(state.versions[-1], self.workdir)


@pytest.fixture
def world(tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[World]:
    made = World(tmp_path, sandbox, monkeypatch)
    try:
        yield made
    finally:
        made.stop()


def assert_published_once(world: World, built: BuiltVersion) -> None:
    """Each destination holds exactly one copy of every version in the state, the newest equal
    to ``built``; no draft is open and no journal entry is left."""
    state = world.state()
    assert state.journal == {}
    entry = state.versions[-1]
    assert entry["version"] == built.version
    assert entry["published"].keys() == {"zenodo", "kaggle"}
    wanted = [v["version"] for v in state.versions]

    zenodo = entry["published"]["zenodo"]
    depositions = world.sandbox.deposit.depositions()   # the sandbox holds only ours
    assert [d["id"] for d in depositions if not d["submitted"]] == [], "a draft was left open"
    assert sorted(d["metadata"]["version"] for d in depositions) == wanted
    assert {d["conceptrecid"] for d in depositions} == {zenodo["concept_id"]}
    assert len(world.sandbox.zenodo.versions(zenodo["concept_id"])) == len(wanted)
    response = requests.get(f"{world.sandbox.url}/api/records/{zenodo['record_id']}", timeout=10)
    response.raise_for_status()
    record = response.json()
    assert record["metadata"]["version"] == built.version
    assert {f["key"]: f["checksum"] for f in record["files"]} == built.md5
    assert {f["key"]: f["size"] for f in record["files"]} == built.sizes
    assert record["doi"] == zenodo["doi"]

    assert list(world.sandbox.kaggle.datasets) == [KAGGLE_DATASET]
    dataset = world.sandbox.kaggle.datasets[KAGGLE_DATASET]
    assert [v.number for v in dataset.versions] == list(range(1, len(wanted) + 1))
    assert dataset.current.checksums == {n: built.files[n]
                                         for n in uploaded_names(kaggle_names(built))}
    assert entry["published"]["kaggle"]["version_number"] == len(wanted)
    assert state.destinations["kaggle"]["versions"][built.version] == len(wanted)


def last_request(world: World, killer: Killer) -> dict[str, Any]:
    """The server's log entry of the request the process was killed on, which must be the last
    of the killed run (a dead client sends nothing more).

    The server logs a request only after its hook returned, which may be a moment after this
    thread saw the process die; so wait for it, boundedly.
    """
    deadline = time.monotonic() + 10
    while True:
        run = world.sandbox.server.requests()[killer.start:]
        if any(f"{e['method']} {e['path']}" == killer.fired_on for e in run) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert run and f"{run[-1]['method']} {run[-1]['path']}" == killer.fired_on, run[-3:]
    return run[-1]


def kill_at(world: World, boundary: Boundary) -> None:
    """Run ``publish`` in a subprocess that the sandbox SIGKILLs at ``boundary``."""
    killer = Killer(world.sandbox, boundary)
    killer.install()
    proc = world.spawn()
    killer.arm(proc)
    code = proc.wait(PROCESS_TIMEOUT)
    assert killer.fired_on, f"{boundary.id} never fired:\n{world.output()}"
    assert code == -signal.SIGKILL, f"exit code {code}:\n{world.output()}"
    last = last_request(world, killer)
    if boundary.hook == "before":
        assert last["status"] == 499     # answered by the hook: the server did not act on it
    else:
        assert last["status"] < 400      # acted on; the answer went to a dead client
    state = world.state()
    journal = state.journal.get(boundary.destination, {})
    assert journal.get("steps", [None])[-1] == boundary.step, (boundary.id, state.journal)
    published = state.versions[-1]["published"]
    assert boundary.destination not in published
    assert ("zenodo" in published) == (boundary.destination == "kaggle")  # Zenodo goes first


def rerun(world: World, built: BuiltVersion) -> None:
    """Publish in a fresh process, check the result, then check a third run has nothing to do."""
    proc = world.spawn()
    assert proc.wait(PROCESS_TIMEOUT) == 0, world.output()
    assert_published_once(world, built)
    start = len(world.sandbox.server.log)
    world.cli("publish")
    assert world.sandbox.server.log[start:] == []
    assert_published_once(world, built)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("boundary", NEW_VERSION, ids=[b.id for b in NEW_VERSION])
def test_a_publish_killed_at_a_step_boundary_is_finished_by_the_rerun(
        world: World, boundary: Boundary) -> None:
    built = world.version_2()
    kill_at(world, boundary)
    rerun(world, built)


@pytest.mark.timeout(120)
def test_reruns_killed_again_at_later_steps_still_publish_one_version(world: World) -> None:
    """Every run resumes from what the killed one before it left, not only from a clean start."""
    built = world.version_2()
    for name in ("zenodo-mid-upload", "zenodo-after-publish", "kaggle-mid-blob-upload",
                 "kaggle-after-create-version"):
        kill_at(world, BOUNDARIES[name])
    rerun(world, built)


@pytest.mark.timeout(120)
def test_a_first_publish_killed_after_each_create_makes_one_deposition_and_one_dataset(
        world: World) -> None:
    world.cli("detect", "process", "version")
    built = built_version(world.state().versions[-1], world.workdir)
    kill_at(world, BOUNDARIES["zenodo-after-create"])
    kill_at(world, BOUNDARIES["kaggle-after-create"])
    rerun(world, built)


@pytest.mark.timeout(180)
def test_a_publish_killed_between_volume_full_and_new_volume_published_makes_one_volume(
        tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Version 2 does not fit into volume 1 (380 kB here), so it starts volume 2: killed after
    the server created the new concept (the answer lost), then again after it published it,
    the reruns still make exactly one new volume, linked to the first."""
    world = World(tmp_path, sandbox, monkeypatch,
                  overrides={"destinations.zenodo.volume_max_bytes": 380_000})
    try:
        built = world.version_2()
        assert built.volume == 2
        kill_at(world, BOUNDARIES["zenodo-after-create"])
        kill_at(world, BOUNDARIES["zenodo-after-publish"])
        proc = world.spawn()
        assert proc.wait(PROCESS_TIMEOUT) == 0, world.output()
    finally:
        world.stop()
    state = world.state()
    assert state.journal == {}
    volumes = state.destinations["zenodo"]["volumes"]
    assert sorted(volumes) == ["1", "2"]
    depositions = world.sandbox.deposit.depositions()
    assert not [d["id"] for d in depositions if not d["submitted"]], "a draft was left open"
    concepts = {d["conceptrecid"] for d in depositions}
    assert concepts == {volumes["1"]["concept_id"], volumes["2"]["concept_id"]}   # one new
    second = [d for d in depositions if d["conceptrecid"] == volumes["2"]["concept_id"]]
    assert [d["metadata"]["version"] for d in second] == [built.version]
    assert second[0]["metadata"]["title"].endswith("(volume 2)")
    related = second[0]["metadata"]["related_identifiers"]
    assert {"identifier": volumes["1"]["concept_doi"], "relation": "continues",
            "scheme": "doi"} in related
    record = requests.get(f"{world.sandbox.url}/api/records/{volumes['2']['record_id']}",
                          timeout=10).json()
    assert {f["key"]: f["checksum"] for f in record["files"]} == built.md5
    assert state.versions[-1]["published"].keys() == {"zenodo", "kaggle"}
