"""The Atom feed (RFC 4287): one entry per published dataset version, newest first.

Why Atom: any feed reader, Zenodo-watching researcher or script can follow the dataset without an
account or a webhook endpoint, and Atom (unlike RSS 2.0) requires stable ids and time-zoned
timestamps, which is what makes an entry appear once.

The feed is *rendered from the state* every time (the announceable versions, capped at
:data:`MAX_ENTRIES`), never appended to, so re-announcing a version can not duplicate its entry,
and a file lost or edited by hand is repaired by the next run. Rendering is pure and deterministic
(no clock): the same versions give the same bytes, so the committed feed only changes in git when
a version is added. The file is written atomically.

Identifiers (RFC 4287 §4.2.6 asks for ones that never change):

* feed ``id``: ``urn:uuid:`` of the dataset name (uuid5), independent of where the feed is served;
* entry ``id``: ``urn:uuid:`` of dataset name + version (uuid5), known before any DOI exists and
  the same whichever destinations are enabled. The DOI, Zenodo and Kaggle links are entry links.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.errors import NotifyError
from pipeline.fsutil import atomic_write_text
from pipeline.manifest import Creator
from pipeline.notify.announcement import Announcement, stable_id

ATOM_NS = "http://www.w3.org/2005/Atom"
MAX_ENTRIES = 50
NOTES_LIMIT = 8000  # characters of the changelog in an entry; the full one is in the version


def entry_id(dataset: str, version: str) -> str:
    return f"urn:uuid:{stable_id(dataset, 'version', version)}"


def feed_id(dataset: str) -> str:
    return f"urn:uuid:{stable_id(dataset, 'feed')}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def _notes(text: str) -> str:
    """The changelog entry, cut at a line boundary when it is long (thousands of records)."""
    text = text.strip()
    if len(text) <= NOTES_LIMIT:
        return text
    cut = text.rfind("\n", 0, NOTES_LIMIT)
    return text[:cut if cut > 0 else NOTES_LIMIT] + \
        "\n\n… (cut here; the full CHANGELOG.md is part of the published version)"


def _entry(feed: ET.Element, a: Announcement) -> None:
    entry = _sub(feed, "entry")
    _sub(entry, "id", entry_id(a.dataset, a.version))
    _sub(entry, "title", f"{a.title} {a.version}", type="text")
    _sub(entry, "published", a.created)
    _sub(entry, "updated", a.updated)
    urls = a.urls
    if a.landing_url:
        _sub(entry, "link", rel="alternate", type="text/html", href=a.landing_url)
    labels = {"doi": f"DOI {a.doi}", "zenodo": "Zenodo record",
              "kaggle": f"Kaggle dataset (version {a.kaggle_version})"
              if a.kaggle_version else "Kaggle dataset"}
    for key, label in labels.items():
        if key in urls and urls[key] != a.landing_url:
            _sub(entry, "link", rel="related", type="text/html", href=urls[key], title=label)
    _sub(entry, "summary", a.summary(), type="text")
    lines = [a.summary(), ""]
    lines += [f"{key}: {url}" for key, url in urls.items() if key != "feed"]
    if a.notes:
        lines += ["", _notes(a.notes)]
    _sub(entry, "content", "\n".join(lines), type="text")


def render_feed(
    announcements: Sequence[Announcement],
    *,
    title: str,
    dataset: str,
    creators: Sequence[Creator],
    subtitle: str | None = None,
    rights: str | None = None,
    feed_url: str | None = None,
) -> str:
    """The Atom document for ``announcements`` (any order; newest first in the feed).

    One entry per version: a version given twice yields one entry (the last given wins).
    """
    by_version = {a.version: a for a in announcements}
    entries = sorted(by_version.values(), key=lambda a: (a.updated, a.created, a.version),
                     reverse=True)[:MAX_ENTRIES]
    feed = ET.Element("feed", xmlns=ATOM_NS)
    _sub(feed, "id", feed_id(dataset))
    _sub(feed, "title", title, type="text")
    if subtitle:
        _sub(feed, "subtitle", subtitle, type="text")
    # RFC 4287 §4.2.15: the most recent instant the feed changed; with no entry, the epoch.
    _sub(feed, "updated", max((a.updated for a in entries), default="1970-01-01T00:00:00Z"))
    for creator in creators:
        author = _sub(feed, "author")
        _sub(author, "name", creator.name)
        if creator.orcid:
            _sub(author, "uri", f"https://orcid.org/{creator.orcid}")
    if feed_url:
        _sub(feed, "link", rel="self", type="application/atom+xml", href=feed_url)
    newest = entries[0] if entries else None
    home = newest and (newest.urls.get("concept_doi") or newest.kaggle_url)
    if home:
        _sub(feed, "link", rel="alternate", type="text/html", href=home)
    _sub(feed, "generator", "code-images-pipeline", version=__version__)
    if rights:
        _sub(feed, "rights", rights, type="text")
    for announcement in entries:
        _entry(feed, announcement)
    ET.indent(feed, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="unicode") \
        + "\n"


class FeedNotifier:
    """Writes the feed file; ``send`` renders every announceable version, not just the new one."""

    channel = "feed"

    def __init__(self, path: Path, announcements: Sequence[Announcement], *, title: str,
                 dataset: str, creators: Sequence[Creator], subtitle: str | None = None,
                 rights: str | None = None, feed_url: str | None = None) -> None:
        self.path = Path(path)
        self.announcements = list(announcements)
        self._options: dict[str, Any] = dict(title=title, dataset=dataset, creators=creators,
                             subtitle=subtitle, rights=rights, feed_url=feed_url)

    def send(self, announcement: Announcement) -> None:
        text = render_feed([*self.announcements, announcement], **self._options)
        ET.fromstring(text.encode("utf-8"))  # verify before replacing (STYLE guideline 3)
        try:
            atomic_write_text(self.path, text)
        except OSError as exc:
            raise NotifyError(f"cannot write the Atom feed {self.path}: {exc.strerror}",
                              stage="notify", record=announcement.version,
                              hint="check notifications.feed.path in the manifest and that "
                              "its folder is writable; retried on the next run") from exc
