"""Records in the three JSON shapes Zenodo has served parse to the same fields."""

import dataclasses
import json
from pathlib import Path

import pytest

from pipeline.errors import ForeignDataError
from pipeline.records import Record, github_ref, normalise_md5, parse_record

FIXTURES = Path(__file__).parent / "fixtures"
SHAPES = ["record_current_2026.json", "record_transitional_oct2023.json",
          "record_legacy_2022.json"]


def load(name: str) -> Record:
    return parse_record(json.loads((FIXTURES / name).read_text()))


def without_urls(record: Record) -> Record:
    files = tuple(dataclasses.replace(f, url="") for f in record.files)
    return dataclasses.replace(record, files=files)


@pytest.mark.parametrize("name", SHAPES)
def test_every_shape_gives_the_documented_fields(name: str) -> None:
    r = load(name)
    assert r.id == "18800123"
    assert r.concept_id == "18800100"
    assert r.version == "v2.1.0"
    assert r.doi == "10.5281/zenodo.18800123"
    assert r.concept_doi == "10.5281/zenodo.18800100"
    assert r.created == "2026-03-02T10:15:42.123456+00:00"
    assert r.updated == "2026-03-04T08:00:01.654321+00:00"
    assert r.revision == 4
    assert r.title == "astro-lab/skyfit: v2.1.0"
    assert r.license == "mit"
    assert r.resource_type == "software"
    assert [(f.key, f.size, f.checksum) for f in r.files] == [
        ("astro-lab/skyfit-v2.1.0.zip", 48213, "md5:9e107d9d372bb6826bd81d3542a419d6")]
    assert r.files[0].url.startswith("https://zenodo.org/api/")
    assert (r.github.owner, r.github.repo, r.github.ref) == ("astro-lab", "skyfit", "v2.1.0")


def test_shapes_agree_field_for_field_except_era_specific_download_urls() -> None:
    current, transitional, legacy = (without_urls(load(n)) for n in SHAPES)
    assert current == transitional == legacy


def test_transitional_download_link_is_the_content_url_not_the_metadata_link() -> None:
    assert load(SHAPES[1]).files[0].url.endswith("/content")
    assert load(SHAPES[0]).files[0].url == load(SHAPES[1]).files[0].url


def test_native_rdm_files_entries_parse() -> None:
    raw = {"id": "5", "parent": {"id": "4"}, "updated": "2026-01-01T00:00:00+00:00",
           "revision_id": 2,
           "metadata": {"title": "t", "resource_type": {"id": "software"},
                        "related_identifiers": [{
                            "identifier": "https://github.com/o/r/tree/1.0", "scheme": "url",
                            "relation_type": {"id": "issupplementto"}}]},
           "files": {"enabled": True, "entries": {"o/r-1.0.zip": {
               "key": "o/r-1.0.zip", "size": 3, "checksum": "md5:" + "a" * 32,
               "links": {"content": "https://zenodo.org/api/records/5/files/o/r-1.0.zip/content"}}}}}
    r = parse_record(raw)
    assert (r.id, r.concept_id, r.revision, r.resource_type) == ("5", "4", 2, "software")
    assert r.files[0].url.endswith("/content")
    assert r.github.ref == "1.0"


def test_record_round_trips_through_plain_dicts() -> None:
    r = load(SHAPES[0])
    assert Record.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_md5_normalisation() -> None:
    digest = "abcdef0123456789abcdef0123456789"
    assert normalise_md5(digest.upper()) == f"md5:{digest}"
    assert normalise_md5("MD5:AB" + "0" * 30) == "md5:ab" + "0" * 30
    assert normalise_md5(None) == ""


def test_github_ref_prefers_the_supplement_relation_and_handles_plain_repo_urls() -> None:
    ref = github_ref([
        {"identifier": "https://github.com/a/cites", "relation": "cites"},
        {"identifier": "https://github.com/o/r/tree/v1", "relation": "isSupplementTo"}])
    assert (ref.owner, ref.repo, ref.ref) == ("o", "r", "v1")
    plain = github_ref([{"identifier": "https://github.com/o/r.git", "relation": "isDerivedFrom"}])
    assert (plain.repo, plain.ref) == ("r", "HEAD")
    assert github_ref([{"identifier": "10.5281/zenodo.1", "relation": "cites"}]) is None


def _current() -> dict:
    return json.loads((FIXTURES / SHAPES[0]).read_text())


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.update(id="../../tmp/x"), "record id"),
    (lambda r: r.update(id=True), "record id"),
    (lambda r: r.update(conceptrecid="1/2"), "concept id"),
    (lambda r: r["files"][0].update(checksum="md5:../../../../tmp/x/secret.zip"), "checksum"),
    (lambda r: r["files"][0].update(checksum="sha1:" + "a" * 40), "checksum"),
    (lambda r: r["files"][0].update(key="../x.zip"), "file key"),
    (lambda r: r["files"][0].update(key="a/./b.zip"), "file key"),
    (lambda r: r["files"][0].update(key="a\\..\\b.zip"), "file key"),
    (lambda r: r["files"][0].update(key="x" * 300 + ".zip"), "file key"),
    (lambda r: r["files"][0].update(key="a\nb.zip"), "file key"),
    (lambda r: r["files"][0].update(size="12"), "file size"),
    (lambda r: r["files"][0]["links"].update(self="file:///etc/passwd"), "download link"),
    (lambda r: r["files"].append(dict(r["files"][0])), "same file key twice"),
    (lambda r: r.update(revision="4"), "revision"),
    (lambda r: r.update(updated="yesterday"), "update time"),
    (lambda r: r.update(metadata="x"), "wrong type"),
])
def test_fields_that_would_become_paths_or_urls_are_checked_where_records_enter(
        change, field: str) -> None:
    raw = _current()
    change(raw)
    with pytest.raises(ForeignDataError) as info:
        parse_record(raw, stage="fetch")
    text = str(info.value)
    assert text.startswith("[fetch]") and field in text and "expected" in text
    assert "\n" not in text


def test_an_error_document_is_not_a_record_called_none() -> None:
    with pytest.raises(ForeignDataError, match="error document instead of a record: 404"):
        parse_record({"status": 404, "message": "PID does not exist."})


def test_a_github_ref_that_could_leave_its_url_or_path_is_not_a_fallback() -> None:
    related = [{"identifier": "https://github.com/o/r/tree/../../x", "relation": "isSupplementTo"}]
    assert github_ref(related) is None
    assert github_ref([{"identifier": "https://github.com/o/r/tree/release/1.0"}]).ref == \
        "release/1.0"
