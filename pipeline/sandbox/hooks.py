"""The sandbox's notification receivers: signed webhooks, Slack, and GitHub ``repository_dispatch``.

Why a receiver that *checks*: a test that only sees "a POST arrived" would pass with a wrong
signature, a malformed CloudEvent or a dispatch GitHub would refuse. So this module verifies
independently of :mod:`pipeline.notify` (its own HMAC code, its own reading of the rules) and
answers the way the real services do:

``POST /hooks/<name>``
    a CloudEvents receiver that checks signatures as a careful receiver does: Standard Webhooks
    (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64>`` over
    ``id.timestamp.body``; a ``whsec_<base64>`` secret is base64-decoded to the key), or GitHub's
    ``X-Hub-Signature-256: sha256=<hex>`` over the body when that is the header sent. Secret:
    option ``webhook_secret``, default :data:`WEBHOOK_SECRET`; constant-time compares. Replay
    window: a timestamp more than ``webhook_tolerance`` seconds (default 300, as the convention's
    libraries use) from the receiver's clock is refused, and so is a delivery whose id,
    timestamp and signature were already accepted (a captured request sent again); a genuine
    retry of an accepted id, freshly signed, is accepted and marked ``duplicate``. Then the
    CloudEvents 1.0 structured-mode rules (content type ``application/cloudevents+json``;
    ``specversion`` "1.0"; non-empty ``id``, ``source``, ``type``). Answers 202, 401 for a
    missing, wrong, stale or replayed signature (the reason in ``problems``), 400 for a
    malformed event.
``POST /slack/<name>``
    like a Slack incoming webhook: ``200 ok`` as ``text/plain``; ``400 invalid_payload`` for a
    body that is not a JSON object, ``400 no_text`` without ``text`` or ``blocks``,
    ``400 invalid_blocks`` for blocks without a ``type``.
``POST /repos/{owner}/{repo}/dispatches``
    like GitHub (API 2022-11-28): 204; 401 ``Bad credentials`` without or with a wrong token
    (``Bearer`` or ``token`` scheme, default :data:`GITHUB_TOKEN`); 404 ``Not Found`` for a repo
    outside ``dispatch_repos`` when that option is given; 400 ``Problems parsing JSON``; 422
    ``Invalid request.\\n\\n...`` in GitHub's wording for a missing or too long ``event_type``,
    unknown keys, or a ``client_payload`` that is not an object or has more than 10 keys.
``GET /hooks``
    every delivery so far as JSON (``?kind=webhook|slack|dispatch``, ``?name=``), so ``pipeline
    demo`` and a person with curl can see what arrived.

Knob: :meth:`HooksService.fail_next` makes the next N requests to a path answer 500 (recorded
too), which is how tests exercise retries within a run and "failed, retried next run".
Sandbox options read: ``webhook_secret``, ``webhook_tolerance``, ``github_token``,
``dispatch_repos``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline.sandbox import GITHUB_TOKEN, WEBHOOK_SECRET
from pipeline.sandbox.server import Request, Response, Router, json_response

Kind = Literal["webhook", "slack", "dispatch"]
DISPATCH_DOCS = "https://docs.github.com/rest/repos/repos#create-a-repository-dispatch-event"
_NAME = r"(?P<name>[A-Za-z0-9._~-]+)"


@dataclass
class Delivery:
    """One request a receiver got, whatever it answered."""

    kind: Kind
    name: str                     # hook name, Slack name, or "owner/repo"
    path: str
    headers: dict[str, str]       # Authorization masked
    body: bytes
    status: int                   # what the receiver answered
    verified: bool | None = None  # webhooks: the signature matched and was fresh
    duplicate: bool = False       # webhooks: an id accepted before, freshly signed (a retry)
    problems: list[str] = field(default_factory=list)
    at: str = ""

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "path": self.path,
                "headers": self.headers, "body": self.body.decode("utf-8", "replace"),
                "status": self.status, "verified": self.verified, "duplicate": self.duplicate,
                "problems": self.problems,
                "at": self.at}


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is GitHub's ``sha256=<hex HMAC-SHA256(secret, body)>`` (constant
    time)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    given = header[len("sha256="):].strip().lower().encode("utf-8")
    return hmac.compare_digest(expected.encode("ascii"), given)


def _standard_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[6:], validate=True)
        except binascii.Error:
            pass
    return secret.encode("utf-8")


def verify_standard(secret: str, body: bytes, headers: Any, *, now: float,
                    tolerance: float) -> str | None:
    """Why a Standard Webhooks delivery is refused (None when its signature is good and fresh).

    Any of the space-separated ``v1,`` signatures may match (the convention allows several
    during a secret rotation).
    """
    msg_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        return "webhook-id, webhook-timestamp or webhook-signature missing"
    if not stamp.isdigit():
        return f"webhook-timestamp {stamp!r} is not Unix seconds"
    if abs(now - int(stamp)) > tolerance:
        return (f"webhook-timestamp {stamp} is {abs(now - int(stamp)):.0f} s from the "
                f"receiver's clock (replay window {tolerance:.0f} s)")
    signed = f"{msg_id}.{stamp}.".encode() + body
    expected = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        try:
            given = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if version == "v1" and hmac.compare_digest(expected, given):
            return None
    return "no webhook-signature matches"


def cloudevent_problems(content_type: str, body: bytes) -> list[str]:
    """What breaks CloudEvents 1.0 structured JSON mode in this request (empty when fine)."""
    problems = []
    if content_type.split(";")[0].strip().lower() != "application/cloudevents+json":
        problems.append(f"Content-Type {content_type!r} is not application/cloudevents+json")
    try:
        event = json.loads(body.decode("utf-8"))
    except ValueError:
        return [*problems, "body is not JSON"]
    if not isinstance(event, dict):
        return [*problems, "body is not a JSON object"]
    if event.get("specversion") != "1.0":
        problems.append(f"specversion is {event.get('specversion')!r}, expected '1.0'")
    for attr in ("id", "source", "type"):
        if not isinstance(event.get(attr), str) or not event[attr]:
            problems.append(f"required attribute {attr!r} missing or empty")
    if "time" in event:
        try:
            datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"time {event['time']!r} is not RFC 3339")
    return problems


def dispatch_problems(body: Any) -> list[str]:
    """GitHub's 422 reasons for a ``repository_dispatch`` body, in GitHub's wording."""
    if not isinstance(body, dict):
        return [f"For 'links/0/schema', {json.dumps(body)} is not an object."]
    problems = []
    unknown = sorted(set(body) - {"event_type", "client_payload"})
    if unknown:
        keys = ", ".join(f'"{k}"' for k in unknown)
        verb = "is not a permitted key" if len(unknown) == 1 else "are not permitted keys"
        problems.append(f"{keys} {verb}.")
    event_type = body.get("event_type")
    if event_type is None:
        problems.append('"event_type" wasn\'t supplied.')
    elif not isinstance(event_type, str):
        problems.append(f"For 'properties/event_type', {json.dumps(event_type)} is not a string.")
    elif not 1 <= len(event_type) <= 100:
        problems.append(f"For 'properties/event_type', {json.dumps(event_type)} is too "
                        f"{'long' if event_type else 'short'} (1..100 characters).")
    payload = body.get("client_payload")
    if payload is not None and not isinstance(payload, dict):
        problems.append(f"For 'properties/client_payload', {json.dumps(payload)} is not an "
                        "object.")
    elif isinstance(payload, dict) and len(payload) > 10:
        problems.append(f"No more than 10 properties are allowed; {len(payload)} were supplied.")
    return problems


def _github_error(status: int, message: str, docs: str = DISPATCH_DOCS) -> Response:
    return json_response(status, {"message": message, "documentation_url": docs,
                                  "status": str(status)})


def _plain(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"})


class HooksService:
    """Webhook, Slack and ``repository_dispatch`` receivers that record every delivery."""

    def __init__(self, sandbox: Any) -> None:
        options = getattr(sandbox, "options", {}) or {}
        self.secret: str = options.get("webhook_secret", WEBHOOK_SECRET)
        self.tolerance: float = float(options.get("webhook_tolerance", 300))
        self.clock = time.time
        self._accepted: set[tuple[str, ...]] = set()  # (hook, id, timestamp, signature)
        self._accepted_ids: set[tuple[str, ...]] = set()  # (hook, id)
        self.github_token: str = options.get("github_token", GITHUB_TOKEN)
        repos = options.get("dispatch_repos")
        self.known_repos: set[str] | None = set(repos) if repos else None
        self._deliveries: list[Delivery] = []
        self._fail: dict[str, tuple[int, int]] = {}  # path -> (remaining, status)
        self._lock = threading.Lock()

    def register(self, router: Router) -> None:
        router.add("GET", "/hooks", self._list)
        router.add("POST", f"/hooks/{_NAME}", self._webhook)
        router.add("POST", f"/slack/{_NAME}", self._slack)
        router.add("POST", r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/dispatches", self._dispatch)

    # -- knobs and inspection -----------------------------------------------------------------
    def fail_next(self, path: str, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` POSTs to ``path`` (e.g. ``/hooks/ci``) with ``status``."""
        with self._lock:
            self._fail[path] = (count, status)

    def deliveries(self, kind: Kind | None = None, name: str | None = None, *,
                   accepted: bool | None = None) -> list[Delivery]:
        """Deliveries so far, oldest first, filtered by kind, name and whether accepted."""
        with self._lock:
            return [d for d in self._deliveries
                    if (kind is None or d.kind == kind) and (name is None or d.name == name)
                    and (accepted is None or d.accepted == accepted)]

    def clear(self) -> None:
        with self._lock:
            self._deliveries.clear()
            self._fail.clear()
            self._accepted.clear()
            self._accepted_ids.clear()

    # -- handlers -----------------------------------------------------------------------------
    def _record(self, kind: Kind, name: str, request: Request, response: Response,
                **extra: Any) -> Response:
        headers = {k: ("***" if k.lower() == "authorization" else v)
                   for k, v in request.headers.items()}
        delivery = Delivery(kind=kind, name=name, path=request.path, headers=headers,
                            body=request.body, status=response.status,
                            at=datetime.now(UTC).isoformat(timespec="milliseconds"), **extra)
        with self._lock:
            self._deliveries.append(delivery)
        return response

    def _injected_failure(self, request: Request) -> Response | None:
        with self._lock:
            remaining, status = self._fail.get(request.path, (0, 0))
            if remaining <= 0:
                return None
            self._fail[request.path] = (remaining - 1, status)
        return json_response(status, {"message": "injected failure"})

    def _list(self, request: Request) -> Response:
        found = self.deliveries(request.arg("kind"), request.arg("name"))  # type: ignore[arg-type]
        return json_response(200, [d.to_dict() for d in found])

    def _webhook(self, request: Request) -> Response:
        name = request.params["name"]
        failure = self._injected_failure(request)
        if failure:
            return self._record("webhook", name, request, failure)
        headers = request.headers
        if headers.get("webhook-signature") is None and headers.get("X-Hub-Signature-256"):
            refused = (None if verify_signature(self.secret, request.body,
                                                headers.get("X-Hub-Signature-256"))
                       else "X-Hub-Signature-256 does not match")
            replay: tuple[str, ...] | None = None
        else:
            refused = verify_standard(self.secret, request.body, headers, now=self.clock(),
                                      tolerance=self.tolerance)
            replay = (name, str(headers.get("webhook-id")),
                      str(headers.get("webhook-timestamp")), str(headers.get("webhook-signature")))
        duplicate = False
        with self._lock:
            if refused is None and replay is not None:
                if replay in self._accepted:
                    refused = "replayed: this id, timestamp and signature were already accepted"
                duplicate = replay[:2] in self._accepted_ids
        problems = cloudevent_problems(headers.get("Content-Type", ""), request.body)
        if refused:
            response = json_response(401, {"error": refused})
            problems = [refused, *problems]
        elif problems:
            response = json_response(400, {"error": "invalid CloudEvent", "problems": problems})
        else:
            response = json_response(202, {"accepted": True, "duplicate": duplicate})
            if replay is not None:
                with self._lock:
                    self._accepted.add(replay)
                    self._accepted_ids.add(replay[:2])
        return self._record("webhook", name, request, response, verified=refused is None,
                            problems=problems, duplicate=duplicate)

    def _slack(self, request: Request) -> Response:
        name = request.params["name"]
        failure = self._injected_failure(request)
        if failure:
            return self._record("slack", name, request, failure)
        try:
            payload = json.loads(request.body.decode("utf-8"))
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            response = _plain(400, "invalid_payload")
        elif not payload.get("text") and not payload.get("blocks"):
            response = _plain(400, "no_text")
        elif "blocks" in payload and not (
                isinstance(payload["blocks"], list)
                and all(isinstance(b, dict) and b.get("type") for b in payload["blocks"])):
            response = _plain(400, "invalid_blocks")
        else:
            response = _plain(200, "ok")
        return self._record("slack", name, request, response)

    def _dispatch(self, request: Request) -> Response:
        name = f"{request.params['owner']}/{request.params['repo']}"
        failure = self._injected_failure(request)
        if failure:
            return self._record("dispatch", name, request, failure)
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or \
                not hmac.compare_digest(token.strip().encode(), self.github_token.encode()):
            response = _github_error(401, "Bad credentials", "https://docs.github.com/rest")
        elif self.known_repos is not None and name not in self.known_repos:
            response = _github_error(404, "Not Found")
        else:
            try:
                body = json.loads(request.body.decode("utf-8"))
            except ValueError:
                response = _github_error(400, "Problems parsing JSON")
            else:
                problems = dispatch_problems(body)
                response = (_github_error(422, "Invalid request.\n\n" + "\n".join(problems))
                            if problems else Response(204))
        return self._record("dispatch", name, request, response)
