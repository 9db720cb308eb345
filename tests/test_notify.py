"""Notifications: the pure decisions, then every channel over real sockets against the sandbox.

The sandbox here runs only its ``hooks`` part (the receivers), which is all notify talks to; the
receivers check signatures, CloudEvents and GitHub's rules independently of the sending code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import pytest
import requests
import standardwebhooks

import pipeline.sandbox as sandbox_pkg
from pipeline import manifest as manifest_mod
from pipeline.errors import ManifestError
from pipeline.notify import (
    MAX_ATTEMPTS,
    Announcement,
    announceable,
    enabled_destinations,
    notify,
    plan,
)
from pipeline.notify.announcement import rfc3339
from pipeline.notify.dispatch import MAX_PAYLOAD_KEYS
from pipeline.notify.feed import entry_id, render_feed
from pipeline.notify.slack import message
from pipeline.notify.webhook import (
    EVENT_TYPE,
    cloud_event,
    encode,
    github_signature,
    standard_headers,
)
from pipeline.sandbox import GITHUB_TOKEN, WEBHOOK_SECRET, Sandbox
from pipeline.sandbox.hooks import verify_signature
from pipeline.state import State

ATOM = "{http://www.w3.org/2005/Atom}"
REPO = "org/downstream"


# -- builders -------------------------------------------------------------------------------
def version_entry(n: int, *, kaggle: bool = True, zenodo: bool = True) -> dict[str, Any]:
    """A published version as the version builder and publishers leave it in the state."""
    version = f"{n}.2026112{n}"
    published: dict[str, Any] = {}
    if zenodo:
        published["zenodo"] = {
            "doi": f"10.5072/zenodo.12{n}", "record_id": f"12{n}",
            "url": f"https://sandbox.zenodo.org/records/12{n}",
            "concept_doi": "10.5072/zenodo.100", "at": f"2026-11-2{n}T06:1{n}:00+00:00"}
    if kaggle:
        published["kaggle"] = {"url": "https://www.kaggle.com/datasets/someone/code-images",
                               "version_number": n, "at": f"2026-11-2{n}T06:2{n}:00Z"}
    return {
        "version": version, "created": f"2026-11-2{n}T06:00:00Z",
        "notes": f"## {version}\n\n### Added\n- record 10{n} <a&b> | pipes\n",
        "counts": {"records": 100 * n, "images": 2500 * n, "added": 10, "updated": n,
                   "removed": 0},
        "files": {"index.json": "sha256:" + "ab" * 32},
        "published": published,
    }


def make_manifest(tmp_path: Path, url: str = "http://127.0.0.1:9", *, webhooks: int = 0,
                  slack: bool = False, dispatch: list[dict[str, Any]] | None = None,
                  kaggle: bool = True, webhook_signature: str | None = None
                  ) -> manifest_mod.Manifest:
    scheme = {"signature": webhook_signature} if webhook_signature else {}
    data = {
        "dataset": {"title": "Code images", "description": "Zenodo software as code images",
                    "creators": [{"name": "Doe, Jane", "orcid": "0000-0002-1825-0097"}]},
        "destinations": {"zenodo": {"url": url},
                         "kaggle": {"dataset": "someone/code-images", "enabled": kaggle}},
        "notifications": {
            "feed": {"path": "site/feed.atom", "url": "https://example.org/feed.atom"},
            "webhooks": [{"url_env": f"HOOK{i}_URL", "secret_env": f"HOOK{i}_SECRET",
                          **scheme} for i in range(webhooks)],
            "slack": {"url_env": "SLACK_URL"} if slack else None,
            "github_dispatch": [{"repo": REPO, "api_url": url, **d} for d in dispatch or []],
        },
        "state": {"path": "state/state.json"},
    }
    path = tmp_path / "data_manifest.yaml"
    return manifest_mod.from_dict(manifest_mod.validate(data, path=str(path)), path=path)


def make_state(tmp_path: Path, *entries: dict[str, Any]) -> State:
    state = State(path=tmp_path / "state" / "state.json", versions=list(entries))
    state.save()
    return state


def environ_for(url: str, *, webhooks: int = 0) -> dict[str, str]:
    env = {"SLACK_URL": f"{url}/slack/team", "DISPATCH_TOKEN": GITHUB_TOKEN}
    for i in range(webhooks):
        env[f"HOOK{i}_URL"] = f"{url}/hooks/ci{i}"
        env[f"HOOK{i}_SECRET"] = WEBHOOK_SECRET
    return env


@pytest.fixture(scope="module")
def receivers() -> Iterator[Sandbox]:
    """A sandbox serving only the notification receivers, on a free port (one per module:
    stopping a server takes half a second)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sandbox_pkg, "PARTS", tuple(p for p in sandbox_pkg.PARTS if p[0] == "hooks"))
        sandbox = Sandbox(dispatch_repos={REPO})
    with sandbox:
        yield sandbox


@pytest.fixture
def box(receivers: Sandbox) -> Sandbox:
    """The receivers with no deliveries and no injected failures."""
    receivers.hooks.clear()
    return receivers


@pytest.fixture
def sleeps() -> list[float]:
    return []


# -- pure decisions -------------------------------------------------------------------------
def test_announceable_needs_every_enabled_destination(tmp_path: Path) -> None:
    enabled = enabled_destinations(make_manifest(tmp_path))
    assert enabled == ["zenodo", "kaggle"]
    assert announceable(version_entry(1), enabled)
    assert not announceable(version_entry(1, kaggle=False), enabled)
    assert announceable(version_entry(1, kaggle=False),
                        enabled_destinations(make_manifest(tmp_path, kaggle=False)))


def test_plan_newest_version_and_failed_retries_only() -> None:
    v1, v2, v3 = version_entry(1), version_entry(2), version_entry(3, kaggle=False)
    notes = {v1["version"]: {"feed": {"status": "sent", "attempts": 1},
                             "webhook:A": {"status": "failed", "attempts": 2}}}
    got = plan([v1, v2, v3], notes, ["feed", "webhook:A", "slack"],
               enabled=["zenodo", "kaggle"])
    # v1: only the failed channel is retried (slack, added later, is not sent for history);
    # v2: the newest announceable version gets every channel; v3 waits for Kaggle.
    assert got.work == [(v1["version"], ["webhook:A"]),
                        (v2["version"], ["feed", "webhook:A", "slack"])]
    assert got.waiting == [v3["version"]]
    assert got.given_up == []

    notes[v1["version"]]["webhook:A"]["attempts"] = MAX_ATTEMPTS
    notes[v2["version"]] = {c: {"status": "sent", "attempts": 1}
                            for c in ("feed", "webhook:A", "slack")}
    got = plan([v1, v2], notes, ["feed", "webhook:A", "slack"], enabled=["zenodo", "kaggle"])
    assert got.work == [] and got.given_up == [(v1["version"], "webhook:A")]
    assert plan([v3], {}, ["feed"], enabled=["zenodo", "kaggle"]).work == []


def test_times_are_rfc3339_utc() -> None:
    assert rfc3339("2026-11-21T07:00:00+01:00") == "2026-11-21T06:00:00Z"
    assert rfc3339("2026-11-21T06:00:00") == "2026-11-21T06:00:00Z"
    assert rfc3339("2026-11-21T06:00:00.123Z") == "2026-11-21T06:00:00Z"
    assert rfc3339(None) is None


def test_announcement_ids_and_payload_are_stable() -> None:
    a = Announcement.from_version(version_entry(2), dataset="code-images", title="Code images")
    assert a.updated == "2026-11-22T06:22:00Z"  # the last destination's publish time
    assert a.urls["doi"] == "https://doi.org/10.5072/zenodo.122"
    assert len(a.payload()) <= MAX_PAYLOAD_KEYS
    event = cloud_event(a)
    assert event == cloud_event(Announcement.from_version(
        version_entry(2), dataset="code-images", title="Code images"))
    assert event["id"] != cloud_event(Announcement.from_version(
        version_entry(3), dataset="code-images", title="Code images"))["id"]
    assert event["source"] == "https://doi.org/10.5072/zenodo.100"
    assert event["type"] == EVENT_TYPE and event["time"] == a.updated


def test_slack_message_escapes_and_links() -> None:
    entry = version_entry(1)
    entry["published"]["zenodo"]["doi"] = "10.5072/<x>&y"
    body = message(Announcement.from_version(entry, dataset="d", title="Code images"))
    assert body["text"].startswith("Code images 1.20261121")
    assert body["blocks"][0]["type"] == "header"
    fields = json.dumps(body["blocks"])
    assert "&lt;x&gt;&amp;y" in fields and "<x>" not in fields


# -- the feed -------------------------------------------------------------------------------
def test_feed_is_valid_atom_with_one_entry_per_version(tmp_path: Path, sleeps: list) -> None:
    manifest = make_manifest(tmp_path)
    state = make_state(tmp_path, version_entry(1), version_entry(2))
    report = notify(manifest, state, sleep=sleeps.append, environ={})
    assert report.ok and [(r.version, r.channel) for r in report.results] == \
        [("2.20261122", "feed")]
    text = manifest.notifications.feed_path.read_text(encoding="utf-8")

    parsed = feedparser.parse(text)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert [e.title for e in parsed.entries] == ["Code images 2.20261122",
                                                 "Code images 1.20261121"]
    first = parsed.entries[0]
    assert first.id == entry_id("code-images", "2.20261122")
    assert first.link == "https://doi.org/10.5072/zenodo.122"
    assert "200 records, 5,000 images; 10 added, 2 updated, 0 removed" in first.summary
    assert "<a&b> | pipes" in first.content[0].value  # notes kept as text, escaped in XML

    # RFC 4287 required elements, checked on the XML itself.
    root = ET.fromstring(text)
    assert root.tag == f"{ATOM}feed"
    for tag in ("id", "title", "updated"):
        assert len(root.findall(f"{ATOM}{tag}")) == 1, tag
    assert root.find(f"{ATOM}author/{ATOM}name").text == "Doe, Jane"
    assert root.find(f"{ATOM}link[@rel='self']").get("href") == "https://example.org/feed.atom"
    assert root.find(f"{ATOM}updated").text == "2026-11-22T06:22:00Z"
    ids = []
    for entry in root.findall(f"{ATOM}entry"):
        for tag in ("id", "title", "updated"):
            assert len(entry.findall(f"{ATOM}{tag}")) == 1, tag
        assert len(entry.findall(f"{ATOM}link[@rel='alternate']")) == 1
        related = {link.get("title") for link in entry.findall(f"{ATOM}link[@rel='related']")}
        assert "Zenodo record" in related
        assert any(t.startswith("Kaggle dataset (version ") for t in related)
        ids.append(entry.find(f"{ATOM}id").text)
    assert len(set(ids)) == 2 and all(i.startswith("urn:uuid:") for i in ids)


def test_feed_rerender_is_idempotent_and_never_duplicates(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    path = manifest.notifications.feed_path
    state = make_state(tmp_path, version_entry(1))
    notify(manifest, state, environ={})
    once = path.read_bytes()
    # Forget that the feed was written: re-announcing renders the same bytes, one entry.
    state.notifications.clear()
    notify(manifest, state, environ={})
    assert path.read_bytes() == once

    state.versions.append(version_entry(2))
    notify(manifest, state, environ={})
    parsed = feedparser.parse(path.read_bytes())
    assert [e.id for e in parsed.entries] == [entry_id("code-images", "2.20261122"),
                                              entry_id("code-images", "1.20261121")]
    a = Announcement.from_version(version_entry(1), dataset="code-images", title="T")
    doc = render_feed([a, a], title="T", dataset="code-images", creators=())
    assert doc.count("<entry>") == 1


def test_unwritable_feed_is_a_reported_failure(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path)
    manifest.notifications.feed_path.parent.parent.mkdir(parents=True, exist_ok=True)
    manifest.notifications.feed_path.parent.write_text("a file where the folder should be")
    report = notify(manifest, make_state(tmp_path, version_entry(1)), environ={})
    [failed] = report.failed
    assert failed.channel == "feed" and "cannot write the Atom feed" in failed.error


def test_channel_failing_on_every_run_is_given_up(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path, webhooks=1)
    state = make_state(tmp_path, version_entry(1))
    state.notifications["1.20261121"] = {
        "feed": {"status": "sent", "attempts": 1},
        "webhook:HOOK0_URL": {"status": "failed", "attempts": 3, "error": "x"}}
    report = notify(manifest, state, environ={}, max_attempts=3)
    assert report.ok and report.results == []
    assert report.given_up == [("1.20261121", "webhook:HOOK0_URL")]
    assert "not retried any more" in report.lines()[-1]


# -- webhooks -------------------------------------------------------------------------------
def test_webhook_is_a_signed_cloudevent_the_receiver_verifies(tmp_path: Path, box: Sandbox,
                                                              sleeps: list) -> None:
    manifest = make_manifest(tmp_path, box.url, webhooks=1)
    state = make_state(tmp_path, version_entry(1))
    report = notify(manifest, state, sleep=sleeps.append,
                    environ=environ_for(box.url, webhooks=1))
    assert report.ok, report.lines()
    [delivery] = box.hooks.deliveries("webhook", "ci0")
    assert delivery.status == 202 and delivery.verified is True and delivery.problems == []
    assert delivery.headers["Content-Type"].startswith("application/cloudevents+json")
    # An independent check: the Standard Webhooks reference library, with the sandbox's secret.
    event = standardwebhooks.Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
    assert delivery.headers["webhook-id"] == event["id"]  # receivers deduplicate by it
    assert delivery.json == event
    assert event["specversion"] == "1.0" and event["type"] == EVENT_TYPE
    assert event["datacontenttype"] == "application/json"
    assert event["data"]["version"] == "1.20261121"
    assert event["data"]["doi"] == "10.5072/zenodo.121"
    assert event["data"]["urls"]["kaggle"].endswith("/someone/code-images")
    assert event["data"]["counts"]["records"] == 100
    assert sleeps == []


def test_a_replayed_or_stale_delivery_is_refused_and_a_retry_is_a_duplicate(
        tmp_path: Path, box: Sandbox, sleeps: list) -> None:
    manifest = make_manifest(tmp_path, box.url, webhooks=1)
    state = make_state(tmp_path, version_entry(1))
    assert notify(manifest, state, sleep=sleeps.append,
                  environ=environ_for(box.url, webhooks=1)).ok
    [sent] = box.hooks.deliveries("webhook", "ci0")
    names = ("Content-Type", "webhook-id", "webhook-timestamp", "webhook-signature")
    captured = {k: sent.headers[k] for k in names}

    # An attacker who captured the request sends it again, byte for byte.
    again = requests.post(f"{box.url}/hooks/ci0", data=sent.body, headers=captured, timeout=5)
    assert again.status_code == 401 and "replayed" in again.json()["error"]

    # The same request, after the 5-minute window (the receiver's clock moved on).
    box.hooks.clock = lambda: int(captured["webhook-timestamp"]) + 301
    try:
        late = requests.post(f"{box.url}/hooks/ci0", data=sent.body, timeout=5,
                             headers=captured)
    finally:
        box.hooks.clock = __import__("time").time
    assert late.status_code == 401 and "replay window" in late.json()["error"]

    # A genuine retry (the next run after a crash): same id and body, freshly signed.
    fresh = standard_headers(WEBHOOK_SECRET, captured["webhook-id"],
                             int(captured["webhook-timestamp"]) + 1, sent.body)
    retry = requests.post(f"{box.url}/hooks/ci0", data=sent.body, timeout=5,
                          headers={"Content-Type": captured["Content-Type"], **fresh})
    assert retry.status_code == 202 and retry.json()["duplicate"] is True


def test_github_signature_option(tmp_path: Path, box: Sandbox, sleeps: list) -> None:
    manifest = make_manifest(tmp_path, box.url, webhooks=1, webhook_signature="github")
    state = make_state(tmp_path, version_entry(1))
    assert notify(manifest, state, sleep=sleeps.append,
                  environ=environ_for(box.url, webhooks=1)).ok
    [delivery] = box.hooks.deliveries("webhook", "ci0")
    assert delivery.status == 202 and "webhook-signature" not in delivery.headers
    digest = hmac.new(WEBHOOK_SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Hub-Signature-256"] == f"sha256={digest}"


def test_webhook_retries_5xx_within_a_run(tmp_path: Path, box: Sandbox, sleeps: list) -> None:
    box.hooks.fail_next("/hooks/ci0", count=2, status=503)
    manifest = make_manifest(tmp_path, box.url, webhooks=1)
    state = make_state(tmp_path, version_entry(1))
    report = notify(manifest, state, sleep=sleeps.append,
                    environ=environ_for(box.url, webhooks=1))
    assert report.ok
    statuses = [d.status for d in box.hooks.deliveries("webhook")]
    assert statuses == [503, 503, 202]
    assert len(sleeps) == 2
    bodies = {d.body for d in box.hooks.deliveries("webhook")[2:]}
    assert len(bodies) == 1  # the retried body is the one that was signed


def test_wrong_webhook_secret_is_refused_and_reported(tmp_path: Path, box: Sandbox) -> None:
    manifest = make_manifest(tmp_path, box.url, webhooks=1)
    state = make_state(tmp_path, version_entry(1))
    env = environ_for(box.url, webhooks=1) | {"HOOK0_SECRET": "not-the-receivers-secret"}
    report = notify(manifest, state, sleep=lambda s: None, environ=env)
    assert not report.ok
    [failed] = report.failed
    assert failed.channel == "webhook:HOOK0_URL"
    assert "401" in failed.error and "secret" in failed.error
    assert "/hooks/ci0" not in failed.error and box.url not in failed.error
    [delivery] = box.hooks.deliveries("webhook")
    assert delivery.verified is False


def test_unreachable_webhook_fails_without_leaking_its_url(tmp_path: Path,
                                                           sleeps: list) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T000/B000/very-secret-token"
    manifest = make_manifest(tmp_path, webhooks=1)
    state = make_state(tmp_path, version_entry(1))
    report = notify(manifest, state, sleep=sleeps.append,
                    environ={"HOOK0_URL": url, "HOOK0_SECRET": "s3cret-value"})
    [failed] = report.failed
    assert "unreachable" in failed.error
    assert "very-secret-token" not in failed.error
    assert len(sleeps) == 3  # bounded: 4 attempts
    assert "very-secret-token" not in state.path.read_text()


# -- once per version, failures retried next run -------------------------------------------
def test_replayed_notify_sends_nothing_twice(tmp_path: Path, box: Sandbox) -> None:
    manifest = make_manifest(tmp_path, box.url, webhooks=2, slack=True, dispatch=[{}])
    state = make_state(tmp_path, version_entry(1))
    env = environ_for(box.url, webhooks=2)
    first = notify(manifest, state, sleep=lambda s: None, environ=env)
    assert first.ok, first.lines()
    channels = ["feed", "webhook:HOOK0_URL", "webhook:HOOK1_URL", "slack",
                f"dispatch:{REPO}:dataset-updated"]
    assert [r.channel for r in first.sent] == channels
    received = len(box.hooks.deliveries())
    assert received == 4

    again = notify(manifest, State.load(state.path), sleep=lambda s: None, environ=env)
    assert again.results == [] and again.ok
    assert again.lines() == ["notify: nothing to announce"]
    assert len(box.hooks.deliveries()) == received

    saved = json.loads(state.path.read_text())["notifications"]["1.20261121"]
    assert set(saved) == set(channels)
    for record in saved.values():
        assert record["status"] == "sent" and record["attempts"] == 1
        assert record["error"] is None and record["at"].endswith("Z")


def test_failing_channel_is_reported_then_retried_next_run(tmp_path: Path,
                                                           box: Sandbox) -> None:
    box.hooks.fail_next("/slack/team", count=4)  # every attempt of the first run
    manifest = make_manifest(tmp_path, box.url, webhooks=1, slack=True, dispatch=[{}])
    state = make_state(tmp_path, version_entry(1))
    env = environ_for(box.url, webhooks=1)

    first = notify(manifest, state, sleep=lambda s: None, environ=env)
    assert not first.ok
    assert [(r.channel, r.status) for r in first.results] == [
        ("feed", "sent"), ("webhook:HOOK0_URL", "sent"), ("slack", "failed"),
        (f"dispatch:{REPO}:dataset-updated", "sent")]  # the others still went out
    assert "500" in first.failed[0].error
    assert first.outputs()["failed_channels"] == "1.20261121 slack"
    on_disk = State.load(state.path).notifications["1.20261121"]["slack"]
    assert on_disk["status"] == "failed" and on_disk["attempts"] == 1
    assert State.load(state.path).versions == state.versions  # a publish is never undone

    second = notify(manifest, State.load(state.path), sleep=lambda s: None, environ=env)
    assert second.ok
    assert [(r.channel, r.status, r.attempts) for r in second.results] == \
        [("slack", "sent", 2)]
    assert [d.status for d in box.hooks.deliveries("slack")] == [500] * 4 + [200]
    assert len(box.hooks.deliveries("webhook")) == 1
    assert len(box.hooks.deliveries("dispatch")) == 1


def test_missing_environment_variable_names_it(tmp_path: Path, box: Sandbox) -> None:
    manifest = make_manifest(tmp_path, box.url, webhooks=1, slack=True)
    state = make_state(tmp_path, version_entry(1))
    env = environ_for(box.url, webhooks=1)
    del env["HOOK0_SECRET"]
    env["SLACK_URL"] = ""  # what ${{ secrets.X }} gives for a secret that does not exist
    report = notify(manifest, state, environ=env)
    errors = {r.channel: r.error for r in report.failed}
    assert set(errors) == {"webhook:HOOK0_URL", "slack"}
    assert "HOOK0_SECRET is not set" in errors["webhook:HOOK0_URL"]
    assert "notifications.webhooks[0].secret_env" in errors["webhook:HOOK0_URL"]
    assert "SLACK_URL is not set" in errors["slack"]
    assert [r.channel for r in report.sent] == ["feed"]
    assert box.hooks.deliveries() == []


def test_nothing_is_announced_before_every_destination_published(tmp_path: Path,
                                                                 box: Sandbox) -> None:
    manifest = make_manifest(tmp_path, box.url, webhooks=1)
    state = make_state(tmp_path, version_entry(1, kaggle=False))
    report = notify(manifest, state, environ=environ_for(box.url, webhooks=1))
    assert report.ok and report.results == [] and report.waiting == ["1.20261121"]
    assert not manifest.notifications.feed_path.exists()
    assert box.hooks.deliveries() == []


def test_secrets_stay_out_of_state_and_report(tmp_path: Path, box: Sandbox) -> None:
    manifest = make_manifest(tmp_path, box.url, webhooks=1, slack=True, dispatch=[{}])
    state = make_state(tmp_path, version_entry(1))
    env = environ_for(box.url, webhooks=1) | {
        "HOOK0_SECRET": "hook-secret-123", "DISPATCH_TOKEN": "ghp_wrongtoken123",
        "SLACK_URL": f"{box.url}/slack/T0-B0-slacksecret"}
    box.hooks.fail_next("/slack/T0-B0-slacksecret", count=4)
    report = notify(manifest, state, sleep=lambda s: None, environ=env)
    assert len(report.failed) == 3
    written = state.path.read_text() + json.dumps(report.rows()) + "\n".join(report.lines())
    for secret in ("hook-secret-123", "ghp_wrongtoken123", "slacksecret"):
        assert secret not in written


# -- repository_dispatch --------------------------------------------------------------------
def test_dispatch_sends_event_and_payload(tmp_path: Path, box: Sandbox) -> None:
    manifest = make_manifest(tmp_path, box.url, dispatch=[{"event_type": "code-images"}])
    state = make_state(tmp_path, version_entry(2))
    report = notify(manifest, state, environ=environ_for(box.url))
    assert report.ok, report.lines()
    [delivery] = box.hooks.deliveries("dispatch", REPO)
    assert delivery.status == 204
    assert delivery.headers["Authorization"] == "***"
    assert delivery.headers["Accept"] == "application/vnd.github+json"
    assert delivery.headers["X-GitHub-Api-Version"] == "2022-11-28"
    body = delivery.json
    assert body["event_type"] == "code-images"
    payload = body["client_payload"]
    assert payload["version"] == "2.20261122" and payload["doi"] == "10.5072/zenodo.122"
    assert payload["urls"]["zenodo"] == "https://sandbox.zenodo.org/records/122"
    assert payload["counts"] == version_entry(2)["counts"]


def test_dispatch_bad_token_gives_a_clear_error(tmp_path: Path, box: Sandbox) -> None:
    manifest = make_manifest(tmp_path, box.url, dispatch=[{}])
    state = make_state(tmp_path, version_entry(1))
    env = environ_for(box.url) | {"DISPATCH_TOKEN": "expired-token"}
    [failed] = notify(manifest, state, environ=env).failed
    assert "401 Bad credentials" in failed.error
    assert "$DISPATCH_TOKEN" in failed.error and "expired-token" not in failed.error


def test_dispatch_validation_and_unknown_repo_errors(tmp_path: Path, box: Sandbox) -> None:
    # GitHub's 100-character limit on event_type is caught before anything is sent.
    with pytest.raises(ManifestError) as info:
        make_manifest(tmp_path, box.url, dispatch=[{"event_type": "x" * 101}])
    assert "event_type: expected maxLength 100" in str(info.value)
    manifest = make_manifest(tmp_path, box.url, dispatch=[{"repo": "org/missing"}])
    state = make_state(tmp_path, version_entry(1))
    report = notify(manifest, state, environ=environ_for(box.url))
    errors = {r.channel: r.error for r in report.failed}
    missing = errors["dispatch:org/missing:dataset-updated"]
    assert "404" in missing and "org/missing does not exist" in missing


# -- the receivers themselves ---------------------------------------------------------------
def test_dispatch_receiver_speaks_github(box: Sandbox) -> None:
    url = f"{box.url}/repos/{REPO}/dispatches"
    auth = {"Authorization": f"Bearer {GITHUB_TOKEN}"}
    r = requests.post(url, json={"event_type": "e"}, timeout=5)
    assert r.status_code == 401 and r.json()["message"] == "Bad credentials"
    assert "documentation_url" in r.json()
    r = requests.post(url, json={"client_payload": {}}, headers=auth, timeout=5)
    assert r.status_code == 422
    assert r.json()["message"] == 'Invalid request.\n\n"event_type" wasn\'t supplied.'
    r = requests.post(url, headers={"Authorization": f"token {GITHUB_TOKEN}"}, timeout=5,
                      json={"event_type": "e", "client_payload": {str(i): i for i in range(11)}})
    assert r.status_code == 422 and "No more than 10 properties" in r.json()["message"]
    r = requests.post(f"{box.url}/repos/org/other/dispatches", json={"event_type": "e"},
                      headers=auth, timeout=5)
    assert r.status_code == 404 and r.json()["message"] == "Not Found"
    r = requests.post(url, json={"event_type": "e", "client_payload": {}}, headers=auth,
                      timeout=5)
    assert r.status_code == 204 and r.content == b""


def test_slack_and_webhook_receivers(box: Sandbox) -> None:
    r = requests.post(f"{box.url}/slack/team", data=b"not json", timeout=5)
    assert (r.status_code, r.text) == (400, "invalid_payload")
    assert r.headers["Content-Type"].startswith("text/plain")
    r = requests.post(f"{box.url}/slack/team", json={"text": "hi"}, timeout=5)
    assert (r.status_code, r.text) == (200, "ok")

    body = encode({"specversion": "1.0", "id": "1", "source": "/x", "type": "t"})
    headers = {"Content-Type": "application/cloudevents+json"}
    signed = standard_headers(WEBHOOK_SECRET, "msg-1", int(__import__("time").time()), body)
    r = requests.post(f"{box.url}/hooks/a", data=body, timeout=5, headers=headers | signed)
    assert r.status_code == 202
    r = requests.post(f"{box.url}/hooks/a", data=body, headers=headers, timeout=5)
    assert r.status_code == 401
    r = requests.post(f"{box.url}/hooks/a", data=body + b" ", timeout=5,
                      headers=headers | {**signed, "webhook-id": "msg-2"})
    assert r.status_code == 401
    r = requests.post(f"{box.url}/hooks/a", data=body, timeout=5, headers=headers | {
        "X-Hub-Signature-256": github_signature(WEBHOOK_SECRET, body)})
    assert r.status_code == 202
    assert [d.verified for d in box.hooks.deliveries("webhook", "a")] == [True, False, False,
                                                                          True]
    assert verify_signature(WEBHOOK_SECRET, body, github_signature(WEBHOOK_SECRET, body))
    assert not verify_signature(WEBHOOK_SECRET, body + b" ",
                                github_signature(WEBHOOK_SECRET, body))
    listed = requests.get(f"{box.url}/hooks", params={"kind": "slack"}, timeout=5).json()
    assert [d["status"] for d in listed] == [400, 200]
