"""The sandbox's pure parts: the seeded corpus, its archives, and the ``q`` parser's rules."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime

import pytest

from pipeline.records import parse_record
from pipeline.sandbox import query
from pipeline.sandbox.corpus import Corpus
from pipeline.sandbox.sourcetree import ArchiveSpec, Release, archive_bytes

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_the_corpus_is_a_function_of_its_seed() -> None:
    first = [json.dumps(c.record, sort_keys=True) for c in Corpus(0).initial(12)]
    again = [json.dumps(c.record, sort_keys=True) for c in Corpus(0).initial(12)]
    other = [json.dumps(c.record, sort_keys=True) for c in Corpus(1).initial(12)]
    assert first == again and first != other


def test_archives_rebuild_to_the_same_bytes() -> None:
    spec = ArchiveSpec(Release("astro-lab", "stellarfit", "v1.2.0"), "tar.gz", "top")
    size, md5 = spec.digest()
    archive_bytes.cache_clear()
    data = spec.build()
    assert (len(data), hashlib.md5(data).hexdigest()) == (size, md5)
    assert Release("o", "r", "v2.0.1").codeload_top == "r-2.0.1"
    assert Release("o", "r", "2024.05").codeload_top == "r-2024.05"


def test_corpus_mix_of_records() -> None:
    made = Corpus(0).initial(12)
    parsed = [parse_record(c.record) for c in made]
    software = [p for p in parsed if p.resource_type == "software"]
    assert {p.resource_type for p in parsed} == {"software", "dataset", "publication"}
    assert all(p.github is not None for p in software)
    assert len({p.concept_id for p in software}) == 12 < len(software)
    archive_only = [p for p in software if not any(f.key.endswith((".zip", ".tar.gz"))
                                                   for f in p.files)]
    assert {f.key for p in archive_only for f in p.files} <= {"paper.pdf", "README.md"}
    assert len(archive_only) >= 2
    for item in made:
        for f in item.record["files"]:
            blob = item.blobs[f["key"]]
            data = blob if isinstance(blob, bytes) else blob.build()
            assert f["checksum"] == "md5:" + hashlib.md5(data).hexdigest()
    ids = [c.record["id"] for c in made]
    created = [c.record["created"] for c in made]
    assert sorted(ids) == ids and sorted(created) == created  # ids follow creation time


def test_bulk_records_fall_within_their_day() -> None:
    made = list(Corpus(0).bulk(1000, date(2026, 11, 20)))
    assert len(made) == 1020
    days = {c.record["updated"][:10] for c in made}
    assert days == {"2026-11-20"}
    stamps = [c.record["updated"] for c in made]
    assert len(set(stamps)) < len(stamps)  # some records share their `updated`
    types = [c.record["metadata"]["resource_type"]["type"] for c in made]
    assert types.count("dataset") == 20


@pytest.mark.timeout(20)
def test_new_concepts_keep_coming_after_every_owner_repo_pair_is_taken() -> None:
    # bench_year makes one concept a day: with 15 initial concepts the 360 (owner, repo) pairs
    # were all taken on day 346, and day 347's new_records spun forever drawing a free pair
    corpus = Corpus(0)
    concepts = [corpus._new_concept() for _ in range(2 * 360 + 5)]  # no records: fast
    names = [(c.owner, c.repo) for c in concepts]
    assert len(set(names)) == len(names)
    assert {repo.rsplit("-", 1)[1] for _, repo in names[720:]} == {"3"}
    made = corpus.new_records(2, NOW)       # a new version and a new concept, named "...-3"
    parsed = [parse_record(c.record) for c in made]
    assert parsed[1].github is not None and parsed[1].github.repo.endswith("-3")
    assert all(f.key in c.blobs for p, c in zip(parsed, made, strict=True) for f in p.files)


def test_the_lexer_breaks_on_an_unquoted_offset_like_luqum() -> None:
    with pytest.raises(query.QuerySyntaxError):
        query.parse("updated:[2024-01-01T00:00:00+00:00 TO *]", now=NOW)
    for fine in ('updated:["2024-01-01T00:00:00+00:00" TO *]',
                 "updated:[2024-01-01T00:00:00Z TO *]",
                 "updated:[2024-01-01T00:00:00.123456Z TO now-1d/d]",
                 "updated:[2024-01-01T00\\:00\\:00+00\\:00 TO *]"):
        assert isinstance(query.parse(fine, now=NOW), query.DateRange), fine
    assert query.tokenize("a:b")[1] == ("COLUMN", ":")
    assert ("TERM", "2024-01-01T10:20:30Z") in query.tokenize("x:2024-01-01T10:20:30Z")


def test_elasticsearch_refusals_are_engine_errors() -> None:
    with pytest.raises(query.EngineError) as bare_colon:
        query.parse("updated:>=2024-01-01T00:00:00Z", now=NOW)
    assert bare_colon.value.status == 400
    with pytest.raises(query.EngineError) as regex:
        query.parse("doi:10.5281/zenodo.1", now=NOW)
    assert regex.value.status == 500
    with pytest.raises(query.EngineError):
        query.parse("updated:[yesterday TO *]", now=NOW)


@pytest.mark.parametrize(("text", "round_up", "expected"), [
    ("2024-01-02", False, "2024-01-02T00:00:00.000"),
    ("2024-01-02", True, "2024-01-02T23:59:59.999"),
    ("2024-01", True, "2024-01-31T23:59:59.999"),
    ("2024-01-02T10:00:00Z", True, "2024-01-02T10:00:00.999"),
    ("2024-01-02T10:00:00.123456+00:00", True, "2024-01-02T10:00:00.123"),
    ("2024-01-02T12:00:00+02:00", False, "2024-01-02T10:00:00.000"),
    ("now-1d/d", False, "2026-11-20T00:00:00.000"),
    ("now-1d/d", True, "2026-11-20T23:59:59.999"),
    ("1700000000000", False, "2023-11-14T22:13:20.000"),
])
def test_dates_round_like_elasticsearch(text: str, round_up: bool, expected: str) -> None:
    ms = query.parse_date(text, now=NOW, round_up=round_up)
    assert datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") == \
        expected + "+00:00"


def test_operator_precedence_and_fallback() -> None:
    doc = query.Doc(id=1, concept="0", created=0, updated=0, publication=None, type="software",
                    subtype=None, text={"title": query.Doc.padded("genome kit 2")},
                    keywords={"type": ("software",)})
    assert query.parse("title:genome AND title:kit", now=NOW).match(doc)
    assert not query.parse("title:genome AND title:nope", now=NOW).match(doc)
    assert query.parse("title:nope OR title:kit", now=NOW).match(doc)
    assert query.parse("nope genome", now=NOW).match(doc)  # implicit operator is OR
    assert not query.parse("genome -kit", now=NOW).match(doc)
    assert not query.parse("NOT resource_type.type:software", now=NOW).match(doc)
    assert not query.parse("unknown.field:genome", now=NOW).match(doc)
    assert query.free_text("updated:[2 TO 3} kit").match(doc)
