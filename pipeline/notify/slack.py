"""A Slack message per published version, through an incoming webhook.

Why incoming webhooks: they need no Slack app token or scopes on our side, only one URL, which the
workspace admin creates for a channel. That URL *is* the credential (the path carries the token),
so it lives in the environment variable the manifest names and is masked in every message.

The message has Block Kit ``blocks`` for the rich layout and a plain ``text`` that Slack shows in
notifications and in clients without Block Kit (Slack asks for both). Slack answers ``200 ok`` as
``text/plain``, and plain-text error codes otherwise (``400 invalid_payload``, ``403
action_prohibited``, ``404 no_service``, ``410 channel_is_archived``); those codes are what the
error message quotes. Limits honoured: header text 150 characters, section text 3000.
"""

from __future__ import annotations

from typing import Any

from pipeline.http import Sleep
from pipeline.notify.announcement import Announcement, post, url_secrets

HEADER_LIMIT = 150
SECTION_LIMIT = 3000


def escape(text: str) -> str:
    """Slack ``mrkdwn`` escaping: only ``&``, ``<`` and ``>`` are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    return f"<{escape(url)}|{escape(label)}>"


def message(a: Announcement) -> dict[str, Any]:
    """The incoming-webhook JSON body ``{"text", "blocks"}`` for ``a`` (pure)."""
    c = a.counts
    header = f"{a.title} {a.version} published"
    if len(header) > HEADER_LIMIT:
        header = header[:HEADER_LIMIT - 1] + "…"
    facts = [f"*{c[k]:,}* {k}" for k in ("records", "images") if k in c]
    changes = [f"{c[k]:,} {k}" for k in ("added", "updated", "removed") if k in c]
    body = " · ".join(facts) or f"Version {escape(a.version)}"
    if changes:
        body += "\n" + ", ".join(changes)
    fields = []
    if a.doi:
        fields.append(f"*DOI*\n{_link(a.urls['doi'], a.doi)}")
    if a.zenodo_url:
        fields.append(f"*Zenodo*\n{_link(a.zenodo_url, 'record')}")
    if a.kaggle_url:
        label = f"version {a.kaggle_version}" if a.kaggle_version else "dataset"
        fields.append(f"*Kaggle*\n{_link(a.kaggle_url, label)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:SECTION_LIMIT]}},
    ]
    if fields:
        blocks.append({"type": "section",
                       "fields": [{"type": "mrkdwn", "text": f} for f in fields]})
    if a.feed_url:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"Follow new versions: {_link(a.feed_url, 'Atom feed')}"}]})
    text = a.summary()
    if a.landing_url:
        text += f" {a.landing_url}"
    return {"text": text, "blocks": blocks}


class SlackNotifier:
    """POSTs :func:`message` to the incoming-webhook URL."""

    channel = "slack"

    def __init__(self, *, url_env: str, url: str, sleep: Sleep) -> None:
        self.url_env = url_env
        self.url = url
        self.sleep = sleep

    def send(self, announcement: Announcement) -> None:
        post(self.url, service=f"Slack webhook ${self.url_env}", version=announcement.version,
             what=f"Slack (URL in ${self.url_env}) refused the message",
             secrets=url_secrets(self.url), sleep=self.sleep,
             hint=lambda status: _hint(status, self.url_env), json=message(announcement))


def _hint(status: int | None, url_env: str) -> str:
    if status in (403, 404, 410):
        return (f"the webhook in ${url_env} was revoked, or its channel archived or made "
                "read-only: create a new incoming webhook and update the secret; "
                "retried on the next run")
    if status == 400:
        return "Slack rejected the message format; report this as a pipeline bug"
    return "retried on the next run; the published version is not affected"
