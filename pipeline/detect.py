"""Incremental detection: which Zenodo software records are new or changed since the last run.

How (ZENODO_API.md §1.4): harvest by ``updated`` with ``sort=updated-asc`` and ``all_versions``
per the manifest, quoted ``Z`` timestamps, page size 100 with a token and 25 without. Each
harvest starts ``overlap_minutes`` before the cursor, because ties in ``updated``, index refresh
lag and updates during a harvest can otherwise drop a record; the overlap is harmless since hits
are de-duplicated on ``(id, revision)`` and compared with the state.

Cost follows the plan, not the backlog (issue 8): hits arrive in ``updated`` order, so paging
stops as soon as the plan is full (``max_records_per_run``, counting the records carried over
from earlier runs), and the cursor stops at the last planned record. Records after it, including
those sharing its timestamp, are read again by the next run, which starts at or before that
timestamp. A run costs at most ``cap / page size`` pages plus a few (the overlap, the page the
plan fills in, one restart per 10,000 hits), and a backfill of N records costs about N / 100
search requests in all.

Search reaches only the first 10,000 hits of a query. When paging reaches that window, the
harvest goes on with a new query that starts at the last ``updated`` timestamp read (floored to
the millisecond the index stores), so records sharing that timestamp are read twice rather than
skipped; the de-duplication drops the repeats. Only 10,000 records within one millisecond stop it.

The decisions are pure functions (:func:`decide`, :func:`restart_at`, :func:`select`) tested with
plain asserts; :func:`detect` does the I/O. The cursor moves only after the plan is written.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ServiceError, UsageError
from pipeline.fsutil import atomic_write_json
from pipeline.manifest import Manifest
from pipeline.provenance import licence_refusal
from pipeline.records import RECORD_ID, Record
from pipeline.state import State
from pipeline.zenodo import RESULT_WINDOW, ZenodoClient, format_ts, parse_ts, updated_range

Action = Literal["new", "updated", "retry"]
PLAN_SCHEMA = 1


@dataclass
class PlanEntry:
    id: str
    action: Action
    reason: str
    attempts: int
    record: dict[str, Any]
    raw: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "action": self.action, "reason": self.reason,
             "attempts": self.attempts, "record": self.record}
        if self.raw is not None:
            d["raw"] = self.raw
        return d


@dataclass
class Plan:
    created: str
    since: str | None
    until: str | None
    entries: list[PlanEntry] = field(default_factory=list)
    search_requests: int = 0
    cursor_after: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"new": 0, "updated": 0, "retry": 0}
        for e in self.entries:
            out[e.action] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"schema": PLAN_SCHEMA, "created": self.created, "since": self.since,
                "until": self.until, "cursor_after": self.cursor_after,
                "search_requests": self.search_requests, "counts": self.counts(),
                "skipped": self.skipped, "records": [e.to_dict() for e in self.entries]}


def load_plan(path: Path) -> list[PlanEntry]:
    """Read the entries of a plan written by :func:`detect`."""
    import json

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [PlanEntry(id=r["id"], action=r["action"], reason=r["reason"],
                      attempts=r.get("attempts", 0), record=r["record"], raw=r.get("raw"))
            for r in data["records"]]


# -- pure decisions -------------------------------------------------------------------------

def decide(record: Record, prev: dict[str, Any] | None, *, retry_limit: int
           ) -> tuple[Action, str] | None:
    """What to do with a harvested ``record`` given its state entry ``prev`` (None: unseen).

    Returns ``(action, reason)`` or None when nothing needs doing.
    """
    if prev is None:
        return "new", "first seen"
    same_files = prev.get("checksums") == record.checksums
    same_revision = prev.get("revision") == record.revision
    status = prev.get("status")
    if status == "done":
        if same_files and same_revision:
            return None
        if not same_files:
            return "updated", _files_change(prev.get("checksums") or {}, record.checksums)
        return "updated", f"metadata revision {prev.get('revision')} -> {record.revision}"
    if status == "failed":
        attempts = int(prev.get("attempts", 0))
        if not (same_files and same_revision):
            return "updated", f"changed since it failed ({prev.get('reason', '')[:120]})"
        if attempts < retry_limit:
            return "retry", (f"attempt {attempts + 1} of {retry_limit}; last error: "
                             f"{prev.get('reason', '')[:200]}")
        return None
    if status == "skipped":
        return None
    return "new", f"unknown state status {status!r}"


def _files_change(old: dict[str, str], new: dict[str, str]) -> str:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    parts = []
    for label, keys in (("added", added), ("removed", removed), ("changed", changed)):
        if keys:
            parts.append(f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}")
    return "files " + "; ".join(parts)


def restart_at(updated: str) -> datetime:
    """Where the query after a full 10,000-hit window starts: the last hit's ``updated``, floored
    to the millisecond.

    Why floored: Zenodo's index stores dates with millisecond precision (OpenSearch ``date``), so
    a bound inside a millisecond could exclude hits sharing the last hit's stored timestamp.
    """
    moment = parse_ts(updated)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def select(retries: list[PlanEntry], harvested: list[PlanEntry], limit: int
           ) -> tuple[list[PlanEntry], bool]:
    """Retries first (they are older), then harvested records in ``updated`` order, up to
    ``limit``. Returns the selection and whether harvested records were left out."""
    chosen = retries[:limit]
    room = limit - len(chosen)
    return chosen + harvested[:room], len(harvested) > room


# -- I/O ------------------------------------------------------------------------------------

def harvest(client: ZenodoClient, manifest: Manifest, since: datetime, until: datetime
            ) -> Generator[tuple[Record, dict[str, Any]], None, None]:
    """Every record updated in ``[since, until)`` in ``updated`` order, one page at a time.

    A generator: pages are requested only as the caller consumes hits, so a caller that stops
    early stops paging. Past 10,000 hits a new query starts at :func:`restart_at` the last hit.
    """
    query = manifest.source.query
    search: dict[str, Any] = dict(resource_type=query.resource_type,
                                  communities=query.communities,
                                  all_versions=manifest.source.versions == "all")
    size = client.page_size
    start = since
    while True:
        q = updated_range(start, until)
        if query.extra.strip():
            q = f"{q} AND ({query.extra.strip()})"
        last: str | None = None
        page = 1
        while page * size <= RESULT_WINDOW:
            result = client.search(q, page=page, **search)
            yield from zip(result.records, result.raw_hits, strict=True)
            if (not result.records and not result.refused) or (
                    page * size >= result.total and result.total < RESULT_WINDOW):
                return  # the window is read (it may shrink while paging: an empty page)
            if result.records:   # a page of refused hits only (each logged) moves nothing
                last = result.records[-1].updated
            page += 1
        if last is None:
            return
        restart = restart_at(last)
        if restart <= start:
            raise ServiceError(
                f"{RESULT_WINDOW} or more records share the timestamp {last}; the harvest "
                "cannot page past them", stage="detect", expected=f"fewer than {RESULT_WINDOW}",
                got=f"a full window from {format_ts(start)}",
                hint="narrow the query with source.query.extra")
        start = restart


def _now() -> datetime:
    return datetime.now(UTC)


def detect(manifest: Manifest, state: State, client: ZenodoClient, *, out: Path,
           since: str | None = None, until: str | None = None,
           record_ids: tuple[str, ...] = (), max_records: int | None = None,
           now: datetime | None = None) -> Plan:
    """Harvest, decide, write the plan to ``out``; then (only then) move the cursor.

    Records carried over from earlier runs (planned but not processed, failed and still under
    the retry limit) come first and count towards the cap; harvesting stops once the plan is
    full.
    """
    now = now or _now()
    limit = manifest.source.max_records_per_run if max_records is None else max_records
    excluded_records = set(manifest.source.exclusions.records)
    excluded_concepts = set(manifest.source.exclusions.concepts)
    plan = Plan(created=format_ts(now), since=None, until=None)
    carried = {} if record_ids else {e.id: e for e in _carried_over(manifest, state)}
    harvested: dict[str, PlanEntry] = {}
    seen: dict[str, int] = {}  # id -> highest revision read, to de-duplicate on (id, revision)
    refused: set[str] = set()   # by source.licenses

    def consider(record: Record, raw: dict[str, Any] | None, forced: bool = False) -> None:
        if record.id in seen and record.revision <= seen[record.id]:
            return
        seen[record.id] = record.revision
        if record.id in excluded_records or (record.concept_id or "") in excluded_concepts:
            plan.skipped[record.id] = "excluded by the manifest (source.exclusions)"
            return
        if record.resource_type and record.resource_type != manifest.source.query.resource_type:
            plan.skipped[record.id] = f"resource type {record.resource_type!r}"
            return
        refusal = licence_refusal(record.license, manifest.source.licenses)
        if refusal is not None:  # also removes a record whose licence changed from the dataset
            plan.skipped[record.id] = refusal
            refused.add(record.id)
            carried.pop(record.id, None)
            harvested.pop(record.id, None)
            return
        prev = state.records.get(record.id)
        decision = decide(record, prev, retry_limit=manifest.source.retry_limit)
        if decision is None and forced:
            decision = ("updated", "requested with --record")
        known = carried.get(record.id) or harvested.get(record.id)
        if known is not None:
            # Read again (a newer revision while paging, or a carried-over record): plan the
            # newest metadata, in the place it already has.
            known.record, known.raw = record.to_dict(), raw
            if decision is not None and decision[0] == "updated":
                known.action, known.reason, known.attempts = decision[0], decision[1], 0
            return
        if decision is None:
            return
        action, reason = decision
        attempts = int(prev.get("attempts", 0)) if prev and action == "retry" else 0
        harvested[record.id] = PlanEntry(record.id, action, reason, attempts, record.to_dict(),
                                         raw)

    truncated_at: str | None = None
    if record_ids:
        bad = [rid for rid in record_ids if not RECORD_ID.match(rid)]
        if bad:
            raise UsageError(f"--record takes Zenodo record ids (digits); got {bad[0]!r}")
        for rid in record_ids:
            record, raw = client.record(rid)
            consider(record, raw, forced=True)
    else:
        start = parse_ts(since) if since else (
            parse_ts(state.cursor) - timedelta(minutes=manifest.source.overlap_minutes)
            if state.cursor else parse_ts(manifest.source.since))
        end = parse_ts(until) if until else now
        plan.since, plan.until = format_ts(start), format_ts(end)
        room = limit - len(carried)
        if room > 0:
            hits = harvest(client, manifest, start, end)
            for record, raw in hits:
                consider(record, raw)
                if len(harvested) >= room:
                    truncated_at = record.updated
                    hits.close()  # no further pages
                    break
        else:
            truncated_at = state.cursor or plan.since

    chosen, _ = select(list(carried.values()), list(harvested.values()), limit)
    plan.entries = chosen
    plan.search_requests = client.search_requests
    if not record_ids:
        plan.cursor_after = truncated_at or plan.until
    atomic_write_json(out, plan.to_dict(), indent=None)  # raw hits: compact, 3x faster
    # The plan is on disk: now record what it promises, and move the cursor.
    for entry in plan.entries:
        state.pending[entry.id] = {"action": entry.action, "reason": entry.reason,
                                   "attempts": entry.attempts, "record": entry.record,
                                   "planned_at": plan.created}
    for rid, reason in plan.skipped.items():
        if rid not in state.records or rid in refused:
            state.records[rid] = {"status": "skipped", "reason": reason, "attempts": 0}
        if rid in refused:
            state.pending.pop(rid, None)
    if plan.cursor_after:
        state.cursor = _later(state.cursor, plan.cursor_after)
    state.last_run["detect"] = {"at": plan.created, "counts": plan.counts(),
                                "search_requests": plan.search_requests}
    state.save()
    return plan


def _carried_over(manifest: Manifest, state: State) -> list[PlanEntry]:
    """Planned records never processed (oldest plan first), then failed records still under the
    retry limit: the records a plan takes before harvesting new ones."""
    out: dict[str, PlanEntry] = {}
    for rid, pend in sorted(state.pending.items(), key=lambda kv: kv[1].get("planned_at", "")):
        out[rid] = PlanEntry(rid, "retry", f"planned {pend.get('planned_at')} but not processed "
                             f"yet ({pend.get('reason')})", int(pend.get("attempts", 0)),
                             pend["record"])
    retryable = state.failed(attempts_below=manifest.source.retry_limit)
    for rid, rec in sorted(retryable.items()):
        if rid in out or int(rec.get("attempts", 0)) >= manifest.source.retry_limit:
            continue
        if "record" not in rec:
            continue
        out[rid] = PlanEntry(rid, "retry", f"attempt {int(rec.get('attempts', 0)) + 1} of "
                             f"{manifest.source.retry_limit}; last error: "
                             f"{rec.get('reason', '')[:200]}", int(rec.get("attempts", 0)),
                             rec["record"])
    return list(out.values())


def _later(a: str | None, b: str) -> str:
    if a is None:
        return b
    return a if parse_ts(a) > parse_ts(b) else b
