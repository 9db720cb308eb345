"""Publishing to Zenodo: the pure decisions, the orchestration, then the real deposit-API code
against the embedded sandbox over real sockets (ZENODO_API.md §5).

Crashes are simulated in-process by wrapping one HTTP step of the publisher so that it raises
*after* (or before) the request reached the sandbox; the next run must finish the same version
without creating a second one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from test_version import add_record, make_manifest

from pipeline.errors import PublishError
from pipeline.manifest import ZenodoDestination
from pipeline.publish import BuiltVersion, Journal, publish
from pipeline.publish.zenodo import (
    FileBody,
    FilePlan,
    ZenodoPublisher,
    deposit_metadata,
    diff_files,
    plan_files,
)
from pipeline.research import EXTRA_FILES
from pipeline.sandbox import KAGGLE_KEY, KAGGLE_USERNAME, ZENODO_TOKEN, Sandbox
from pipeline.sandbox.server import FaultRule
from pipeline.state import State
from pipeline.version import build_version

TOKEN_ENV = "ZENODO_PUBLISH_TOKEN"


def _dest(url: str = "http://127.0.0.1:9", **kw: Any) -> ZenodoDestination:
    fields = {"enabled": True, "url": url, "token_env": TOKEN_ENV, "deposition_id": None,
              "mode": "publish", "community": None, **kw}
    return ZenodoDestination(**fields)


def _built(tmp_path: Path, files: dict[str, bytes]) -> BuiltVersion:
    import hashlib

    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return BuiltVersion(
        version="2.20261122", folder=tmp_path,
        files={n: "sha256:" + hashlib.sha256(d).hexdigest() for n, d in files.items()},
        md5={n: "md5:" + hashlib.md5(d).hexdigest() for n, d in files.items()},
        sizes={n: len(d) for n, d in files.items()}, notes="## 2\n",
        counts={"records": 5, "images": 50, "added": 1, "updated": 0, "removed": 0})


# -- pure decisions ------------------------------------------------------------------------------

def test_plan_files_keeps_same_name_and_md5_only() -> None:
    remote = {"part-000001.h5": ("f1", "md5:aa"), "index.csv": ("f2", "md5:bb"),
              "old.h5": ("f3", "md5:cc")}
    built = {"part-000001.h5": "md5:aa", "index.csv": "md5:b2", "part-000002.h5": "md5:dd"}
    assert plan_files(remote, built) == FilePlan(
        keep=("part-000001.h5",),
        delete=(("index.csv", "f2"), ("old.h5", "f3")),
        upload=("index.csv", "part-000002.h5"))
    assert plan_files({}, built).upload == tuple(sorted(built))


def test_diff_files_names_every_difference() -> None:
    expected = {"a": (1, "md5:1"), "b": (2, "md5:2"), "c": (3, "md5:3")}
    got = {"a": (1, "md5:1"), "b": (2, "md5:x"), "d": (4, "md5:4")}
    assert diff_files(expected, got) == [
        "missing c", "unexpected d", "b: expected 2 bytes md5:2, got 2 bytes md5:x"]
    assert diff_files(expected, expected) == []


def test_deposit_metadata_is_complete_and_comes_from_the_datapackage(tmp_path: Path) -> None:
    built = _built(tmp_path, {"index.csv": b"id\n"})
    package = {"title": "Code Images", "description": "Code <as> images",
               "licenses": [{"name": "CC-BY-4.0"}], "keywords": ["zenodo"],
               "contributors": [{"title": "Doe, Jane", "role": "author",
                                 "organization": "Uni", "path": "https://orcid.org/0000-0002-1"}]}
    meta = deposit_metadata(package, built, today=date(2026, 11, 22), community="code",
                            source_url="https://github.com/o/r")
    assert meta["upload_type"] == "dataset" and meta["access_right"] == "open"
    assert meta["license"] == "cc-by-4.0"
    assert meta["version"] == "2.20261122" and meta["publication_date"] == "2026-11-22"
    assert meta["creators"] == [{"name": "Doe, Jane", "affiliation": "Uni",
                                 "orcid": "0000-0002-1"}]
    assert "Code &lt;as&gt; images" in meta["description"]
    assert meta["communities"] == [{"identifier": "code"}]
    assert meta["related_identifiers"][0]["relation"] == "isCompiledBy"


def test_describe_lists_uploads_deletes_and_keeps_offline(tmp_path: Path) -> None:
    built = _built(tmp_path, {"part-000001.h5": b"x" * 10, "part-000002.h5": b"y" * 20,
                              "index.csv": b"id\n1\n"})
    publisher = ZenodoPublisher(_dest())
    first = publisher.describe(built, {})
    assert "create a new deposition (first publish)" in first[0]
    assert first[1] == "zenodo: upload 3 file(s), 35 bytes; delete 0; keep 0"
    known = {"deposition_id": "41", "concept_id": "40",
             "files": {"part-000001.h5": built.md5["part-000001.h5"], "index.csv": "md5:0",
                       "part-000000.h5": "md5:1"}}
    lines = publisher.describe(built, known)
    assert "open a new version of deposition 41 (concept 40)" in lines[0]
    assert "  upload part-000002.h5 (20 bytes)" in lines
    assert "  upload index.csv (5 bytes)" in lines
    assert "  delete part-000000.h5" in lines and "  delete index.csv" in lines
    assert "  keep   part-000001.h5 (10 bytes)" in lines
    assert lines[-1] == "zenodo: then publish it (new DOI)"
    assert "draft" in ZenodoPublisher(_dest(mode="draft")).describe(built, known)[-1]


def test_a_missing_token_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    state = State(path=tmp_path / "state.json")
    built = _built(tmp_path, {"datapackage.json": json.dumps({"title": "t", "licenses": [
        {"name": "CC0-1.0"}]}).encode()})
    with pytest.raises(PublishError, match=f"{TOKEN_ENV} .* is not set"):
        ZenodoPublisher(_dest()).publish(built, {}, Journal(state, "zenodo"))


def test_file_body_sends_the_whole_file_on_every_attempt(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"a" * (3 << 20))
    body = FileBody(tmp_path / "f", 3 << 20)
    assert len(body) == 3 << 20
    assert b"".join(body) == b"".join(body) == b"a" * (3 << 20)


# -- orchestration (stand-in publishers implementing the Protocol) ---------------------------

class StandIn:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail, self.calls = name, fail, 0

    def describe(self, built: BuiltVersion, known: dict[str, Any]) -> list[str]:
        return [f"{self.name}: would publish {built.version}"]

    def publish(self, built: BuiltVersion, known: dict[str, Any], journal: Journal
                ) -> dict[str, Any]:
        self.calls += 1
        journal.begin(built.version)
        journal.step("started")
        if self.fail:
            raise PublishError("refused", stage="publish", url="http://x")
        journal.finish()
        return {"url": f"https://{self.name}.example/{built.version}", "version_number": 1}


def _versioned(tmp_path: Path, **manifest_kw: Any) -> tuple[Any, State]:
    manifest = make_manifest(tmp_path, **manifest_kw)
    state = State(path=tmp_path / "state.json")
    add_record(tmp_path, state, "101")
    build_version(manifest, state, tmp_path, now=datetime(2026, 11, 21, tzinfo=UTC))
    return manifest, state


def test_one_failing_destination_does_not_block_the_other(tmp_path: Path) -> None:
    manifest, state = _versioned(tmp_path, destinations={
        "zenodo": {"url": "http://127.0.0.1:9"}, "kaggle": {"dataset": "o/code-images-x"}})
    zen, kag = StandIn("zenodo", fail=True), StandIn("kaggle")
    report = publish(manifest, state, tmp_path, publishers={"zenodo": zen, "kaggle": kag})
    assert report.failed
    outcomes = {r.name: r.outcome for r in report.results}
    assert outcomes == {"zenodo": "failed", "kaggle": "published"}
    saved = State.load(state.path)
    assert list(saved.versions[-1]["published"]) == ["kaggle"]
    assert saved.destinations["kaggle"]["version_number"] == 1
    assert saved.journal["zenodo"]["steps"] == ["started"]     # resumable next run
    assert "refused" in report.text() and "| zenodo | failed |" in report.markdown()
    # the next run retries only the failed destination
    zen.fail = False
    report = publish(manifest, state, tmp_path, publishers={"zenodo": zen, "kaggle": kag})
    assert {r.name: r.outcome for r in report.results} == {"zenodo": "published",
                                                           "kaggle": "up-to-date"}
    assert kag.calls == 1 and zen.calls == 2 and not report.failed
    assert report.outputs()["zenodo_url"].startswith("https://zenodo.example/")


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    manifest, state = _versioned(tmp_path, destinations={
        "zenodo": {"url": "http://127.0.0.1:9"}, "kaggle": {"dataset": "o/code-images-x"}})
    before = state.path.read_bytes()
    zen, kag = StandIn("zenodo"), StandIn("kaggle")
    report = publish(manifest, state, tmp_path, dry_run=True,
                     publishers={"zenodo": zen, "kaggle": kag})
    assert [r.outcome for r in report.results] == ["dry-run", "dry-run"]
    assert "zenodo: would publish 1.20261121" in report.text()
    assert zen.calls == kag.calls == 0 and state.path.read_bytes() == before
    assert state.destinations == {} and state.versions[-1]["published"] == {}


def test_targets_disabled_destinations_and_no_version(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, destinations={"zenodo": {"url": "http://127.0.0.1:9"}})
    empty = State(path=tmp_path / "empty.json")
    assert publish(manifest, empty, tmp_path).version is None
    manifest, state = _versioned(tmp_path, destinations={
        "zenodo": {"url": "http://127.0.0.1:9"},
        "kaggle": {"dataset": "o/code-images-x", "enabled": False}})
    report = publish(manifest, state, tmp_path, target="kaggle")
    assert [(r.name, r.outcome) for r in report.results] == [("kaggle", "disabled")]


def test_zenodo_only_use_never_imports_kaggle(tmp_path: Path) -> None:
    code = ("import sys; from pipeline.publish import make_publisher; "
            "from pipeline.manifest import ZenodoDestination; from pathlib import Path; "
            "make_publisher('zenodo', ZenodoDestination(True, 'http://x', 'T', None, 'publish', "
            "None), Path('.'), sleep=lambda s: None); "
            "print(any(m == 'kaggle' or m.startswith(('kaggle.', 'pipeline.publish.kaggle')) "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "False"


# -- against the sandbox, over real sockets ---------------------------------------------------

class Crash(BaseException):
    """A simulated kill: not an ``Exception``, so nothing in the pipeline catches it."""


class CrashingPublisher(ZenodoPublisher):
    """Dies just before or just after the ``nth`` request matching ``method`` and ``pattern``."""

    def __init__(self, dest: ZenodoDestination, method: str, pattern: str, *, nth: int = 1,
                 after: bool = True) -> None:
        super().__init__(dest, sleep=lambda s: None)
        self.method, self.pattern, self.nth, self.after, self.seen = method, pattern, nth, after, 0

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        hit = method == self.method and re.search(self.pattern, path) is not None
        self.seen += hit
        if hit and self.seen == self.nth and not self.after:
            raise Crash(f"killed before {method} {path}")
        result = super()._call(method, path, **kwargs)
        if hit and self.seen == self.nth:
            raise Crash(f"killed after {method} {path}")
        return result


class Setup:
    """A workdir with six processed records, a manifest aimed at the sandbox, and helpers."""

    def __init__(self, tmp_path: Path, sandbox: Sandbox, **zenodo: Any) -> None:
        self.tmp, self.sandbox = tmp_path, sandbox
        self.manifest = make_manifest(tmp_path, destinations={
            "zenodo": {"url": sandbox.url, **zenodo}})
        self.dest = self.manifest.destinations.zenodo
        self.state = State(path=tmp_path / "state.json")
        self.sleeps: list[float] = []
        for rid in ("101", "102", "103", "104", "105", "106"):
            add_record(tmp_path, self.state, rid)
        self.day = 20

    def build(self, *new: str) -> BuiltVersion:
        for rid in new:
            add_record(self.tmp, self.state, rid)
        self.day += 1
        built = build_version(self.manifest, self.state, self.tmp,
                              now=datetime(2026, 11, self.day, tzinfo=UTC))
        assert built is not None
        return built

    def publish(self, publisher: ZenodoPublisher | None = None, **kw: Any) -> Any:
        publishers = {"zenodo": publisher} if publisher else None
        return publish(self.manifest, self.state, self.tmp, sleep=self.sleeps.append,
                       publishers=publishers, **kw)

    def reload(self) -> None:
        self.state = State.load(self.state.path)   # what a new process would read

    def concept_depositions(self) -> list[dict[str, Any]]:
        concept = self.state.destinations["zenodo"]["concept_id"]
        return [d for d in self.sandbox.deposit.depositions() if d["conceptrecid"] == concept]

    def uploads(self, since: int) -> dict[str, int]:
        return {e["path"].rsplit("/", 1)[1]: e["bytes_in"]
                for e in self.sandbox.server.log[since:]
                if e["method"] == "PUT" and e["path"].startswith("/api/files/")}


@pytest.fixture
def setup(tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv(TOKEN_ENV, ZENODO_TOKEN)
    return Setup(tmp_path, sandbox)


def _record(setup: Setup, record_id: str) -> dict[str, Any]:
    response = requests.get(f"{setup.sandbox.url}/api/records/{record_id}", timeout=10)
    response.raise_for_status()
    return response.json()


def _assert_published_exactly(setup: Setup, built: BuiltVersion, versions: int) -> None:
    deps = setup.concept_depositions()
    published = [d for d in deps if d["submitted"]]
    assert len(published) == versions, [d["metadata"].get("version") for d in deps]
    assert not [d for d in deps if not d["submitted"]], "an open draft was left behind"
    assert sorted(d["metadata"]["version"] for d in published) == \
        sorted(v["version"] for v in setup.state.versions[-versions:])
    known = setup.state.destinations["zenodo"]
    record = _record(setup, known["record_id"])
    assert {f["key"]: f["checksum"] for f in record["files"]} == built.md5
    assert record["metadata"]["version"] == built.version
    assert setup.state.versions[-1]["published"]["zenodo"]["doi"] == record["doi"]
    assert setup.state.journal == {}


def test_v1_publishes_and_v2_uploads_only_new_bytes(setup: Setup) -> None:
    v1 = setup.build()
    start = len(setup.sandbox.server.log)
    report = setup.publish()
    assert [(r.name, r.outcome) for r in report.results] == [("zenodo", "published"),
                                                              ("kaggle", "disabled")]
    assert setup.uploads(start) == v1.sizes                       # first version: everything
    published = setup.state.versions[-1]["published"]["zenodo"]
    assert {"doi", "record_id", "url", "concept_doi", "at"} <= set(published)
    assert published["doi"] == f"10.5072/zenodo.{published['record_id']}"
    record = _record(setup, published["record_id"])
    assert record["metadata"]["version"] == v1.version
    assert record["metadata"]["resource_type"]["type"] == "dataset"
    assert record["metadata"]["license"] == {"id": "cc-by-4.0"}
    assert record["conceptdoi"] == published["concept_doi"]
    _assert_published_exactly(setup, v1, versions=1)

    v2 = setup.build("107")
    start = len(setup.sandbox.server.log)
    assert setup.publish().results[0].outcome == "published"
    changed = {n: v2.sizes[n] for n in v2.md5 if v1.md5.get(n) != v2.md5[n]}
    assert "part-000002.h5" in changed and "part-000001.h5" not in changed
    assert setup.uploads(start) == changed                        # only new and changed bytes
    # besides the new part: small files, and the figures and loader (constant in size)
    assert sum(v for n, v in changed.items() if n not in EXTRA_FILES) < v2.sizes["part-000001.h5"]
    _assert_published_exactly(setup, v2, versions=2)
    assert setup.state.destinations["zenodo"]["concept_id"] == \
        setup.concept_depositions()[0]["conceptrecid"]
    assert published["concept_doi"] in (v2.folder / "README.md").read_text()


def test_rerunning_with_nothing_new_changes_nothing(setup: Setup) -> None:
    setup.build()
    setup.publish()
    before = (setup.state.path.read_bytes(), len(setup.sandbox.server.log))
    assert build_version(setup.manifest, setup.state, setup.tmp) is None
    report = setup.publish()
    assert [r.outcome for r in report.results] == ["up-to-date", "disabled"]
    assert (setup.state.path.read_bytes(), len(setup.sandbox.server.log)) == before


def test_dry_run_lists_the_plan_and_touches_nothing(setup: Setup) -> None:
    setup.build()
    setup.publish()
    v2 = setup.build("107")
    before = (setup.state.path.read_bytes(), len(setup.sandbox.server.log))
    text = setup.publish(dry_run=True).text()
    assert (setup.state.path.read_bytes(), len(setup.sandbox.server.log)) == before
    deposition = setup.state.destinations["zenodo"]["deposition_id"]
    assert f"{setup.sandbox.url}: open a new version of deposition {deposition}" in text
    assert f"upload part-000002.h5 ({v2.sizes['part-000002.h5']:,} bytes)" in text
    assert f"keep   part-000001.h5 ({v2.sizes['part-000001.h5']:,} bytes)" in text
    assert "delete catalog.json" in text and "then publish it (new DOI)" in text
    assert f"keep   part-000001.csv ({v2.sizes['part-000001.csv']:,} bytes)" in text


CRASH_POINTS = [
    # (version, method, path pattern, nth, after)
    (1, "POST", r"/depositions$", 1, True),                  # create answered, answer lost
    (1, "PUT", r"/api/files/", 3, True),                     # some files uploaded
    (1, "PUT", r"/depositions/\d+$", 1, True),               # metadata stored
    (1, "POST", r"/actions/publish$", 1, False),             # about to publish
    (1, "POST", r"/actions/publish$", 1, True),              # published, answer lost
    (2, "POST", r"/actions/newversion$", 1, True),           # draft opened, answer lost
    (2, "GET", r"/depositions/\d+$", 1, True),               # draft read, not yet journaled
    (2, "DELETE", r"/files/", 2, True),                      # some inherited files deleted
    (2, "PUT", r"/api/files/", 1, True),                     # the new part uploaded
    (2, "POST", r"/actions/publish$", 1, True),              # published, answer lost
    (2, "GET", r"/api/records/", 1, True),                   # verified, not yet recorded
]


@pytest.mark.parametrize(("version", "method", "pattern", "nth", "after"), CRASH_POINTS)
def test_a_crash_at_any_step_is_finished_by_the_next_run(
        setup: Setup, version: int, method: str, pattern: str, nth: int, after: bool) -> None:
    built = setup.build()
    if version == 2:
        setup.publish()
        built = setup.build("107")
    crashing = CrashingPublisher(setup.dest, method, pattern, nth=nth, after=after)
    with pytest.raises(Crash):
        setup.publish(crashing)
    setup.reload()
    report = setup.publish()
    assert report.results[0].outcome == "published", report.text()
    _assert_published_exactly(setup, built, versions=version)
    assert setup.publish().results[0].outcome == "up-to-date"


def test_a_state_that_lost_its_last_publish_adopts_the_published_version(setup: Setup) -> None:
    setup.build()
    setup.publish()
    v2 = setup.build("107")
    before_publish = setup.state.path.read_bytes()
    setup.publish()
    setup.state.path.write_bytes(before_publish)    # e.g. the state commit never happened
    setup.reload()
    start = len(setup.sandbox.server.log)
    assert setup.publish().results[0].outcome == "published"
    assert setup.uploads(start) == {}
    _assert_published_exactly(setup, v2, versions=2)


def test_an_open_draft_missing_from_a_lagging_listing_is_found_after_the_400(
        setup: Setup) -> None:
    setup.build()
    setup.publish()
    v2 = setup.build("107")
    base = setup.state.destinations["zenodo"]["deposition_id"]
    stray = requests.post(f"{setup.sandbox.url}/api/deposit/depositions/{base}/actions/"
                          "newversion", headers={"Authorization": f"Bearer {ZENODO_TOKEN}"},
                          timeout=10)
    assert stray.status_code == 201                       # a draft with inherited files

    class Lagging(ZenodoPublisher):
        listed = 0

        def _list(self, **filters: str) -> list[dict[str, Any]]:
            Lagging.listed += 1
            found = super()._list(**filters)
            return [d for d in found if d["submitted"]] if Lagging.listed == 1 else found

    assert setup.publish(Lagging(setup.dest, sleep=lambda s: None)).results[0].outcome == \
        "published"
    newversions = setup.sandbox.server.requests("POST", "/api/deposit/depositions")
    answers = [e["status"] for e in newversions if e["path"].endswith("/newversion")]
    assert answers == [201, 400]                          # ours hit "Please remove all files"
    _assert_published_exactly(setup, v2, versions=2)
    assert str(stray.json()["id"]) == setup.state.destinations["zenodo"]["record_id"]


def test_draft_mode_leaves_a_verified_draft_until_a_person_publishes_it(
        tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, ZENODO_TOKEN)
    setup = Setup(tmp_path, sandbox, mode="draft")
    v1 = setup.build()
    report = setup.publish()
    assert report.results[0].outcome == "draft"
    assert setup.state.versions[-1]["published"] == {}
    draft_id = setup.state.destinations["zenodo"]["draft_id"]
    draft = next(d for d in sandbox.deposit.depositions() if str(d["id"]) == draft_id)
    assert not draft["submitted"] and draft["metadata"]["version"] == v1.version
    assert {f["filename"]: f"md5:{f['checksum']}" for f in draft["files"]} == v1.md5
    start = len(sandbox.server.log)
    assert setup.publish().results[0].outcome == "draft"      # rerun: verified, nothing sent
    assert setup.uploads(start) == {}
    requests.post(f"{sandbox.url}/api/deposit/depositions/{draft_id}/actions/publish",
                  headers={"Authorization": f"Bearer {ZENODO_TOKEN}"},
                  timeout=10).raise_for_status()
    assert setup.publish().results[0].outcome == "published"  # the person's publish adopted
    _assert_published_exactly(setup, v1, versions=1)


def test_a_garbled_upload_is_deleted_and_nothing_is_published(setup: Setup) -> None:
    built = setup.build()
    path = built.folder / "part-000001.csv"
    data = bytearray(path.read_bytes())
    data[-2] ^= 1                                          # same size, different bytes
    path.write_bytes(bytes(data))
    report = setup.publish()
    assert report.failed
    error = report.results[0].error or ""
    assert "upload of part-000001.csv was garbled" in error
    assert built.md5["part-000001.csv"] in error
    assert "the bad copy was deleted from the draft" in error
    deps = setup.sandbox.deposit.depositions()
    assert len(deps) == 1 and not deps[0]["submitted"]
    assert "part-000001.csv" not in {f["filename"] for f in deps[0]["files"]}


def test_wrong_token_is_a_clear_401(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    setup.build()
    report = setup.publish()
    error = report.results[0].error or ""
    assert report.failed and "refused the credentials" in error and "HTTP 401" in error
    assert "not-the-token" not in error and TOKEN_ENV not in setup.state.path.read_text()
    assert "token environment variable" in error


def test_a_validation_error_names_the_fields(setup: Setup, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    import pipeline.publish.zenodo as zenodo_module

    real = zenodo_module.deposit_metadata

    def without_creators(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**real(*args, **kwargs), "creators": [], "publication_date": "21/11/2026"}

    monkeypatch.setattr(zenodo_module, "deposit_metadata", without_creators)
    setup.build()
    error = setup.publish().results[0].error or ""
    assert "HTTP 400" in error and "A validation error occurred." in error
    assert "metadata.creators: Missing data for required field." in error
    assert "metadata.publication_date: Not a valid date." in error
    assert "the dataset section of the manifest" in error or "deposit:write" in error


def test_persistent_500s_fail_after_bounded_retries(setup: Setup) -> None:
    setup.build()
    setup.sandbox.server.faults.append(FaultRule("/api/deposit", rate=1.0, status=500))
    report = setup.publish()
    error = report.results[0].error or ""
    assert report.failed and "HTTP 500" in error and "Internal server error." in error
    attempts = setup.sandbox.server.requests("GET", "/api/deposit")
    assert [e["status"] for e in attempts] == [500] * 5          # bounded: 1 + 4 retries
    assert setup.sleeps == [1.0, 2.0, 4.0, 8.0]                 # 5 attempts, backoff
    setup.sandbox.server.faults.clear()
    assert setup.publish().results[0].outcome == "published"    # the next run finishes it


def test_429s_are_waited_out_and_persistent_ones_reported(setup: Setup) -> None:
    built = setup.build()
    rule = FaultRule("/api/", rate=0.3, status=429, retry_after=3, seed=4)
    setup.sandbox.server.faults.append(rule)
    assert setup.publish().results[0].outcome == "published"
    assert rule.hits > 0 and setup.sleeps.count(3.0) == rule.hits
    setup.sandbox.server.faults.clear()
    _assert_published_exactly(setup, built, versions=1)

    setup.build("107")
    setup.sandbox.server.faults.append(FaultRule("/api/", rate=1.0, status=429))
    error = setup.publish().results[0].error or ""
    assert "rate-limited after 5 attempts" in error and "HTTP 429" in error


def test_both_real_publishers_are_independent(
        tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """Zenodo publishes while Kaggle lacks credentials; the next run publishes only Kaggle."""
    import tempfile

    for name in ("HOME", "TMPDIR"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "TMPDIR"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv(TOKEN_ENV, ZENODO_TOKEN)
    setup = Setup(tmp_path / "work", sandbox)
    setup.manifest = make_manifest(setup.tmp, destinations={
        "zenodo": {"url": sandbox.url},
        "kaggle": {"dataset": f"{KAGGLE_USERNAME}/code-images-both", "api_url": sandbox.url,
                   "status_timeout_seconds": 30}})
    built = setup.build()

    report = setup.publish()
    outcomes = {r.name: r.outcome for r in report.results}
    assert outcomes == {"zenodo": "published", "kaggle": "failed"}
    assert "KAGGLE_KEY" in (report.results[1].error or "")
    assert list(setup.state.versions[-1]["published"]) == ["zenodo"]

    monkeypatch.setenv("KAGGLE_USERNAME", KAGGLE_USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", KAGGLE_KEY)
    report = setup.publish()
    assert {r.name: r.outcome for r in report.results} == {"zenodo": "up-to-date",
                                                           "kaggle": "published"}
    published = State.load(setup.state.path).versions[-1]["published"]
    assert {"doi", "record_id", "url", "concept_doi", "at"} <= set(published["zenodo"])
    assert published["kaggle"] and setup.state.destinations["kaggle"]
    _assert_published_exactly(setup, built, versions=1)


def test_a_deposition_of_another_work_folder_with_the_same_title_is_never_adopted(
        setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    setup.build()
    setup.publish()
    first = setup.state.destinations["zenodo"]
    other = Setup(tmp_path / "other", setup.sandbox)     # same manifest title, its own state
    other.build()
    with caplog.at_level("WARNING", logger="pipeline.publish.zenodo"):
        assert other.publish().results[0].outcome == "published"
    second = other.state.destinations["zenodo"]
    assert second["concept_id"] != first["concept_id"]
    assert second["dataset_id"] != first["dataset_id"]
    warning = next(r.getMessage() for r in caplog.records if "not adopted" in r.getMessage())
    assert first["deposition_id"] in warning and "destinations.zenodo.deposition_id" in warning
    assert str(other.state.path) in warning
    # the notes carry each dataset's own id: that is what a rerun recognises
    assert first["dataset_id"] in _record(setup, first["record_id"])["metadata"]["notes"]


def test_a_lost_create_answer_adopts_our_draft_and_says_why(
        setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    built = setup.build()
    crashing = CrashingPublisher(setup.dest, "POST", r"/depositions$")
    with pytest.raises(Crash):
        setup.publish(crashing)
    setup.reload()
    with caplog.at_level("WARNING", logger="pipeline.publish.zenodo"):
        assert setup.publish().results[0].outcome == "published"
    message = next(r.getMessage() for r in caplog.records if "adopting" in r.getMessage())
    assert setup.state.destinations["zenodo"]["dataset_id"] in message
    assert str(setup.state.path) in message and "To stop this" in message
    _assert_published_exactly(setup, built, versions=1)
