"""Incremental detection: which Zenodo software records are new or changed since the last run.

How (ZENODO_API.md §1.4): harvest by ``updated`` windows with ``sort=updated-asc`` and
``all_versions`` per the manifest, quoted ``Z`` timestamps, page size 100 with a token and 25
without. Search can reach only the first 10,000 hits of a query, so a window whose ``total``
reaches 10,000 is split in two (by time) until every part is below the cap; a backfill of any size
is then complete. Each window starts ``overlap_minutes`` before the cursor, because ties in
``updated``, index refresh lag and updates during a harvest can otherwise drop a record; the
overlap is harmless since hits are de-duplicated on ``(id, revision)`` and compared with the state.

The decisions are pure functions (:func:`decide`, :func:`split`, :func:`select`) tested with
plain asserts; :func:`detect` does the I/O. The cursor moves only after the plan is written.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ServiceError
from pipeline.fsutil import atomic_write_json
from pipeline.manifest import Manifest
from pipeline.provenance import licence_refusal
from pipeline.records import Record
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

def decide(record: Record, prev: dict[str, Any] | None, *, retry_limit: int,
           concept_record: str | None = None) -> tuple[Action, str] | None:
    """What to do with a harvested ``record`` given its state entry ``prev`` (None: unseen).

    ``concept_record`` is another record id of the same concept already in the state.
    Returns ``(action, reason)`` or None when nothing needs doing.
    """
    if prev is None:
        if concept_record:
            return "new", f"new version of concept {record.concept_id} (after {concept_record})"
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


def split(since: datetime, until: datetime) -> tuple[tuple[datetime, datetime], ...]:
    """Halve a window at a whole millisecond.

    Zenodo's search index stores dates with millisecond precision (OpenSearch ``date``), so a
    bound inside a millisecond would be rounded the same way on both sides of the split.
    """
    ms = timedelta(milliseconds=1)
    middle = since.replace(microsecond=since.microsecond // 1000 * 1000) + \
        math.ceil((until - since) / 2 / ms) * ms
    return (since, min(middle, until)), (min(middle, until), until)


def select(retries: list[PlanEntry], harvested: list[PlanEntry], limit: int
           ) -> tuple[list[PlanEntry], bool]:
    """Retries first (they are older), then harvested records in ``updated`` order, up to
    ``limit``. Returns the selection and whether harvested records were left out."""
    chosen = retries[:limit]
    room = limit - len(chosen)
    return chosen + harvested[:room], len(harvested) > room


# -- I/O ------------------------------------------------------------------------------------

def harvest(client: ZenodoClient, manifest: Manifest, since: datetime, until: datetime
            ) -> Iterator[tuple[Record, dict[str, Any]]]:
    """Every record updated in ``[since, until)``, window by window, each window < 10,000 hits."""
    query = manifest.source.query
    windows = deque([(since, until)])
    while windows:
        start, end = windows.popleft()
        q = updated_range(start, end)
        if query.extra.strip():
            q = f"{q} AND ({query.extra.strip()})"
        search = dict(resource_type=query.resource_type, communities=query.communities,
                      all_versions=manifest.source.versions == "all")
        first = client.search(q, page=1, **search)
        if first.total >= RESULT_WINDOW:
            if end - start <= timedelta(milliseconds=1):
                raise ServiceError(
                    f"{first.total} records share one timestamp; cannot split the window",
                    stage="detect", expected=f"fewer than {RESULT_WINDOW}", got=first.total,
                    hint="narrow the query with source.query.extra")
            windows.extendleft(reversed(split(start, end)))
            continue
        yield from zip(first.records, first.raw_hits, strict=True)
        pages = math.ceil(first.total / client.page_size)
        for page in range(2, pages + 1):
            result = client.search(q, page=page, **search)
            yield from zip(result.records, result.raw_hits, strict=True)
            if not result.records:
                break  # the window shrank while paging (records were updated out of it)


def _now() -> datetime:
    return datetime.now(UTC)


def detect(manifest: Manifest, state: State, client: ZenodoClient, *, out: Path,
           since: str | None = None, until: str | None = None,
           record_ids: tuple[str, ...] = (), max_records: int | None = None,
           now: datetime | None = None) -> Plan:
    """Harvest, decide, write the plan to ``out``; then (only then) move the cursor."""
    now = now or _now()
    limit = min(max_records or manifest.source.max_records_per_run,
                manifest.source.max_records_per_run if max_records is None else max_records)
    excluded_records = set(manifest.source.exclusions.records)
    excluded_concepts = set(manifest.source.exclusions.concepts)
    concept_index = {r.get("concept"): rid for rid, r in state.records.items() if r.get("concept")}
    plan = Plan(created=format_ts(now), since=None, until=None)
    harvested: list[PlanEntry] = []
    seen: set[str] = set()
    refused: set[str] = set()   # by source.licenses

    def consider(record: Record, raw: dict[str, Any] | None, forced: bool = False) -> None:
        if record.id in seen:
            return
        seen.add(record.id)
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
            return
        prev = state.records.get(record.id)
        other = concept_index.get(record.concept_id)
        decision = decide(record, prev, retry_limit=manifest.source.retry_limit,
                          concept_record=other if other != record.id else None)
        if decision is None and forced:
            decision = ("updated", "requested with --record")
        if decision is None:
            return
        action, reason = decision
        attempts = int(prev.get("attempts", 0)) if prev and action == "retry" else 0
        harvested.append(PlanEntry(record.id, action, reason, attempts, record.to_dict(), raw))

    if record_ids:
        for rid in record_ids:
            record, raw = client.record(rid)
            consider(record, raw, forced=True)
    else:
        start = parse_ts(since) if since else (
            parse_ts(state.cursor) - timedelta(minutes=manifest.source.overlap_minutes)
            if state.cursor else parse_ts(manifest.source.since))
        end = parse_ts(until) if until else now
        plan.since, plan.until = format_ts(start), format_ts(end)
        # Records of one window arrive in updated order; de-duplicate on (id, revision) by
        # keeping the highest revision seen for an id.
        latest: dict[str, tuple[Record, dict[str, Any]]] = {}
        for record, raw in harvest(client, manifest, start, end):
            kept = latest.get(record.id)
            if kept is None or kept[0].revision < record.revision:
                latest[record.id] = (record, raw)
        for record, raw in sorted(latest.values(), key=lambda x: (x[0].updated, x[0].id)):
            consider(record, raw)

    retries = _carried_over(manifest, state, seen, harvested)
    chosen, truncated = select(retries, harvested, limit)
    plan.entries = chosen
    plan.search_requests = client.search_requests
    if not record_ids:
        plan.cursor_after = plan.until
        if truncated:
            last = [e for e in chosen if e in harvested]
            plan.cursor_after = last[-1].record["updated"] if last else state.cursor
    atomic_write_json(out, plan.to_dict())
    # The plan is on disk: now record what it promises, and move the cursor.
    for entry in plan.entries:
        state.pending[entry.id] = {"action": entry.action, "reason": entry.reason,
                                   "attempts": entry.attempts, "record": entry.record,
                                   "planned_at": plan.created}
    for rid, reason in plan.skipped.items():
        if rid not in state.records or rid in refused:
            state.records[rid] = {"status": "skipped", "reason": reason, "attempts": 0}
    if plan.cursor_after:
        state.cursor = _later(state.cursor, plan.cursor_after)
    state.last_run["detect"] = {"at": plan.created, "counts": plan.counts(),
                                "search_requests": plan.search_requests}
    state.save()
    return plan


def _carried_over(manifest: Manifest, state: State, seen: set[str],
                  harvested: list[PlanEntry]) -> list[PlanEntry]:
    """Failed records still under the retry limit, and planned records never processed."""
    out = []
    for rid, pend in sorted(state.pending.items(), key=lambda kv: kv[1].get("planned_at", "")):
        if rid in seen:
            continue
        seen.add(rid)
        out.append(PlanEntry(rid, "retry", f"planned {pend.get('planned_at')} but not processed "
                             f"yet ({pend.get('reason')})", int(pend.get("attempts", 0)),
                             pend["record"]))
    for rid, rec in sorted(state.failed().items()):
        if rid in seen or int(rec.get("attempts", 0)) >= manifest.source.retry_limit:
            continue
        if "record" not in rec:
            continue
        seen.add(rid)
        out.append(PlanEntry(rid, "retry", f"attempt {int(rec.get('attempts', 0)) + 1} of "
                             f"{manifest.source.retry_limit}; last error: "
                             f"{rec.get('reason', '')[:200]}", int(rec.get("attempts", 0)),
                             rec["record"]))
    return out


def _later(a: str | None, b: str) -> str:
    if a is None:
        return b
    return a if parse_ts(a) > parse_ts(b) else b
