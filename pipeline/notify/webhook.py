"""Signed webhooks: a CloudEvents 1.0 event per published version, HMAC-SHA256 signed.

Why CloudEvents (structured content mode, ``application/cloudevents+json``): it is the vendor-
neutral envelope that event routers (Knative, Azure Event Grid, AWS EventBridge pipes, Argo
Events) accept as they are, and it names the fields receivers need to deduplicate (``source`` +
``id``). The ``id`` is a uuid5 of dataset, version and event type, and ``time`` is when the
version was published, so a retried delivery, including one re-sent on the next run after a
crash, is byte-identical to the first: same id, same body, same signature.

The signature follows GitHub's webhook convention, which most receivers already implement:
``X-Signature-256: sha256=<hex HMAC-SHA256 of the exact body bytes>``, keyed by the secret in the
environment variable the manifest names. The body is serialised once and those bytes are both
signed and sent, so no re-serialisation can break the signature.

Delivery uses :class:`pipeline.http.HttpClient` (short timeouts, bounded retries on connection
errors, 429 and 5xx). Redirects are not followed: ``requests`` would turn the POST into a GET on
a 301/302, so a moved endpoint is reported instead. The URL is treated as a secret (many receivers
put a token in it) and masked in every message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from pipeline.http import Sleep
from pipeline.notify.announcement import Announcement, post, stable_id, url_secrets

SPECVERSION = "1.0"
EVENT_TYPE = "org.codeimages.dataset.published"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
SIGNATURE_HEADER = "X-Signature-256"


def event_source(a: Announcement) -> str:
    """The CloudEvents ``source``: the same for every version of one dataset.

    The concept DOI when Zenodo is used (it names the dataset itself), else the Kaggle dataset
    URL, else a URN of the dataset name.
    """
    if a.concept_doi:
        return a.urls["concept_doi"]
    if a.kaggle_url:
        return a.kaggle_url
    return f"urn:uuid:{stable_id(a.dataset, 'feed')}"


def cloud_event(a: Announcement, *, event_type: str = EVENT_TYPE) -> dict[str, Any]:
    """The CloudEvents 1.0 envelope for ``a`` (a pure function of the announcement)."""
    return {
        "specversion": SPECVERSION,
        "id": stable_id(a.dataset, "version", a.version, event_type),
        "source": event_source(a),
        "type": event_type,
        "subject": a.version,
        "time": a.updated,
        "datacontenttype": "application/json",
        "data": a.payload(),
    }


def encode(event: dict[str, Any]) -> bytes:
    """Compact, key-sorted UTF-8 JSON: deterministic, so retries are byte-identical."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                      ).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: the ``X-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    """POSTs the signed CloudEvent to one receiver."""

    def __init__(self, *, url_env: str, url: str, secret: str, sleep: Sleep) -> None:
        self.channel = f"webhook:{url_env}"
        self.url_env = url_env
        self.url = url
        self.secret = secret
        self.sleep = sleep

    def send(self, announcement: Announcement) -> None:
        body = encode(cloud_event(announcement))
        post(self.url, service=f"webhook ${self.url_env}", version=announcement.version,
             what=f"webhook (URL in ${self.url_env}) did not accept the event",
             secrets=[self.secret, *url_secrets(self.url)], sleep=self.sleep,
             hint=lambda status: _hint(status, self.url_env), ok=range(200, 300), data=body,
             headers={"Content-Type": CONTENT_TYPE,
                      SIGNATURE_HEADER: signature(self.secret, body)})


def _hint(status: int | None, url_env: str) -> str:
    if status in (401, 403):
        return ("the receiver refused the request: check that the secret named by secret_env "
                "matches the one configured at the receiver; retried on the next run")
    if status is not None and 300 <= status < 400:
        return f"the receiver moved: put its new URL in ${url_env}; retried on the next run"
    if status == 404:
        return f"the receiver does not know this URL: check ${url_env}; retried on the next run"
    return "retried on the next run; the published version is not affected"
