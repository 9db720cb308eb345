"""The sandbox's Zenodo records API over real sockets: it must be as strict as zenodo.org.

Every assertion is a behaviour of ZENODO_API.md (§1 search, §2.1 shape, §4 rate limits, §5.6
errors) that a harvester or fetcher could get wrong against a kinder fake.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import quote

import pytest
import requests

from pipeline.http import HttpClient
from pipeline.records import parse_record
from pipeline.sandbox import ZENODO_TOKEN, Sandbox
from pipeline.sandbox.server import FaultRule

AUTH = {"Authorization": f"Bearer {ZENODO_TOKEN}"}
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
ARCHIVE = (".zip", ".tar.gz")
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    """One sandbox shared by the tests that only read (the mutating ones use ``sandbox``)."""
    with Sandbox(seed=0, search_per_minute=None) as shared:
        yield shared


def search(box: Sandbox, headers: dict | None = None, **params: object) -> requests.Response:
    return requests.get(f"{box.url}/api/records", params=params, headers=headers, timeout=30)


def ids_of(box: Sandbox, **params: object) -> list[int]:
    """All hit ids of a search, paging with a token (100 per page)."""
    out, page = [], 1
    while True:
        r = search(box, AUTH, size=100, page=page, **params)
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]["hits"]
        out += [h["id"] for h in hits]
        if len(hits) < 100:
            return out
        page += 1


def software(box: Sandbox) -> list[dict]:
    return [r for r in box.zenodo.all() if r["metadata"]["resource_type"]["type"] == "software"]


def test_hits_have_the_current_shape_and_parse(box: Sandbox) -> None:
    body = search(box, size=25).json()
    assert set(body) == {"hits", "aggregations", "links", "sortBy"}
    hits = body["hits"]["hits"]
    assert hits and body["hits"]["total"] == len(hits)
    slashed = 0
    for hit in hits:
        record = parse_record(hit)
        assert record.id == hit["recid"] == str(hit["id"])
        assert hit["doi"] == f"10.5281/zenodo.{hit['id']}"
        assert hit["conceptdoi"] == f"10.5281/zenodo.{hit['conceptrecid']}"
        for stamp in (hit["created"], hit["updated"], hit["modified"]):
            assert STAMP.match(stamp), stamp
        assert hit["status"] == "published" and hit["state"] == "done" and hit["submitted"]
        assert isinstance(hit["owners"][0]["id"], str)
        assert hit["metadata"]["relations"]["version"][0]["parent"]["pid_value"] == \
            hit["conceptrecid"]
        assert {"self", "self_html", "doi", "parent", "files", "archive", "latest",
                "versions"} <= set(hit["links"])
        for f in hit["files"]:
            assert re.fullmatch(r"md5:[0-9a-f]{32}", f["checksum"])
            assert f["links"]["self"].endswith(f"/files/{quote(f['key'], safe='')}/content")
            slashed += "/" in f["key"]
    assert slashed, "GitHub-release keys contain a slash"


def test_page_size_caps_follow_authentication(box: Sandbox) -> None:
    r = search(box, size=26)
    assert r.status_code == 400
    assert r.json() == {"status": 400, "message": "A validation error occurred.", "errors": [
        {"field": "size", "messages": ["Page size cannot be greater than 25. Please use "
                                       "authenticated requests to increase the limit to 100."]}]}
    assert search(box, size=25).status_code == 200
    assert search(box, AUTH, size=100).status_code == 200
    r = search(box, AUTH, size=101)
    assert r.json()["errors"][0]["messages"] == ["Page size cannot be greater than 100."]
    assert search(box, size="ten").json()["errors"][0]["messages"] == ["Not a valid integer."]
    r = search(box, {"Authorization": "Bearer wrong"}, size=10)
    assert r.status_code == 401
    assert r.json()["message"].startswith("The server could not verify that you are authorized")


def test_options_set_the_page_caps() -> None:
    with Sandbox(search_per_minute=None, anonymous_page_max=5, concepts=3) as box:
        assert search(box, size=6).status_code == 400
        assert search(box, size=5).status_code == 200


def test_nothing_beyond_the_10000th_result(box: Sandbox) -> None:
    total = search(box).json()["hits"]["total"]
    r = search(box, size=25, page=401)
    assert (r.status_code, r.json()) == (400, {"status": 400,
                                               "message": "Invalid querystring parameters."})
    assert search(box, AUTH, size=100, page=101).status_code == 400
    last = search(box, size=25, page=400)
    assert last.status_code == 200
    assert last.json()["hits"] == {"hits": [], "total": total}


def test_sort_options(box: Sandbox) -> None:
    def order(sort: str) -> list[dict]:
        r = search(box, AUTH, size=100, all_versions="true", sort=sort)
        assert r.status_code == 200 and r.json()["sortBy"] == sort
        return r.json()["hits"]["hits"]

    def when(hit: dict, key: str) -> datetime:
        return datetime.fromisoformat(hit[key])

    asc = order("updated-asc")
    assert [when(h, "updated") for h in asc] == sorted(when(h, "updated") for h in asc)
    desc = order("updated-desc")
    assert [when(h, "updated") for h in desc] == sorted((when(h, "updated") for h in desc),
                                                        reverse=True)
    newest = order("newest")
    assert [when(h, "created") for h in newest] == sorted((when(h, "created") for h in newest),
                                                          reverse=True)
    assert [h["id"] for h in order("mostrecent")] == [h["id"] for h in newest]  # -created!
    assert [h["id"] for h in newest] != [h["id"] for h in desc]
    oldest = order("oldest")
    assert [when(h, "created") for h in oldest] == sorted(when(h, "created") for h in oldest)
    assert search(box).json()["sortBy"] == "newest"
    assert search(box, q="stellarfit").json()["sortBy"] == "bestmatch"
    r = search(box, sort="updated")
    assert (r.status_code, r.json()) == (400, {"status": 400,
                                               "message": "Invalid sort option 'updated'."})


def _window(box: Sandbox) -> tuple[str, str, set[int]]:
    records = sorted(box.zenodo.all(), key=lambda r: r["updated"])
    low, high = records[3]["updated"], records[12]["updated"]
    expected = {r["id"] for r in records if low <= r["updated"] < high
                and r["metadata"]["resource_type"]["type"] == "software"}
    return low, high, expected


def test_unquoted_offset_silently_falls_back_to_free_text(box: Sandbox) -> None:
    low, high, expected = _window(box)
    assert expected and low.endswith("+00:00")

    def query(lo: str, hi: str) -> set[int]:
        return set(ids_of(box, q=f"updated:[{lo} TO {hi}}} AND resource_type.type:software",
                          all_versions="true", sort="updated-asc"))

    assert query(f'"{low}"', f'"{high}"') == expected
    zulu = [t.replace("+00:00", "Z") for t in (low, high)]
    assert query(*zulu) == expected
    escaped = [t.replace(":", "\\:") for t in (low, high)]
    assert query(*escaped) == expected
    trap = search(box, AUTH, size=100, all_versions="true",
                  q=f"updated:[{low} TO {high}}} AND resource_type.type:software")
    assert trap.status_code == 200  # no error ...
    assert {h["id"] for h in trap.json()["hits"]["hits"]} != expected  # ... wrong results


def test_range_bounds_and_comparisons(box: Sandbox) -> None:
    record = software(box)[0]
    rid, t, day = record["id"], record["updated"], record["updated"][:10]

    def total(clause: str) -> int:
        r = search(box, AUTH, q=f"recid:{rid} AND {clause}", all_versions="true")
        assert r.status_code == 200, r.text
        return r.json()["hits"]["total"]

    assert total(f'updated:["{t}" TO *]') == 1
    assert total(f'updated:{{"{t}" TO *]') == 0
    assert total(f'updated:[* TO "{t}"}}') == 0
    assert total(f'updated:[* TO "{t}"]') == 1
    assert total(f"updated:[{day} TO {day}]") == 1  # a date-only upper bound ends the day
    assert total(f"updated:[* TO {day}}}") == 0
    assert total(f"updated:>={day}") == 1
    assert total(f"updated:<{day}") == 0
    assert total(f"updated:>={day}T00\\:00\\:00Z") == 1
    r = search(box, q=f"updated:>={day}T00:00:00Z")  # Lucene refuses the bare colons
    assert (r.status_code, r.json()["message"]) == (400, "Invalid query string syntax.")
    assert total("updated:[2000-01-01 TO now]") == 1
    assert total("created:[now-1d/d TO now]") == 0


def test_doi_must_be_quoted_and_version_means_the_index(box: Sandbox) -> None:
    record = software(box)[0]
    quoted = search(box, q=f'doi:"{record["doi"]}"', all_versions="true").json()
    assert [h["id"] for h in quoted["hits"]["hits"]] == [record["id"]]
    assert search(box, q=f"doi:{record['doi']}").status_code == 500  # an unbalanced regex
    firsts = search(box, AUTH, q="version:1", all_versions="true", size=100).json()
    assert firsts["hits"]["hits"]
    assert all(h["metadata"]["relations"]["version"][0]["index"] == 0
               for h in firsts["hits"]["hits"])
    assert search(box, q="title:'broken").status_code == 200  # luqum fails: free text


def test_latest_versions_only_unless_all_versions(box: Sandbox) -> None:
    records = box.zenodo.all()
    concepts = {r["conceptrecid"] for r in records}
    latest = search(box, AUTH, size=100).json()["hits"]["hits"]
    assert sorted(h["conceptrecid"] for h in latest) == sorted(concepts)
    assert all(h["metadata"]["relations"]["version"][0]["is_last"] for h in latest)
    assert len(records) > len(concepts)
    for value in ("true", "1", ""):  # ?all_versions without a value counts as true
        assert search(box, AUTH, size=100, all_versions=value).json()["hits"]["total"] == \
            len(records)
    assert search(box, all_versions="false").json()["hits"]["total"] == len(concepts)
    r = search(box, all_versions="maybe")
    assert r.json()["errors"] == [{"field": "allversions", "messages": ["Not a valid boolean."]}]


def test_type_and_community_filters(box: Sandbox) -> None:
    soft = set(ids_of(box, type="software", all_versions="true"))
    assert soft == {r["id"] for r in software(box)}
    assert set(ids_of(box, q="resource_type.type:software", all_versions="true")) == soft
    notebooks = ids_of(box, type="software", subtype="computationalnotebook")
    assert len(notebooks) == 1 and notebooks[0] in soft
    datasets = ids_of(box, type="dataset")
    assert len(datasets) == 2 and not set(datasets) & soft
    assert len(ids_of(box, communities="lexibank")) == 1
    everything = search(box).json()["hits"]["total"]
    assert search(box, communities="no-such-community").json()["hits"]["total"] == everything


def test_rate_limit_headers_on_every_response(box: Sandbox) -> None:
    record = software(box)[0]
    responses = [search(box), requests.get(record["links"]["self"], timeout=10),
                 requests.get(record["files"][0]["links"]["self"], timeout=10),
                 requests.get(f"{box.url}/api/records/1", timeout=10)]
    for r in responses:
        for name in RATE_HEADERS:
            assert r.headers[name].isdigit(), (r.url, name)
        assert int(r.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert responses[0].status_code == 200 and int(responses[0].headers["Retry-After"]) > 0


def test_search_rate_limit_answers_429_per_client() -> None:
    with Sandbox(search_per_minute=3, concepts=2) as box:
        seen = [search(box, headers={"User-Agent": "harvester/1"}) for _ in range(4)]
        assert [r.status_code for r in seen] == [200, 200, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in seen] == ["2", "1", "0", "0"]
        assert seen[-1].json() == {"message": "3 per 1 minute", "status": 429}
        assert 0 < int(seen[-1].headers["Retry-After"]) <= 60
        assert search(box, headers={"User-Agent": "other/2"}).status_code == 200
        record = box.zenodo.all()[0]
        assert requests.get(record["links"]["self"], headers={"User-Agent": "harvester/1"},
                            timeout=10).status_code == 200  # records are not the search bucket


def test_unknown_and_deleted_records(sandbox: Sandbox) -> None:
    for missing in ("1", "not-a-number"):
        r = requests.get(f"{sandbox.url}/api/records/{missing}", timeout=10)
        assert (r.status_code, r.json()) == (404, {
            "status": 404, "message": "The persistent identifier does not exist."})
    record = software(sandbox)[0]
    sandbox.zenodo.delete_record(record["id"])
    r = requests.get(record["links"]["self"], timeout=10)
    assert r.status_code == 410
    body = r.json()
    assert (body["status"], body["message"]) == (410, "Record deleted")
    assert set(body["tombstone"]) == {"note", "removed_by", "removal_date", "citation_text",
                                      "is_visible", "removal_reason"}
    assert requests.get(record["files"][0]["links"]["self"], timeout=10).status_code == 410
    assert record["id"] not in ids_of(sandbox, all_versions="true")


def test_downloads_match_their_md5_and_honour_range(box: Sandbox) -> None:
    for record in box.zenodo.all():
        for f in record["files"]:
            data = requests.get(f["links"]["self"], timeout=30).content
            assert (len(data), "md5:" + hashlib.md5(data).hexdigest()) == \
                (f["size"], f["checksum"]), f["key"]
    entry = next(f for r in software(box) for f in r["files"] if f["key"].endswith(".zip"))
    full = requests.get(entry["links"]["self"], timeout=30).content
    part = requests.get(entry["links"]["self"], headers={"Range": "bytes=10-99"}, timeout=30)
    assert part.status_code == 206 and part.content == full[10:100]
    assert part.headers["Content-Range"] == f"bytes 10-99/{len(full)}"
    tail = requests.get(entry["links"]["self"], headers={"Range": "bytes=-16"}, timeout=30)
    assert tail.content == full[-16:]
    beyond = requests.get(entry["links"]["self"], headers={"Range": f"bytes={len(full)}-"},
                          timeout=30)
    assert beyond.status_code == 416


def _members(data: bytes, key: str) -> dict[str, bytes]:
    if key.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_archives_hold_the_awkward_files(box: Sandbox) -> None:
    checked = 0
    for record in software(box):
        for f in record["files"]:
            if not f["key"].startswith(record["metadata"]["related_identifiers"][0]["identifier"]
                                       .split("/")[3] + "/"):
                continue  # only the GitHub-release archives <owner>/<repo>-<tag>.zip|.tar.gz
            files = _members(requests.get(f["links"]["self"], timeout=30).content, f["key"])
            tops = {name.split("/", 1)[0] for name in files}
            assert len(tops) == 1
            tree = {name.split("/", 1)[1]: data for name, data in files.items()}
            for required in (".github/workflows/ci.yml", ".git/config", ".gitignore"):
                assert required in tree
            assert {p.rsplit(".", 1)[-1] for p in tree} >= {
                "py", "js", "c", "java", "rs", "go", "R", "jl", "md", "yaml"}
            assert any(b"\x00" in d[:8192] for p, d in tree.items() if p.endswith(".png"))
            assert any(len(d) > 100_000 for d in tree.values())
            assert any(d == b"" for d in tree.values())
            assert any(b"\r\n" in d for d in tree.values())
            assert any(re.search(rb"\r(?!\n)", d) for d in tree.values())
            assert any(b"\t" in d for d in tree.values())
            assert any(d and not d.endswith(b"\n") and not d.endswith(b"\r")
                       for p, d in tree.items() if not p.endswith(".png"))
            assert any(len(line) > 80 for d in tree.values() for line in d.split(b"\n"))
            readme = tree["README.md"].decode()
            assert "é" in readme and "€" in readme and "🚀" in readme
            assert any(p.count("/") >= 4 for p in tree)
            checked += 1
    assert checked >= 5


def test_some_records_need_the_github_fallback(box: Sandbox) -> None:
    records = software(box)
    fallback = [r for r in records if not any(f["key"].endswith(ARCHIVE) for f in r["files"])]
    assert len(fallback) >= 2
    assert any(sum(f["key"].endswith(ARCHIVE) for f in r["files"]) == 2 for r in records)
    for record in fallback:
        ref = parse_record(record).github
        assert ref is not None
        url = f"{box.url}/{ref.owner}/{ref.repo}/tar.gz/{ref.ref}"
        r = requests.get(url, timeout=30)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-gzip"
        names = _members(r.content, "x.tar.gz")
        tag = ref.ref[1:] if re.match(r"v\d", ref.ref) else ref.ref  # codeload drops the v
        top = f"{ref.repo}-{tag}"
        assert {n.split("/", 1)[0] for n in names} == {top}
        zipped = requests.get(f"{box.url}/{ref.owner}/{ref.repo}/zip/refs/tags/{ref.ref}",
                              timeout=30)
        assert {n.split("/", 1)[1] for n in _members(zipped.content, "x.zip")} == \
            {n.split("/", 1)[1] for n in names}
    missing = requests.get(f"{box.url}/nobody/nothing/tar.gz/v1.0", timeout=10)
    assert (missing.status_code, missing.text) == (404, "404: Not Found")
    assert search(box).headers["Content-Type"] == "application/json"


def test_github_and_zenodo_archives_hold_the_same_files(box: Sandbox) -> None:
    record = next(r for r in software(box)
                  if len(r["files"]) == 1 and r["files"][0]["key"].endswith(".zip"))
    ref = parse_record(record).github
    zenodo = _members(requests.get(record["files"][0]["links"]["self"], timeout=30).content,
                      ".zip")
    github = _members(requests.get(f"{box.url}/{ref.owner}/{ref.repo}/tar.gz/{ref.ref}",
                                   timeout=30).content, ".tar.gz")
    strip = lambda files: {n.split("/", 1)[1]: d for n, d in files.items()}  # noqa: E731
    assert strip(zenodo) == strip(github)
    assert {n.split("/", 1)[0] for n in zenodo} != {n.split("/", 1)[0] for n in github}


def test_new_and_changed_records_show_up_for_the_next_harvest(sandbox: Sandbox) -> None:
    before = max(r["updated"] for r in sandbox.zenodo.all())
    added = sandbox.zenodo.add_records(4)
    assert all(r["updated"] > before for r in added)
    since = set(ids_of(sandbox, q=f'updated:{{"{before}" TO *]', all_versions="true"))
    assert since == {r["id"] for r in added}
    new_version = next(r for r in added if len(sandbox.zenodo.versions(r["conceptrecid"])) > 1)
    older = sandbox.zenodo.versions(new_version["conceptrecid"])[-2]
    assert not sandbox.zenodo.get(older)["metadata"]["relations"]["version"][0]["is_last"]
    assert older not in ids_of(sandbox)

    target = software(sandbox)[0]
    changed = sandbox.zenodo.update_record(target["id"], files=True)
    assert changed["revision"] == target["revision"] + 1
    assert changed["updated"] > max(r["updated"] for r in added)
    assert changed["files"][0]["checksum"] != target["files"][0]["checksum"]
    data = requests.get(changed["files"][0]["links"]["self"], timeout=30).content
    assert "md5:" + hashlib.md5(data).hexdigest() == changed["files"][0]["checksum"]


def test_versions_listing_and_concept_redirect(box: Sandbox) -> None:
    concept = next(c for c in {r["conceptrecid"] for r in box.zenodo.all()}
                   if len(box.zenodo.versions(c)) >= 2)
    versions = box.zenodo.versions(concept)
    r = requests.get(f"{box.url}/api/records/{versions[0]}/versions", timeout=10).json()
    assert r["hits"]["total"] == len(versions) and r["sortBy"] == "version"
    assert [h["id"] for h in r["hits"]["hits"]] == versions[::-1]
    latest = requests.get(f"{box.url}/api/records/{versions[0]}/versions/latest", timeout=10)
    assert latest.json()["id"] == versions[-1]
    assert requests.get(f"{box.url}/api/records/{concept}", timeout=10).json()["id"] == \
        versions[-1]


def test_a_retrying_client_survives_injected_429s(sandbox: Sandbox) -> None:
    rule = FaultRule("/api/records", rate=0.2, seed=3)
    sandbox.server.faults.append(rule)
    client = HttpClient("zenodo", base_url=sandbox.url, sleep=lambda s: None, retries=10)
    ids = []
    for page in range(1, 4):
        r = client.request("GET", "/api/records", stage="detect",
                           params={"size": 5, "page": page, "all_versions": "true"})
        ids += [h["id"] for h in r.json()["hits"]["hits"]]
    for rid in ids:
        assert client.request("GET", f"/api/records/{rid}", stage="fetch").json()["id"] == rid
    assert len(ids) == 15 and rule.hits > 0
    assert any(e["status"] == 429 for e in sandbox.server.requests("GET", "/api/records"))


def test_a_bulk_day_needs_bisected_windows(sandbox: Sandbox) -> None:
    started = time.monotonic()
    made = sandbox.zenodo.add_bulk(10_500, "2026-11-20")
    assert time.monotonic() - started < 20
    assert len(made) == 10_500 + 210
    day = "updated:[2026-11-20 TO 2026-11-21}"
    whole = search(sandbox, AUTH, q=day, type="software", size=100).json()["hits"]["total"]
    assert whole == 10_500
    assert search(sandbox, AUTH, q=day, size=1).json()["hits"]["total"] == 10_710
    assert search(sandbox, AUTH, q=day, type="software", size=100, page=101).status_code == 400
    halves = ["updated:[2026-11-20T00:00:00Z TO 2026-11-20T12:00:00Z}",
              "updated:[2026-11-20T12:00:00Z TO 2026-11-21T00:00:00Z}"]
    seen: list[int] = []
    for half in halves:
        ids = ids_of(sandbox, q=half, type="software", sort="updated-asc", all_versions="true")
        assert len(ids) < 10_000
        seen += ids
    assert len(seen) == len(set(seen)) == 10_500
    record = sandbox.zenodo.get(seen[-1])
    data = requests.get(record["files"][0]["links"]["self"], timeout=30).content
    assert "md5:" + hashlib.md5(data).hexdigest() == record["files"][0]["checksum"]


@pytest.mark.parametrize("q", ["", "stellarfit", "keywords:python OR keywords:julia",
                               "NOT resource_type.type:software", "+title:genome -title:kit"])
def test_queries_never_fail_on_valid_syntax(box: Sandbox, q: str) -> None:
    r = search(box, q=q, all_versions="true")
    assert r.status_code == 200 and r.json()["hits"]["total"] >= 0
