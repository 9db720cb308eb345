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

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import ServiceError
from pipeline.http import HttpClient, Pacer
from pipeline.manifest import ZenodoSource
from pipeline.records import Record, parse_record

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
        response = self.http.request(
            "GET", "/api/records", params=params, stage="detect", pacer=self.search_pacer,
            headers={"Accept": "application/json"},
        )
        try:
            body = response.json()
            hits = body["hits"]["hits"]
            total = body["hits"]["total"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceError(
                "Zenodo search answered with an unexpected body", stage="detect",
                url=response.url, expected='JSON {"hits": {"hits": [...], "total": N}}',
                got=response.text[:200], hint="Zenodo may be degraded; the run can be repeated",
            ) from exc
        if isinstance(total, dict):  # OpenSearch style {"value": N, "relation": "eq"}
            total = total.get("value", 0)
        return SearchPage(total=int(total), records=[parse_record(h) for h in hits],
                          raw_hits=hits)

    def record(self, record_id: str) -> tuple[Record, dict[str, Any]]:
        """``GET /api/records/{id}``: the parsed record and its raw JSON."""
        response = self.http.request(
            "GET", f"/api/records/{record_id}", stage="detect", record=str(record_id),
            headers={"Accept": "application/json"},
            hint="check the record id; a 410 means Zenodo deleted the record",
        )
        raw = response.json()
        return parse_record(raw), raw

    def close(self) -> None:
        self.http.close()
