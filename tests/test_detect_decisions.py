"""Pure decisions of incremental detection: what is planned, how windows split."""

from datetime import UTC, datetime, timedelta

from pipeline.detect import PlanEntry, decide, restart_at, select
from pipeline.records import Record, RecordFile
from pipeline.zenodo import format_ts, parse_ts, updated_range


def rec(rid: str = "1", revision: int = 1, md5: str = "md5:" + "a" * 32) -> Record:
    return Record(id=rid, concept_id="c1", version="1", doi=None, concept_doi=None,
                  created="2026-01-01T00:00:00+00:00", updated="2026-01-02T00:00:00+00:00",
                  revision=revision, title="t", license="mit", resource_type="software",
                  files=(RecordFile("o/r-1.zip", 10, md5, "http://x/content"),))


def done(revision: int = 1, md5: str = "md5:" + "a" * 32) -> dict:
    return {"status": "done", "revision": revision, "checksums": {"o/r-1.zip": md5}}


def test_unseen_record_is_new_and_says_why() -> None:
    assert decide(rec(), None, retry_limit=3) == ("new", "first seen")


def test_done_at_same_revision_and_checksums_is_not_planned() -> None:
    assert decide(rec(), done(), retry_limit=3) is None


def test_changed_files_or_metadata_are_updates() -> None:
    action, reason = decide(rec(md5="md5:" + "b" * 32), done(), retry_limit=3)
    assert action == "updated" and "changed o/r-1.zip" in reason
    assert decide(rec(revision=2), done(), retry_limit=3) == (
        "updated", "metadata revision 1 -> 2")


def test_failed_records_come_back_until_the_retry_limit() -> None:
    failed = {"status": "failed", "revision": 1, "checksums": {"o/r-1.zip": "md5:" + "a" * 32},
              "attempts": 2, "reason": "[fetch] record 1: checksum differs"}
    action, reason = decide(rec(), failed, retry_limit=3)
    assert action == "retry" and "attempt 3 of 3" in reason and "checksum differs" in reason
    assert decide(rec(), {**failed, "attempts": 3}, retry_limit=3) is None
    # ...but a failed record that changed on Zenodo gets a fresh chance.
    assert decide(rec(revision=2), {**failed, "attempts": 3}, retry_limit=3)[0] == "updated"


def test_restart_after_a_full_window_floors_to_the_millisecond_the_index_stores() -> None:
    # A bound inside the millisecond could exclude hits whose stored time is 12:00:00.123.
    assert restart_at("2026-11-20T12:00:00.123987+00:00") == \
        datetime(2026, 11, 20, 12, 0, 0, 123000, tzinfo=UTC)
    assert restart_at("2026-11-20T12:00:00Z") == datetime(2026, 11, 20, 12, tzinfo=UTC)


def test_select_takes_retries_first_and_reports_truncation() -> None:
    entries = [PlanEntry(str(i), "new", "", 0, {}) for i in range(5)]
    retry = [PlanEntry("r", "retry", "", 1, {})]
    chosen, truncated = select(retry, entries, 3)
    assert [e.id for e in chosen] == ["r", "0", "1"] and truncated
    assert select([], entries, 10) == (entries, False)


def test_query_uses_quoted_z_timestamps_never_a_bare_offset() -> None:
    since = parse_ts("2026-01-01T00:00:00+00:00")
    q = updated_range(since, since + timedelta(days=1))
    assert q == 'updated:["2026-01-01T00:00:00.000000Z" TO "2026-01-02T00:00:00.000000Z"}'
    assert "+00:00" not in q
    assert format_ts(parse_ts("2026-03-04T08:00:01.654321+00:00")).endswith(".654321Z")
