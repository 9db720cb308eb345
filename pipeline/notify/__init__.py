"""Notifications (SPEC section 8): announce each published dataset version once per channel.

One module per channel, all fed the same :class:`~pipeline.notify.announcement.Announcement`:

    announcement  what is said about a version (DOI, URLs, counts, ids); the Notifier protocol
    feed          the Atom feed file, rendered from every announceable version
    webhook       CloudEvents 1.0 JSON, signed per Standard Webhooks (or GitHub's header)
    slack         a Slack incoming-webhook message
    dispatch      GitHub ``repository_dispatch`` to start other repositories' workflows

Why the bookkeeping here: a notification must go out only after publishing succeeded, exactly
once per version and channel as far as we can know, and a broken Slack URL must neither stop the
other channels nor ever undo (or redo) a publish. So :func:`notify`

* announces a version only when every destination enabled in the manifest has published it
  (:func:`announceable`); it reads ``state.versions`` and never changes them;
* works on the *newest* announceable version, plus older versions that still have a *failed*
  channel (retried up to :data:`MAX_ATTEMPTS` runs); a channel added to the manifest later is not
  sent for old versions, so it does not flood its receiver with history;
* records every attempt in the state and saves it after each channel::

      state.notifications = {"3.20261121": {
          "feed":                            {"status": "sent", "attempts": 1, "error": null,
                                              "at": "2026-11-21T06:10:00Z"},
          "webhook:WEBHOOK_URL":             {"status": "failed", "attempts": 2,
                                              "error": "[notify] ...", "at": "..."},
          "slack":                           {...},
          "dispatch:org/repo:dataset-updated": {...}}}

  A ``sent`` channel is never sent again; a ``failed`` one is retried on the next run. Channel ids
  name environment variables and repositories, never their values;
* never raises for one channel: failures (including a missing environment variable, named in the
  message) are recorded, redacted and returned in the :class:`NotifyReport`; the CLI maps
  ``not report.ok`` to exit code 1.

Delivery is at-least-once: a run killed between a delivery and the state save sends that channel
again next time. Receivers deduplicate by the CloudEvents ``id`` (webhooks) or the version.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline.errors import NotifyError, PipelineError, redact
from pipeline.http import Sleep
from pipeline.manifest import Manifest
from pipeline.notify.announcement import Announcement, Notifier, require_env, url_secrets
from pipeline.notify.dispatch import DispatchNotifier
from pipeline.notify.feed import FeedNotifier
from pipeline.notify.slack import SlackNotifier
from pipeline.notify.webhook import WebhookNotifier
from pipeline.state import State

__all__ = ["MAX_ATTEMPTS", "Announcement", "ChannelResult", "Notifier", "NotifyReport", "Plan",
           "announceable", "channels", "enabled_destinations", "notify", "plan"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
ChannelStatus = Literal["sent", "failed"]


# -- deciding (pure) -------------------------------------------------------------------------
def enabled_destinations(manifest: Manifest) -> list[str]:
    """Names of the destinations a version must be published to before it is announced."""
    dst = manifest.destinations
    return [name for name, d in (("zenodo", dst.zenodo), ("kaggle", dst.kaggle))
            if d is not None and d.enabled]


def announceable(entry: Mapping[str, Any], enabled: Sequence[str]) -> bool:
    """True when every enabled destination appears under the version's ``published``."""
    published = entry.get("published") or {}
    return all(published.get(name) for name in enabled)


@dataclass(frozen=True)
class Plan:
    """What one run of :func:`notify` has to do."""

    work: list[tuple[str, list[str]]]      # (version, channel ids to send), oldest first
    given_up: list[tuple[str, str]]        # (version, channel) failed max_attempts runs
    waiting: list[str]                     # newer versions not yet on every destination


def plan(versions: Sequence[Mapping[str, Any]], notifications: Mapping[str, Mapping[str, Any]],
         channel_ids: Sequence[str], *, enabled: Sequence[str],
         max_attempts: int = MAX_ATTEMPTS) -> Plan:
    """Decide which channels to send for which versions (see the module docstring)."""
    ready = [v for v in versions if announceable(v, enabled)]
    newest = str(ready[-1]["version"]) if ready else None
    seen_newest = newest is None
    waiting = []
    for entry in versions:
        if seen_newest and not announceable(entry, enabled):
            waiting.append(str(entry["version"]))
        seen_newest = seen_newest or str(entry["version"]) == newest
    work: list[tuple[str, list[str]]] = []
    given_up: list[tuple[str, str]] = []
    for entry in ready:
        version = str(entry["version"])
        done = notifications.get(version, {})
        todo = []
        for channel in channel_ids:
            record = done.get(channel) or {}
            status = record.get("status")
            if status == "sent" or (status != "failed" and version != newest):
                continue
            if status == "failed" and record.get("attempts", 0) >= max_attempts:
                given_up.append((version, channel))
                continue
            todo.append(channel)
        if todo:
            work.append((version, todo))
    return Plan(work=work, given_up=given_up, waiting=waiting)


# -- reporting -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelResult:
    version: str
    channel: str
    status: ChannelStatus
    attempts: int
    error: str | None = None


@dataclass
class NotifyReport:
    """What :func:`notify` did; nothing in it holds a secret."""

    results: list[ChannelResult] = field(default_factory=list)
    given_up: list[tuple[str, str]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    feed_path: str = ""

    @property
    def sent(self) -> list[ChannelResult]:
        return [r for r in self.results if r.status == "sent"]

    @property
    def failed(self) -> list[ChannelResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """False when any channel failed in this run (the CLI exits with 1)."""
        return not self.failed

    @property
    def versions(self) -> list[str]:
        return list(dict.fromkeys(r.version for r in self.results))

    def lines(self) -> list[str]:
        """Human-readable lines for the log / terminal."""
        if not self.results:
            out = ["notify: nothing to announce"]
        else:
            out = [f"notify: {r.version} {r.channel}: {r.status} (attempt {r.attempts})"
                   + (f": {r.error}" if r.error else "") for r in self.results]
        out += [f"notify: {v} {c}: failed on too many runs, not retried any more (delete "
                f"state.notifications[{v!r}][{c!r}] to try again)" for v, c in self.given_up]
        out += [f"notify: {v} is not yet published to every enabled destination"
                for v in self.waiting]
        return out

    def outputs(self) -> dict[str, str]:
        """GitHub Actions step outputs (see :mod:`pipeline.actions`)."""
        return {
            "notified_versions": " ".join(self.versions),
            "sent": str(len(self.sent)),
            "failed": str(len(self.failed)),
            "failed_channels": "\n".join(f"{r.version} {r.channel}" for r in self.failed),
            "feed_path": self.feed_path,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per channel attempted, for the job summary table."""
        return [{"version": r.version, "channel": r.channel, "status": r.status,
                 "attempts": r.attempts, "error": r.error or ""} for r in self.results]


# -- channels --------------------------------------------------------------------------------
Factory = Callable[[], Notifier]


def channels(manifest: Manifest, announcements: Sequence[Announcement], *,
             environ: Mapping[str, str], sleep: Sleep) -> list[tuple[str, Factory]]:
    """The configured channels as ``(id, factory)``; a factory raises when its env var is unset.

    Factories, not notifiers: a missing variable must fail only its own channel, at send time,
    and be recorded like any other failure.
    """
    n, ds = manifest.notifications, manifest.dataset
    out: list[tuple[str, Factory]] = [("feed", lambda: FeedNotifier(
        n.feed_path, announcements, title=ds.title, dataset=ds.name, creators=ds.creators,
        subtitle=ds.description, rights=ds.license, feed_url=n.feed_url))]

    for i, hook in enumerate(n.webhooks):
        def make_webhook(hook: Any = hook, i: int = i) -> Notifier:
            key = f"notifications.webhooks[{i}]"
            return WebhookNotifier(
                url_env=hook.url_env, sleep=sleep, scheme=hook.signature,
                url=require_env(environ, hook.url_env, channel="webhook", key=f"{key}.url_env"),
                secret=require_env(environ, hook.secret_env, channel="webhook",
                                   key=f"{key}.secret_env"))
        out.append((f"webhook:{hook.url_env}", make_webhook))

    if n.slack_url_env:
        slack_env = n.slack_url_env
        out.append(("slack", lambda: SlackNotifier(
            url_env=slack_env, sleep=sleep,
            url=require_env(environ, slack_env, channel="slack",
                            key="notifications.slack.url_env"))))

    for i, target in enumerate(n.github_dispatch):
        def make_dispatch(target: Any = target, i: int = i) -> Notifier:
            return DispatchNotifier(
                repo=target.repo, event_type=target.event_type, token_env=target.token_env,
                api_url=target.api_url, sleep=sleep,
                token=require_env(environ, target.token_env, channel="repository_dispatch",
                                  key=f"notifications.github_dispatch[{i}].token_env"))
        out.append((f"dispatch:{target.repo}:{target.event_type}", make_dispatch))

    seen: dict[str, int] = {}
    unique = []
    for channel_id, factory in out:  # two entries naming the same variable stay apart
        seen[channel_id] = seen.get(channel_id, 0) + 1
        unique.append((channel_id if seen[channel_id] == 1 else f"{channel_id}#{seen[channel_id]}",
                       factory))
    return unique


def _secret_values(manifest: Manifest, environ: Mapping[str, str]) -> list[str]:
    """Every secret a channel may read, to mask in anything stored or reported."""
    n = manifest.notifications
    names = [w.url_env for w in n.webhooks] + [w.secret_env for w in n.webhooks]
    names += [d.token_env for d in n.github_dispatch] + ([n.slack_url_env] if n.slack_url_env
                                                        else [])
    values: list[str] = []
    for name in names:
        value = environ.get(name, "").strip()
        values += [value, *url_secrets(value)] if value else []
    return values


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- doing ------------------------------------------------------------------------------------
def notify(manifest: Manifest, state: State, *, sleep: Sleep = time.sleep,
           environ: Mapping[str, str] = os.environ,
           max_attempts: int = MAX_ATTEMPTS) -> NotifyReport:
    """Send what :func:`plan` says, record each channel in ``state`` and save it after each one.

    Never raises for a failing channel; see :class:`NotifyReport`.
    """
    ds, enabled = manifest.dataset, enabled_destinations(manifest)
    announcements = {
        str(v["version"]): Announcement.from_version(
            v, dataset=ds.name, title=ds.title, feed_url=manifest.notifications.feed_url)
        for v in state.versions if announceable(v, enabled)}
    configured = channels(manifest, list(announcements.values()), environ=environ, sleep=sleep)
    factories = dict(configured)
    todo = plan(state.versions, state.notifications, [c for c, _ in configured],
                enabled=enabled, max_attempts=max_attempts)
    report = NotifyReport(given_up=todo.given_up, waiting=todo.waiting,
                          feed_path=str(manifest.notifications.feed_path))
    secrets = _secret_values(manifest, environ)

    for version, channel_ids in todo.work:
        announcement = announcements[version]
        for channel_id in channel_ids:
            record = state.notifications.setdefault(version, {}).get(channel_id) or {}
            attempts = int(record.get("attempts", 0)) + 1
            error: str | None = None
            try:
                factories[channel_id]().send(announcement)
            except PipelineError as exc:
                error = redact(str(exc), secrets)
            except Exception as exc:  # a bug in one channel must not stop the others
                # Recorded and reported like any failure; no traceback is logged, as it could
                # show a webhook URL that redaction has not seen.
                error = redact(str(NotifyError(
                    f"{channel_id}: unexpected {type(exc).__name__}: {exc}", stage="notify",
                    record=version, hint="report this as a pipeline bug")), secrets)
            status: ChannelStatus = "failed" if error else "sent"
            state.notifications[version][channel_id] = {
                "status": status, "attempts": attempts, "error": error, "at": _now()}
            state.save()
            result = ChannelResult(version, channel_id, status, attempts, error)
            report.results.append(result)
            # debug only: the CLI prints each result once, from the report
            log.debug("notify: %s %s: %s%s", version, channel_id, status,
                      f" ({error})" if error else "")
    return report
