"""What every channel says about a published dataset version, decided once.

Why a module of its own: the feed, the webhooks, Slack and ``repository_dispatch`` must agree on
the version's DOI, URLs, counts and times, and on the stable identifiers receivers deduplicate by.
Building that from the ``state.versions`` entry in one pure place keeps the channels to the job of
formatting and delivering it, and keeps them from drifting apart.

Times are taken from the state (when the version was created and when its last destination
published it), never from the clock, so a channel that is retried on the next run sends the same
bytes as the first attempt: a webhook receiver sees the same CloudEvents ``id`` *and* the same
signature, and the feed file does not change when nothing new was published.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from pipeline.errors import NotifyError, ServiceError, redact
from pipeline.http import HttpClient, Sleep

TIMEOUT = (5.0, 30.0)  # connect, read: a receiver should answer quickly and queue its work
RETRIES = 3            # 4 attempts, sleeping 1, 2, 4 s between them

DOI_RESOLVER = "https://doi.org/"
# Namespace of the name-based (uuid5) identifiers below; any fixed UUID would do, this one is
# RFC 4122's URL namespace so the ids can be recomputed with any UUID library.
ID_NAMESPACE = uuid.NAMESPACE_URL


def rfc3339(value: str | None) -> str | None:
    """Normalise an ISO 8601 timestamp to RFC 3339 UTC (``2026-11-21T06:00:00Z``).

    Atom (RFC 4287 §3.3) and CloudEvents require a time zone; the state may hold ``Z``,
    ``+00:00`` or (from older writers) naive timestamps, which are taken as UTC.
    """
    if not value:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def doi_url(doi: str) -> str:
    """The resolver URL of a DOI, percent-encoded (DOI suffixes may hold ``<``, ``#``, ``?``)."""
    return DOI_RESOLVER + quote(doi, safe="/:;()._-")


def stable_id(*parts: str) -> str:
    """A name-based UUID (RFC 4122 version 5) of ``parts``: same inputs, same id, forever."""
    return str(uuid.uuid5(ID_NAMESPACE, "/".join(parts)))


@dataclass(frozen=True)
class Announcement:
    """One published dataset version, as the channels announce it."""

    dataset: str                     # manifest dataset.name, e.g. "code-images"
    title: str                       # manifest dataset.title
    version: str                     # e.g. "3.20261121"
    created: str                     # RFC 3339, when the version was built
    updated: str                     # RFC 3339, when its last destination published it
    notes: str = ""                  # the CHANGELOG entry (Markdown)
    counts: dict[str, int] = field(default_factory=dict)
    doi: str | None = None
    concept_doi: str | None = None
    zenodo_url: str | None = None
    kaggle_url: str | None = None
    kaggle_version: int | None = None
    feed_url: str | None = None

    @classmethod
    def from_version(cls, entry: dict[str, Any], *, dataset: str, title: str,
                     feed_url: str | None = None) -> Announcement:
        """Build from a ``state.versions`` entry (see :mod:`pipeline.notify`)."""
        published = entry.get("published") or {}
        zenodo = published.get("zenodo") or {}
        kaggle = published.get("kaggle") or {}
        created = rfc3339(entry.get("created")) or "1970-01-01T00:00:00Z"
        times = [t for t in (rfc3339(d.get("at")) for d in published.values()
                             if isinstance(d, dict)) if t]
        return cls(
            dataset=dataset, title=title, version=str(entry["version"]), created=created,
            updated=max(times, default=created), notes=entry.get("notes") or "",
            counts={k: int(v) for k, v in (entry.get("counts") or {}).items()
                    if isinstance(v, int | float)},
            doi=zenodo.get("doi"), concept_doi=zenodo.get("concept_doi"),
            zenodo_url=zenodo.get("url"), kaggle_url=kaggle.get("url"),
            kaggle_version=kaggle.get("version_number"), feed_url=feed_url,
        )

    @property
    def urls(self) -> dict[str, str]:
        """Every link known for this version (keys absent when a destination is not used)."""
        found = {
            "doi": doi_url(self.doi) if self.doi else None,
            "concept_doi": doi_url(self.concept_doi) if self.concept_doi else None,
            "zenodo": self.zenodo_url,
            "kaggle": self.kaggle_url,
            "feed": self.feed_url,
        }
        return {k: v for k, v in found.items() if v}

    @property
    def landing_url(self) -> str | None:
        """Where a person should go first: the DOI, else the Zenodo record, else Kaggle."""
        urls = self.urls
        return urls.get("doi") or urls.get("zenodo") or urls.get("kaggle")

    def summary(self) -> str:
        """One line: ``code-images 3.20261121: 1,234 records, 5,678 images; 10 added, ...``."""
        c = self.counts
        parts = [f"{c[k]:,} {k}" for k in ("records", "images") if k in c]
        changes = [f"{c[k]:,} {k}" for k in ("added", "updated", "removed") if k in c]
        text = f"{self.title} {self.version}"
        if parts:
            text += ": " + ", ".join(parts)
        if changes:
            text += ("; " if parts else ": ") + ", ".join(changes)
        if self.doi:
            text += f" (DOI {self.doi})"
        return text

    def payload(self) -> dict[str, Any]:
        """The machine-readable facts: CloudEvents ``data`` and dispatch ``client_payload``.

        Nine top-level keys: GitHub rejects a ``client_payload`` with more than 10 (422).
        """
        return {
            "dataset": self.dataset,
            "version": self.version,
            "doi": self.doi,
            "concept_doi": self.concept_doi,
            "kaggle_version": self.kaggle_version,
            "urls": self.urls,
            "counts": dict(self.counts),
            "created": self.created,
            "published": self.updated,
        }


class Notifier(Protocol):
    """A notification channel, built from the manifest by :func:`pipeline.notify.channels`."""

    channel: str
    """Stable id, the key under ``state.notifications[version]``; never holds a secret."""

    def send(self, announcement: Announcement) -> None:
        """Deliver ``announcement`` or raise :class:`pipeline.errors.NotifyError`."""
        ...


def url_secrets(url: str | None) -> list[str]:
    """The parts of a webhook URL to mask in messages.

    Incoming-webhook URLs are credentials (Slack's path *is* the token), and ``requests`` quotes
    only the path in connection errors, so both the whole URL and its path are masked.
    """
    if not url:
        return []
    split = urlsplit(url)
    tail = split.path + (f"?{split.query}" if split.query else "")
    return [s for s in (url, tail, split.path) if len(s) > 1]


def require_env(environ: Mapping[str, str], name: str, *, channel: str, key: str) -> str:
    """The value of the environment variable ``name``, or a :class:`NotifyError` naming it.

    An empty value counts as missing: GitHub Actions expands ``${{ secrets.X }}`` of a secret
    that does not exist to the empty string rather than failing the workflow.
    """
    value = environ.get(name, "")
    if not value.strip():
        raise NotifyError(
            f"{channel}: the environment variable {name} is not set (named by {key} in the "
            "manifest)", stage="notify",
            hint=f"set {name} in the job's environment, e.g. `env: {name}: "
            f"${{{{ secrets.{name} }}}}` in the workflow; the channel is retried on the next run")
    return value.strip()


def post(url: str, *, service: str, version: str, what: str, secrets: list[str], sleep: Sleep,
         hint: Callable[[int | None], str], **request: Any) -> None:
    """POST to a receiver's URL with the channel's retries; any refusal becomes one
    :class:`NotifyError` (``what`` says which channel refused what) with secrets masked."""
    client = HttpClient(service=service, timeout=TIMEOUT, retries=RETRIES, sleep=sleep,
                        secrets=secrets)
    try:
        client.request("POST", url, stage="notify", record=version, allow_redirects=False,
                       **request)
    except ServiceError as exc:
        raise NotifyError(
            redact(f"{what} for version {version}: {exc.message}"
                   + (f"; got {exc.got}" if exc.got else ""), secrets),
            stage="notify", record=version, hint=hint(exc.status),
        ) from exc
    finally:
        client.close()
