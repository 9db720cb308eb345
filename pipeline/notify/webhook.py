"""Signed webhooks: a CloudEvents 1.0 event per published version, signed per Standard Webhooks.

Why CloudEvents (structured content mode, ``application/cloudevents+json``): it is the vendor-
neutral envelope that event routers (Knative, Azure Event Grid, AWS EventBridge pipes, Argo
Events) accept as they are, and it names the fields receivers need to deduplicate (``source`` +
``id``). The ``id`` is a uuid5 of dataset, version and event type, and ``time`` is when the
version was published, so a retried delivery, including one re-sent on the next run after a
crash, has the same id and a byte-identical body.

Why Standard Webhooks (https://www.standardwebhooks.com, SPEC §15; it supersedes the
``X-Signature-256`` of SPEC §8): the signature covers a timestamp as well as the body, so a
receiver can refuse a captured delivery replayed later, and libraries exist for every language
(``standardwebhooks`` on PyPI). Each attempt sends

    webhook-id: <the CloudEvent id; the same on every retry, for deduplication>
    webhook-timestamp: <Unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">

keyed by the secret in the environment variable the manifest names: a ``whsec_<base64>`` secret
(the convention's form) is base64-decoded to the key; any other value is used as its UTF-8 bytes.
With ``signature: github`` in the manifest entry the delivery is signed as GitHub signs its own
webhooks instead, ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` with the secret's
UTF-8 bytes, for receivers built for GitHub (no timestamp, so no replay window). The body is
serialised once and those bytes are both signed and sent, so no re-serialisation can break the
signature.

Delivery uses :class:`pipeline.http.HttpClient` (short timeouts, bounded retries on connection
errors, 429 and 5xx). Redirects are not followed: ``requests`` would turn the POST into a GET on
a 301/302, so a moved endpoint is reported instead. The URL is treated as a secret (many receivers
put a token in it) and masked in every message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any, Literal

from pipeline.http import Sleep
from pipeline.notify.announcement import Announcement, post, stable_id, url_secrets

SPECVERSION = "1.0"
EVENT_TYPE = "org.codeimages.dataset.published"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
GITHUB_HEADER = "X-Hub-Signature-256"
SECRET_PREFIX = "whsec_"
Scheme = Literal["standard-webhooks", "github"]


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


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_<base64>`` decoded, else UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except binascii.Error:
            pass  # not base64 after all: used as it is, like any other secret
    return secret.encode("utf-8")


def standard_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery attempt (a pure function)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii")}


def github_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: GitHub's ``X-Hub-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_headers(scheme: Scheme, secret: str, msg_id: str, body: bytes,
                      now: Callable[[], float] = time.time) -> dict[str, str]:
    """The signing headers of one attempt under ``scheme`` (the manifest's ``signature``)."""
    if scheme == "github":
        return {GITHUB_HEADER: github_signature(secret, body)}
    return standard_headers(secret, msg_id, int(now()), body)


class WebhookNotifier:
    """POSTs the signed CloudEvent to one receiver."""

    def __init__(self, *, url_env: str, url: str, secret: str, sleep: Sleep,
                 scheme: Scheme = "standard-webhooks") -> None:
        self.channel = f"webhook:{url_env}"
        self.url_env = url_env
        self.url = url
        self.secret = secret
        self.sleep = sleep
        self.scheme = scheme

    def send(self, announcement: Announcement) -> None:
        event = cloud_event(announcement)
        body = encode(event)
        post(self.url, service=f"webhook ${self.url_env}", version=announcement.version,
             what=f"webhook (URL in ${self.url_env}) did not accept the event",
             secrets=[self.secret, *url_secrets(self.url)], sleep=self.sleep,
             hint=lambda status: _hint(status, self.url_env), ok=range(200, 300), data=body,
             headers={"Content-Type": CONTENT_TYPE,
                      **signature_headers(self.scheme, self.secret, event["id"], body)})


def _hint(status: int | None, url_env: str) -> str:
    if status in (401, 403):
        return ("the receiver refused the request: check that the secret named by secret_env "
                "matches the one configured at the receiver; retried on the next run")
    if status is not None and 300 <= status < 400:
        return f"the receiver moved: put its new URL in ${url_env}; retried on the next run"
    if status == 404:
        return f"the receiver does not know this URL: check ${url_env}; retried on the next run"
    return "retried on the next run; the published version is not affected"
