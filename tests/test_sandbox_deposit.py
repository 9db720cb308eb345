"""The sandbox's legacy deposit API over real sockets (ZENODO_API.md §5, fixtures 1-3).

These are the behaviours a publisher must survive on zenodo.org: status codes, full-replacement
metadata with validation, two upload APIs with two checksum forms, newversion returning a draft
that inherits every file, "Please remove all files first.", and a published record that can be
read back and downloaded.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest
import requests

from pipeline.sandbox import ZENODO_TOKEN, Sandbox

AUTH = {"Authorization": f"Bearer {ZENODO_TOKEN}"}


@pytest.fixture
def api(sandbox: Sandbox) -> requests.Session:
    session = requests.Session()
    session.headers.update(AUTH)
    return session


def metadata(**changes: object) -> dict:
    base = {"upload_type": "dataset", "title": "Code images", "creators": [{"name": "Doe, Jane"}],
            "description": "<p>Code as images.</p>", "publication_date": "2026-11-21",
            "version": "1.0.0", "license": "CC-BY-4.0", "keywords": ["code"]}
    return {"metadata": {**base, **changes}}


def create(api: requests.Session, box: Sandbox) -> dict:
    r = api.post(f"{box.url}/api/deposit/depositions", json={})
    assert r.status_code == 201, r.text
    return r.json()


def publish_first(api: requests.Session, box: Sandbox, files: dict[str, bytes]) -> dict:
    dep = create(api, box)
    for name, data in files.items():
        assert api.put(f"{dep['links']['bucket']}/{name}", data=data).status_code == 201
    assert api.put(dep["links"]["self"], json=metadata()).status_code == 200
    r = api.post(dep["links"]["publish"])
    assert r.status_code == 202, r.text
    return r.json()


def test_every_route_needs_a_token(sandbox: Sandbox) -> None:
    url = f"{sandbox.url}/api/deposit/depositions"
    for r in (requests.get(url, timeout=10), requests.post(url, json={}, timeout=10),
              requests.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=10),
              requests.put(f"{sandbox.url}/api/files/{uuid.uuid4()}/a.txt", data=b"x",
                           timeout=10)):
        assert r.status_code == 401
        assert r.json()["message"].startswith("The server could not verify")
        assert "X-RateLimit-Remaining" in r.headers and "Retry-After" in r.headers


def test_create_looks_like_fixture_1(api: requests.Session, sandbox: Sandbox) -> None:
    dep = create(api, sandbox)
    assert {"conceptrecid", "created", "files", "id", "links", "metadata", "modified", "owner",
            "record_id", "state", "submitted", "title"} <= set(dep)
    assert (dep["state"], dep["submitted"], dep["files"], dep["doi"]) == (
        "unsubmitted", False, [], "")
    assert dep["conceptrecid"] != str(dep["id"]) and dep["record_id"] == dep["id"]
    assert dep["metadata"]["prereserve_doi"] == {"doi": f"10.5281/zenodo.{dep['id']}",
                                                 "recid": dep["id"]}
    assert {"bucket", "discard", "edit", "files", "html", "latest_draft", "latest_draft_html",
            "publish", "self", "newversion"} <= set(dep["links"])
    assert dep["links"]["latest_draft"] == dep["links"]["self"]
    uuid.UUID(dep["links"]["bucket"].rsplit("/", 1)[1])
    listed = api.get(f"{sandbox.url}/api/deposit/depositions").json()
    assert isinstance(listed, list) and listed[0]["id"] == dep["id"]


def test_metadata_is_validated_and_replaced_whole(api: requests.Session, sandbox: Sandbox
                                                  ) -> None:
    dep = create(api, sandbox)
    r = api.put(dep["links"]["self"], json={"metadata": {"title": "Only a title"}})
    assert r.status_code == 400 and r.json()["message"] == "A validation error occurred."
    assert {e["field"] for e in r.json()["errors"]} == {
        "metadata.upload_type", "metadata.creators", "metadata.description",
        "metadata.publication_date"}
    assert all(e["messages"] == ["Missing data for required field."] for e in r.json()["errors"])
    bad = api.put(dep["links"]["self"], json=metadata(upload_type="code", creators=[{}]))
    assert {e["field"] for e in bad.json()["errors"]} == {"metadata.upload_type",
                                                          "metadata.creators.0.name"}
    first = api.put(dep["links"]["self"], json=metadata())
    assert first.status_code == 200 and first.json()["metadata"]["keywords"] == ["code"]
    replaced = dict(metadata()["metadata"])
    del replaced["keywords"]
    second = api.put(dep["links"]["self"], json={"metadata": replaced}).json()
    assert "keywords" not in second["metadata"]  # a PUT expects all the metadata
    raw = api.put(dep["links"]["self"], data='{"metadata": {}}',
                  headers={"Content-Type": "text/plain"})
    assert raw.status_code == 415


def test_uploads_bucket_and_multipart(api: requests.Session, sandbox: Sandbox) -> None:
    dep = create(api, sandbox)
    data = b"part one \x00\xff\r\n" * 100
    r = api.put(f"{dep['links']['bucket']}/part-1.h5", data=data)
    assert r.status_code == 201
    body = r.json()
    assert (body["key"], body["size"], body["checksum"]) == (
        "part-1.h5", len(data), "md5:" + hashlib.md5(data).hexdigest())
    assert body["is_head"] and not body["delete_marker"]
    upload = sandbox.server.requests("PUT", "/api/files/")[-1]
    assert upload["bytes_in"] == len(data)
    old = api.post(dep["links"]["files"], files={"file": ("index.csv", b"id\n1\n")},
                   data={"name": "index.csv"})
    assert old.status_code == 201
    assert old.json()["checksum"] == hashlib.md5(b"id\n1\n").hexdigest()  # bare hex
    assert set(old.json()) == {"id", "filename", "filesize", "checksum", "links"}
    assert set(old.json()["links"]) == {"self", "download"}
    listed = api.get(dep["links"]["files"]).json()
    assert [(f["filename"], f["checksum"]) for f in listed] == [
        ("part-1.h5", hashlib.md5(data).hexdigest()), ("index.csv", old.json()["checksum"])]
    assert api.put(f"{dep['links']['bucket']}/part-1.h5", data=b"new").json()["size"] == 3
    assert len(api.get(dep["links"]["files"]).json()) == 2  # same key: replaced
    empty = api.put(f"{dep['links']['bucket']}/empty.txt", data=b"")
    assert (empty.status_code, empty.json()["message"]) == (400, "Empty files are not accepted.")
    file_id = old.json()["id"]
    assert api.delete(f"{dep['links']['files']}/{file_id}").status_code == 204
    assert [f["filename"] for f in api.get(dep["links"]["files"]).json()] == ["part-1.h5"]
    assert api.delete(f"{dep['links']['files']}/{file_id}").status_code == 404


def test_publish_needs_files_then_the_record_reads_back(api: requests.Session,
                                                        sandbox: Sandbox) -> None:
    dep = create(api, sandbox)
    api.put(dep["links"]["self"], json=metadata())
    r = api.post(dep["links"]["publish"])
    assert r.status_code == 400
    assert r.json()["errors"] == [{"field": "files.enabled", "messages": [
        "Missing uploaded files. To disable files for this record please mark it as "
        "metadata-only."]}]
    data = b"\x89HDF\r\n" + bytes(range(256)) * 10
    api.put(f"{dep['links']['bucket']}/part-1.h5", data=data)
    published = api.post(dep["links"]["publish"])
    assert published.status_code == 202
    body = published.json()
    assert (body["state"], body["submitted"]) == ("done", True)
    assert body["doi"] == f"10.5072/zenodo.{dep['id']}"
    assert body["metadata"]["prereserve_doi"]["doi"] == f"10.5281/zenodo.{dep['id']}"  # a trap
    record = requests.get(f"{sandbox.url}/api/records/{dep['id']}", timeout=10).json()
    assert (record["doi"], record["conceptrecid"]) == (body["doi"], dep["conceptrecid"])
    assert record["metadata"]["resource_type"] == {"title": "Dataset", "type": "dataset"}
    assert record["metadata"]["license"] == {"id": "cc-by-4.0"}
    assert record["metadata"]["version"] == "1.0.0"
    [entry] = record["files"]
    assert entry["checksum"] == "md5:" + hashlib.md5(data).hexdigest()
    assert requests.get(entry["links"]["self"], timeout=10).content == data
    assert api.put(f"{dep['links']['bucket']}/late.txt", data=b"x").status_code == 403
    found = requests.get(f"{sandbox.url}/api/records", timeout=10,
                         params={"q": f"conceptrecid:{dep['conceptrecid']}"}).json()
    assert [h["id"] for h in found["hits"]["hits"]] == [dep["id"]]


def test_a_record_holds_at_most_100_files(api: requests.Session, sandbox: Sandbox) -> None:
    dep = create(api, sandbox)
    api.put(dep["links"]["self"], json=metadata())
    for i in range(100):
        assert api.put(f"{dep['links']['bucket']}/part-{i:03d}.h5",
                       data=b"%d" % i).status_code == 201
    r = api.put(f"{dep['links']['bucket']}/part-100.h5", data=b"x")
    assert (r.status_code, r.json()) == (400, {"status": 400, "message": "Too many files."})
    assert api.put(f"{dep['links']['bucket']}/part-000.h5", data=b"new").status_code == 201
    assert len(api.get(dep["links"]["files"]).json()) == 100
    assert api.post(dep["links"]["publish"]).status_code == 202


def test_a_per_record_byte_quota_refuses_the_upload_that_passes_it() -> None:
    with Sandbox(deposit_max_bytes=1000, deposit_max_files=3) as box:
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {ZENODO_TOKEN}"
        dep = api.post(f"{box.url}/api/deposit/depositions", json={}).json()
        bucket = dep["links"]["bucket"]
        assert api.put(f"{bucket}/a", data=b"x" * 600).status_code == 201
        r = api.put(f"{bucket}/b", data=b"x" * 401)
        assert (r.status_code, r.json()) == (400, {"status": 400,
                                                   "message": "Bucket quota exceeded."})
        assert api.put(f"{bucket}/a", data=b"x" * 1000).status_code == 201   # replaced: fits
        assert box.deposit.peak_bytes()[dep["id"]] == 1000
        assert [f["filename"] for f in api.get(dep["links"]["files"]).json()] == ["a"]


def test_newversion_returns_a_draft_that_inherits_every_file(api: requests.Session,
                                                             sandbox: Sandbox) -> None:
    v1 = publish_first(api, sandbox, {"part-1.h5": b"one", "index.csv": b"id\n"})
    r = api.post(v1["links"]["newversion"])
    assert r.status_code == 201
    draft = r.json()
    assert draft["id"] != v1["id"] and draft["conceptrecid"] == v1["conceptrecid"]
    assert draft["links"]["latest_draft"] == draft["links"]["self"]
    assert (draft["state"], draft["submitted"]) == ("unsubmitted", False)
    assert sorted((f["filename"], f["checksum"]) for f in draft["files"]) == sorted(
        (f["filename"], f["checksum"]) for f in v1["files"])
    assert "version" not in draft["metadata"] and "publication_date" not in draft["metadata"]
    assert draft["metadata"]["title"] == "Code images"
    assert api.get(v1["links"]["self"]).json()["links"]["latest_draft"] == draft["links"]["self"]

    again = api.post(v1["links"]["newversion"])
    assert (again.status_code, again.json()) == (400, {
        "status": 400, "message": "A validation error occurred.",
        "errors": [{"field": "files.enabled", "messages": ["Please remove all files first."]}]})
    for f in draft["files"]:
        assert api.delete(f"{draft['links']['files']}/{f['id']}").status_code == 204
    reused = api.post(v1["links"]["newversion"])
    assert reused.status_code == 201 and reused.json()["id"] == draft["id"]
    assert len(reused.json()["files"]) == 2  # imported again

    index = next(f for f in reused.json()["files"] if f["filename"] == "index.csv")
    api.delete(f"{draft['links']['files']}/{index['id']}")
    api.put(f"{draft['links']['bucket']}/part-2.h5", data=b"two")
    api.put(draft["links"]["self"], json=metadata(version="2.0.0"))
    v2 = api.post(draft["links"]["publish"])
    assert v2.status_code == 202
    record = requests.get(f"{sandbox.url}/api/records/{draft['id']}", timeout=10).json()
    assert sorted(f["key"] for f in record["files"]) == ["part-1.h5", "part-2.h5"]
    assert record["metadata"]["relations"]["version"][0] == {
        "index": 1, "is_last": True, "parent": {"pid_type": "recid",
                                                "pid_value": v1["conceptrecid"]}}
    versions = requests.get(f"{sandbox.url}/api/records/{v1['id']}/versions", timeout=10).json()
    assert versions["hits"]["total"] == 2
    latest = requests.get(f"{sandbox.url}/api/records", timeout=10,
                          params={"q": f"conceptrecid:{v1['conceptrecid']}"}).json()
    assert [h["id"] for h in latest["hits"]["hits"]] == [draft["id"]]
    assert api.get(v1["links"]["self"]).json()["links"]["latest"].endswith(f"/{draft['id']}")


def test_newversion_needs_a_published_record(api: requests.Session, sandbox: Sandbox) -> None:
    dep = create(api, sandbox)
    r = api.post(dep["links"]["newversion"])
    assert r.status_code == 404


def test_discard_edit_and_delete(api: requests.Session, sandbox: Sandbox) -> None:
    v1 = publish_first(api, sandbox, {"a.txt": b"a"})
    draft = api.post(v1["links"]["newversion"]).json()
    assert api.post(draft["links"]["discard"]).status_code == 201
    assert api.get(draft["links"]["self"]).status_code == 404
    assert api.get(v1["links"]["self"]).json()["links"]["latest_draft"] == v1["links"]["self"]

    assert api.put(v1["links"]["self"], json=metadata(title="Renamed")).status_code == 403
    edit = api.post(v1["links"]["edit"])
    assert edit.status_code == 201 and edit.json()["state"] == "inprogress"
    assert api.put(v1["links"]["self"], json=metadata(title="Renamed")).status_code == 200
    assert api.post(v1["links"]["publish"]).status_code == 202
    record = requests.get(f"{sandbox.url}/api/records/{v1['id']}", timeout=10).json()
    assert record["title"] == "Renamed" and record["revision"] == 2

    loose = create(api, sandbox)
    assert api.delete(loose["links"]["self"]).status_code == 204
    assert api.get(loose["links"]["self"]).status_code == 404
    assert api.delete(v1["links"]["self"]).status_code == 403


def test_listing_filters_by_status_and_query(api: requests.Session, sandbox: Sandbox) -> None:
    v1 = publish_first(api, sandbox, {"a.txt": b"a"})
    draft = api.post(v1["links"]["newversion"]).json()
    url = f"{sandbox.url}/api/deposit/depositions"
    assert [d["id"] for d in api.get(url, params={"status": "draft"}).json()] == [draft["id"]]
    assert [d["id"] for d in api.get(url, params={"status": "published"}).json()] == [v1["id"]]
    same = api.get(url, params={"q": f"conceptrecid:{v1['conceptrecid']}"}).json()
    assert {d["id"] for d in same} == {v1["id"], draft["id"]}
