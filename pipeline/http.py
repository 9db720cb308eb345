"""One HTTP session per service, with timeouts, a User-Agent, pacing and bounded retries.

Why one module: Zenodo (search, downloads, deposit), GitHub archives, webhooks, Slack and
``repository_dispatch`` all need the same behaviour (STYLE guideline 6), and the retry rules are
easy to get subtly wrong more than once:

* retried: connection errors and timeouts, HTTP 429 (honouring ``Retry-After``, seconds or an
  HTTP date) and 5xx; never other 4xx, which are the caller's mistake and would only repeat;
* Zenodo sends ``Retry-After`` on *every* response, 200s included (reference ZENODO_API.md §4,
  observed 2022 and 2025), so it is only honoured on 429/503;
* the sleep and the clock are injectable so tests run without waiting;
* a :class:`Pacer` keeps a minimum interval between calls of one kind (Zenodo's search endpoint
  allows 30 requests/minute since 2025-11-12), shared by every request that passes it.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

from pipeline import __version__
from pipeline.errors import AuthError, RateLimitedError, ServiceError, redact

USER_AGENT = f"code-images-pipeline/{__version__} (+https://github.com/; continuous-data)"
DEFAULT_TIMEOUT = (10.0, 120.0)  # connect, read (seconds)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

Sleep = Callable[[float], None]
Clock = Callable[[], float]


class Pacer:
    """Spaces calls at least ``60 / per_minute`` seconds apart (thread-safe).

    Why: staying under a published rate limit is cheaper than being told off with 429s, and
    Zenodo counts by User-Agent + IP, so parallel workers must share one pacer.
    """

    def __init__(self, per_minute: float, *, sleep: Sleep = time.sleep,
                 clock: Clock = time.monotonic) -> None:
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self._sleep = sleep
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.interval <= 0:
            return
        with self._lock:
            now = self._clock()
            delay = self._next - now
            if delay > 0:
                self._sleep(delay)
                now += delay
            self._next = now + self.interval


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or HTTP date) into seconds, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_text(response: requests.Response) -> str:
    """The useful part of an error body: Zenodo's ``message`` plus ``errors[].messages``.

    Zenodo documents ``errors[].message`` but the current server sends ``errors[].messages`` (a
    list) from marshmallow validation (ZENODO_API.md §5.6); both are read. Kaggle uses
    ``{"code", "message"}``. Anything else is cut to 300 characters.
    """
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason or ""
    if not isinstance(body, dict):
        return str(body)[:300]
    parts = [str(body.get("message") or body.get("error") or "")]
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            msgs = err.get("messages") or ([err["message"]] if err.get("message") else [])
            parts.append(f"{err.get('field', '?')}: {'; '.join(map(str, msgs))}")
    return " | ".join(p for p in parts if p)[:500]


@dataclass
class HttpClient:
    """A ``requests.Session`` for one service plus the rules above.

    ``base_url`` is joined with relative paths; absolute URLs (download links from records) are
    used as they are. ``secrets`` are masked in every error this client raises.
    """

    service: str
    base_url: str = ""
    token: str | None = None
    auth_scheme: str = "Bearer"
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    retries: int = 4
    backoff: float = 1.0
    max_sleep: float = 120.0
    sleep: Sleep = time.sleep
    user_agent: str = USER_AGENT
    requests_sent: int = 0
    secrets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["User-Agent"] = self.user_agent
        if self.token:
            self.session.headers["Authorization"] = f"{self.auth_scheme} {self.token}"
            self.secrets.append(self.token)
        self._count_lock = threading.Lock()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url.rstrip("/") + "/" + path_or_url.lstrip("/")

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        stage: str,
        record: str | None = None,
        ok: Iterable[int] = (200,),
        pacer: Pacer | None = None,
        hint: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request, retrying what is worth retrying; raise :class:`ServiceError` otherwise.

        Returns the response whose status is in ``ok``. Streaming callers pass ``stream=True`` and
        must close the response.
        """
        url = self.url(path_or_url)
        ok = frozenset(ok)
        kwargs.setdefault("timeout", self.timeout)
        last_problem = ""
        for attempt in range(self.retries + 1):
            if pacer is not None:
                pacer.wait()
            with self._count_lock:
                self.requests_sent += 1
            try:
                response = self.session.request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                if attempt < self.retries:
                    self.sleep(min(self.max_sleep, self.backoff * 2**attempt))
                    continue
                raise ServiceError(
                    f"{self.service} unreachable after {attempt + 1} attempts ({last_problem})",
                    stage=stage, record=record, url=url,
                    hint=hint or "check the URL in the manifest and the network; "
                    "the run can be repeated",
                ) from exc
            if response.status_code in ok:
                return response
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                wait = None
                if response.status_code in (429, 503):
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                if wait is None:
                    wait = self.backoff * 2**attempt
                response.close()
                self.sleep(min(self.max_sleep, wait))
                continue
            raise self._error(response, method, url, stage=stage, record=record, ok=ok, hint=hint)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(
        self, response: requests.Response, method: str, url: str, *, stage: str,
        record: str | None, ok: frozenset[int], hint: str | None,
    ) -> ServiceError:
        status = response.status_code
        text = redact(error_text(response), self.secrets)
        expected = "HTTP " + "/".join(str(s) for s in sorted(ok))
        got = f"HTTP {status}" + (f" {text!r}" if text else "")
        common: dict[str, Any] = dict(stage=stage, record=record, url=url, expected=expected,
                                      got=got, status=status)
        if status == 429:
            return RateLimitedError(
                f"{self.service} {method} rate-limited after {self.retries + 1} attempts",
                hint=hint or "lower the request rate in the manifest or wait; "
                "the run can be repeated",
                **common,
            )
        if status in (401, 403):
            return AuthError(
                f"{self.service} {method} refused the credentials",
                hint=hint or "check that the token environment variable named in the manifest "
                "is set and has the needed scopes",
                **common,
            )
        return ServiceError(f"{self.service} {method} failed", hint=hint, **common)

    def close(self) -> None:
        self.session.close()
