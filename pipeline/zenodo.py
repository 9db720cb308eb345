"""The Zenodo records client: search and read software records (the harvest side).

One HTTP session for zenodo.org (or the sandbox: only ``source.zenodo.url`` differs), with the
token from the environment variable the manifest names, a User-Agent, timeouts, bounded retries
(:mod:`pipeline.http`) and a pacer that keeps search under its rate limit: 30 requests/minute
since 2025-11-12, guest and authenticated alike (ZENODO_API.md §4). Downloads of record files go
through the same session (:mod:`pipeline.fetch`), so they share the retries and the User-Agent
Zenodo keys its limits by.

Facts this client relies on (ZENODO_API.md §1):

* page size is capped at 25 anonymous and 100 with a token (400 beyond, since 2025-11);
* ``(page - 1) * size >= 10000`` is refused with 400 "Invalid querystring parameters.";
* ``all_versions`` must be set, or only the latest version of each concept is returned;
* ``sort=updated-asc`` orders by update time (``mostrecent`` is ``-created``);
* the query is parsed with luqum: an unquoted ``+00:00`` offset is a parse error that the server
  answers with a silent free-text search, so timestamps are always sent quoted, in ``Z`` form.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import ForeignDataError, ServiceError
from pipeline.http import HttpClient, Pacer
from pipeline.manifest import ZenodoSource
from pipeline.records import Record, check_record_id, parse_record

log = logging.getLogger("pipeline.zenodo")

ANONYMOUS_PAGE_SIZE = 25
AUTHENTICATED_PAGE_SIZE = 100
RESULT_WINDOW = 10_000


def format_ts(moment: datetime) -> str:
    """A UTC timestamp in the one form Zenodo's query parser always accepts: ``...ssssssZ``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    """Parse Zenodo's and our own ISO 8601 timestamps (``Z`` or ``+00:00``) to aware UTC."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def updated_range(since: datetime, until: datetime) -> str:
    """``updated:["<since>" TO "<until>"}``: inclusive start, exclusive end, quoted ``Z`` times."""
    return f'updated:["{format_ts(since)}" TO "{format_ts(until)}"}}'


@dataclass(frozen=True)
class SearchPage:
    total: int
    records: list[Record]
    raw_hits: list[dict[str, Any]]
    refused: int = 0  # hits that were not usable records (each logged on one line)


class ZenodoClient:
    """Search and read Zenodo records through one paced, retrying session."""

    def __init__(self, source: ZenodoSource, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        token = source.token
        self.http = HttpClient(
            service="Zenodo", base_url=source.url, token=token, retries=source.max_retries,
            timeout=(10.0, source.timeout_seconds), sleep=sleep,
        )
        self.search_pacer = Pacer(source.search_requests_per_minute, sleep=sleep, clock=clock)
        self.page_size = AUTHENTICATED_PAGE_SIZE if token else ANONYMOUS_PAGE_SIZE
        self.search_requests = 0

    def search(self, q: str, *, page: int = 1, size: int | None = None,
               resource_type: str = "software", all_versions: bool = True,
               communities: tuple[str, ...] = (), sort: str = "updated-asc") -> SearchPage:
        """One page of ``GET /api/records``; raises :class:`ServiceError` on refusal."""
        size = size or self.page_size
        if (page - 1) * size >= RESULT_WINDOW:
            raise ServiceError(
                "search page beyond Zenodo's 10,000-result window", stage="detect",
                expected=f"(page-1)*size < {RESULT_WINDOW}", got=f"page {page} x size {size}",
                hint="the harvest splits windows before this; report this as a bug")
        params: dict[str, Any] = {"q": q, "sort": sort, "size": size, "page": page}
        if resource_type:
            params["type"] = resource_type
        if all_versions:
            params["all_versions"] = "true"
        if communities:
            # Repeated, not comma-joined: "a,b" would be one unknown slug, silently ignored.
            params["communities"] = list(communities)
        self.search_requests += 1
        body = self.http.request_json(
            "GET", "/api/records", params=params, stage="detect", pacer=self.search_pacer,
            headers={"Accept": "application/json"},
            expected='JSON {"hits": {"hits": [...], "total": N}}')
        hits_obj = body.get("hits")
        hits = hits_obj.get("hits") if isinstance(hits_obj, dict) else None
        total = hits_obj.get("total") if isinstance(hits_obj, dict) else None
        if isinstance(total, dict):  # OpenSearch style {"value": N, "relation": "eq"}
            total = total.get("value", 0)
        if not isinstance(hits, list) or not isinstance(total, int) or isinstance(total, bool):
            raise ForeignDataError(
                "Zenodo search answered with an unexpected body", stage="detect",
                url=self.http.url("/api/records"),
                expected='JSON {"hits": {"hits": [...], "total": N}}',
                got=str(body)[:200], hint="Zenodo may be degraded; the run can be repeated")
        records, raw_hits = [], []
        for hit in hits:
            try:
                records.append(parse_record(hit))
            except ForeignDataError as exc:
                log.warning("%s", exc)  # one bad hit must not stop the harvest
                continue
            raw_hits.append(hit)
        return SearchPage(total=total, records=records, raw_hits=raw_hits,
                          refused=len(hits) - len(records))

    @classmethod
    def at(cls, url: str, token_env: str, *, sleep: Callable[[float], None] = time.sleep
           ) -> ZenodoClient:
        """A client for another Zenodo server than the harvest's (the publish destination, from
        which ``version`` and the Kaggle view fetch published files by need), default pacing."""
        return cls(ZenodoSource(url=url, token_env=token_env, search_requests_per_minute=30,
                                timeout_seconds=120, max_retries=4), sleep=sleep)

    def record(self, record_id: str, *, stage: str = "detect",
               hint: str = "check the record id; a 410 means Zenodo deleted the record"
               ) -> tuple[Record, dict[str, Any]]:
        """``GET /api/records/{id}``: the parsed record and its raw JSON.

        The one place a single record is read from Zenodo (``detect --record`` and ``process``
        for plans that kept only the parsed record). The answer must be the record asked for:
        a 200 holding an error document, or another record, is refused.
        """
        rid = check_record_id(record_id, stage=stage)
        raw = self.http.request_json(
            "GET", f"/api/records/{rid}", stage=stage, record=rid,
            headers={"Accept": "application/json"}, expected="a Zenodo record object",
            hint=hint)
        try:
            record = parse_record(raw, stage=stage)
        except ForeignDataError as exc:
            exc.record = exc.record or rid  # we know which record was asked for
            raise
        if record.id != rid:
            raise ForeignDataError("Zenodo answered with another record", stage=stage,
                                   record=rid, url=self.http.url(f"/api/records/{rid}"),
                                   expected=f"record {rid}", got=f"record {record.id}",
                                   hint="Zenodo may be degraded; the run can be repeated")
        return record, raw

    def close(self) -> None:
        self.http.close()
