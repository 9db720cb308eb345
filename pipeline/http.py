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

It is also the one place where foreign HTTP and JSON failures become pipeline errors: requests
and urllib3 exceptions, bodies that are not JSON or not the expected kind of JSON
(:meth:`HttpClient.request_json`, :class:`~pipeline.errors.ForeignDataError`), and bodies that
trickle, break off or exceed a size (:func:`iter_body`). Callers only ever see
:class:`~pipeline.errors.ServiceError` and its subclasses. Two more boundaries:

* an unreachable service (refused, unknown host, no route, connect timeout) is retried for at
  most ``unreachable_seconds`` (10 s) of waiting, then reported in one line with the cause
  (``connection refused``), not urllib3's whole exception text;
* the token is only sent to the client's own origin (``base_url``): a record whose download
  link points at another host gets no credentials.
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from pipeline import __version__
from pipeline.errors import AuthError, ForeignDataError, RateLimitedError, ServiceError, redact

USER_AGENT = f"code-images-pipeline/{__version__} (+https://github.com/; continuous-data)"
DEFAULT_TIMEOUT = (10.0, 120.0)  # connect, read (seconds)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
UNREACHABLE_SECONDS = 10.0  # waiting spent retrying a service that cannot be reached at all
MAX_JSON_BYTES = 64 * 1024**2  # a search page of 100 records is about 1 MB
READ_BLOCK = 1 << 20
# Whatever requests/urllib3/sockets raise while a body is being read.
_BODY_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)

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


_MALFORMED = (
    (r"got more than \d+ headers", "more headers than allowed"),
    (r"LineTooLong|line too long|header line", "a header line too long"),
    (r"BadStatusLine|InvalidHeader|Invalid header|ParseError|HeaderParsingError",
     "a malformed status line or header"),
    (r"DecodeError|decoding|Content-Encoding", "a body its Content-Encoding does not decode"),
)


def malformed_cause(exc: BaseException) -> str | None:
    """What was wrong with an answer that broke HTTP itself (not the network), or None."""
    text = f"{type(exc).__name__}: {exc}"
    return next((reason for pattern, reason in _MALFORMED if re.search(pattern, text)), None)


def unreachable_cause(exc: BaseException) -> str:
    """The short reason a connection failed ("connection refused"), from urllib3's long text."""
    text = str(exc)
    malformed = malformed_cause(exc)
    if malformed:
        return malformed
    for pattern, reason in (
            (r"Name or service not known|nodename nor servname|getaddrinfo failed|"
             r"Temporary failure in name resolution|NameResolutionError", "host name not found"),
            (r"Connection refused", "connection refused"),
            (r"timed out|ConnectTimeout", "connection timed out"),
            (r"No route to host|Network is unreachable", "no route to host"),
            (r"Connection reset", "connection reset"),
            (r"IncompleteRead|Connection broken", "the connection closed before the end"),
            (r"RemoteDisconnected|closed connection without response",
             "the server closed the connection without answering")):
        if re.search(pattern, text):
            return reason
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    return m.group(1).strip() if m else type(exc).__name__


def same_origin(url: str, base: str) -> bool:
    """Scheme, host and port equal (an explicit default port equals none)."""
    def origin(u: str) -> tuple[str, str | None, int | None]:
        parts = urlsplit(u)
        return (parts.scheme, parts.hostname,
                parts.port or {"http": 80, "https": 443}.get(parts.scheme))
    return origin(url) == origin(base)


def content_length(response: requests.Response) -> int | None:
    """``Content-Length`` as an int, or None when absent or not a number (``abc``, ``-1``)."""
    value = (response.headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def iter_body(response: requests.Response, *, stage: str, record: str | None, what: str,
              deadline: float, max_bytes: int | None = None,
              clock: Clock = time.monotonic) -> Iterator[bytes]:
    """Yield a streamed body's bytes as they arrive, within ``deadline`` (a ``clock`` time).

    Why ``read1``: ``iter_content`` asks urllib3 for whole blocks, and a server sending a byte a
    second never trips the read timeout while it fills one, so a deadline checked between blocks
    would never be checked. ``read1`` returns whatever one read brought, so the deadline is
    missed by at most one read timeout. A body that breaks off, trickles past the deadline or
    grows past ``max_bytes`` raises :class:`ServiceError` (no status: worth retrying).
    """
    url = response.url
    got = 0
    while True:
        if clock() > deadline:
            raise ServiceError(f"{what} is too slow: {got} bytes arrived before the deadline",
                               stage=stage, record=record, url=url,
                               expected="the whole body before the download deadline",
                               got=f"{got} bytes",
                               hint="the server trickles or stalls; the run can be repeated")
        try:
            block = response.raw.read1(READ_BLOCK, decode_content=True)
        except _BODY_ERRORS as exc:
            raise ServiceError(f"{what} broke off after {got} bytes "
                               f"({unreachable_cause(exc)})", stage=stage, record=record,
                               url=url, hint="the run can be repeated") from exc
        if not block:
            return
        got += len(block)
        if max_bytes is not None and got > max_bytes:
            raise ForeignDataError(f"{what} is larger than expected", stage=stage, record=record,
                                   url=url, expected=f"<= {max_bytes} bytes",
                                   got=f"more than {max_bytes}",
                                   hint="the service sent far more than asked for")
        yield block


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
    unreachable_seconds: float = UNREACHABLE_SECONDS

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["User-Agent"] = self.user_agent
        if self.token:
            self.secrets.append(self.token)
        self._count_lock = threading.Lock()

    def _auth_headers(self, url: str, headers: dict[str, str] | None) -> dict[str, str]:
        """The request's headers plus the token, when ``url`` is this client's own origin."""
        out = dict(headers or {})
        if self.token and (not self.base_url or same_origin(url, self.base_url)):
            out.setdefault("Authorization", f"{self.auth_scheme} {self.token}")
        return out

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
        kwargs["headers"] = self._auth_headers(url, kwargs.get("headers"))
        started, waited = time.monotonic(), 0.0
        for attempt in range(self.retries + 1):
            if pacer is not None:
                pacer.wait()
            with self._count_lock:
                self.requests_sent += 1
            try:
                response = self.session.request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                wait = min(self.max_sleep, self.backoff * 2**attempt)
                spent = time.monotonic() - started + waited
                if attempt < self.retries and spent + wait <= self.unreachable_seconds:
                    self.sleep(wait)
                    waited += wait
                    continue
                if malformed_cause(exc):
                    raise ServiceError(
                        f"{self.service} sent an answer that is not valid HTTP: "
                        f"{malformed_cause(exc)}", stage=stage, record=record, url=url,
                        hint="the service or a proxy in between is broken; the run can be "
                        "repeated") from exc
                if isinstance(exc, requests.ReadTimeout):
                    raise ServiceError(
                        f"{self.service} did not answer within the read timeout "
                        f"({attempt + 1} attempts in {spent:.0f} s)", stage=stage,
                        record=record, url=url, hint="the service is stalled or overloaded; "
                        "the run can be repeated (source.zenodo.timeout_seconds sets the wait)",
                    ) from exc
                raise ServiceError(
                    f"{self.service} unreachable after {attempt + 1} attempts in "
                    f"{spent:.0f} s: {unreachable_cause(exc)}",
                    stage=stage, record=record, url=url,
                    hint="check the URL in the manifest and the network; "
                    "the run can be repeated",
                ) from exc
            except requests.RequestException as exc:  # invalid URL, too many redirects, ...
                raise ServiceError(f"{self.service} {method} could not be sent: "
                                   f"{type(exc).__name__}", stage=stage, record=record,
                                   url=url, hint=hint) from exc
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

    def request_json(self, method: str, path_or_url: str, *, stage: str,
                     record: str | None = None, expected: str = "a JSON object",
                     max_bytes: int = MAX_JSON_BYTES, **kwargs: Any) -> dict[str, Any]:
        """:meth:`request`, then the body as a JSON object; every way it can be wrong is one
        :class:`ForeignDataError` (not JSON, not an object, too large, too slow).

        The body is streamed within twice the read timeout and ``max_bytes``, so a hostile or
        broken server can neither hang a stage nor fill the memory with one answer.
        """
        response = self.request(method, path_or_url, stage=stage, record=record, stream=True,
                                **kwargs)
        with response:
            deadline = time.monotonic() + 2 * self.timeout[1]
            body = b"".join(iter_body(response, stage=stage, record=record,
                                      what=f"{self.service} answer", deadline=deadline,
                                      max_bytes=max_bytes))
        try:
            data = json.loads(body)
        except ValueError as exc:  # also UnicodeDecodeError
            raise ForeignDataError(
                f"{self.service} answered HTTP {response.status_code} with a body that is not "
                "JSON", stage=stage, record=record, url=response.url, expected=expected,
                got=redact(repr(body[:80]), self.secrets),
                hint="the service may be degraded or behind a proxy; the run can be repeated",
            ) from exc
        if not isinstance(data, dict):
            raise ForeignDataError(
                f"{self.service} answered with JSON of the wrong kind", stage=stage,
                record=record, url=response.url, expected=expected,
                got=f"a JSON {type(data).__name__}",
                hint="the service may be degraded; the run can be repeated")
        return data

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
        if status >= 500:
            hint = "the service had an error of its own; the run can be repeated"
        return ServiceError(f"{self.service} {method} failed", hint=hint, **common)

    def close(self) -> None:
        self.session.close()
