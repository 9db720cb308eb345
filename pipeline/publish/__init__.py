"""Publishing a built dataset version to its destinations (SPEC section 8), one module each.

    zenodo   the Zenodo deposit API: create / newversion / reuse draft, upload, verify, publish
    kaggle   the real ``kaggle`` client: create (private) or new version, check files, poll status

Both implement :class:`Publisher` and are chosen by name from the manifest. The contract that
makes publishing crash-safe and idempotent is the :class:`Journal`: before and after every step
that changes something remote, the publisher records the step (and the ids it learnt) in the
state file, atomically. A rerun reads the journal and *finishes* the same version: it finds the
open draft or the version already published (by its version string and checksums) instead of
creating another. The journal entry is cleared only once the destination holds exactly the files
``version`` built, verified by reading them back.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pipeline.errors import PipelineError, redact
from pipeline.state import State


@dataclass(frozen=True)
class BuiltVersion:
    """A dataset version as ``version`` wrote it: an immutable, flat folder of files.

    Flat, because Kaggle's client skips sub-folders and Zenodo records have no folders.
    """

    version: str                 # unique, ordered, e.g. "3.20261121"
    folder: Path                 # <workdir>/versions/<version>/
    files: dict[str, str]        # name -> "sha256:<hex>" for every file in the folder
    md5: dict[str, str]          # name -> "md5:<hex>" (what Zenodo reports back)
    sizes: dict[str, int]        # name -> bytes
    notes: str                   # this version's CHANGELOG entry (Markdown)
    counts: dict[str, int] = field(default_factory=dict)  # records, images, added, ...


class Journal:
    """The publishing journal of one destination, persisted in the state on every step."""

    def __init__(self, state: State, destination: str) -> None:
        self.state = state
        self.destination = destination

    @property
    def entry(self) -> dict[str, Any]:
        """The journal entry in progress (``{}`` when nothing is in progress)."""
        return self.state.journal.get(self.destination, {})

    def begin(self, version: str) -> dict[str, Any]:
        """Start (or resume) publishing ``version``; returns the entry to resume from."""
        entry = self.entry
        if entry.get("version") != version:
            entry = {"version": version, "steps": []}
            self.state.journal[self.destination] = entry
            self.state.save()
        return entry

    def step(self, name: str, **data: Any) -> None:
        """Record that step ``name`` happened (with the ids it produced) and save the state now."""
        entry = self.state.journal.setdefault(self.destination, {"steps": []})
        entry.setdefault("steps", []).append(name)
        entry.update(data)
        self.state.save()

    def done(self, name: str) -> bool:
        return name in self.entry.get("steps", [])

    def finish(self) -> None:
        """Clear the entry: the destination holds the verified version."""
        self.state.journal.pop(self.destination, None)
        self.state.save()


class Publisher(Protocol):
    """A destination for dataset versions."""

    name: str

    def describe(self, built: BuiltVersion, known: dict[str, Any]) -> list[str]:
        """What :meth:`publish` would upload, delete and publish, and where (``--dry-run``)."""
        ...

    def publish(self, built: BuiltVersion, known: dict[str, Any], journal: Journal
                ) -> dict[str, Any]:
        """Publish ``built``; return the destination's updated ids (``known`` is the state's
        ``destinations[name]`` dict). Must be resumable from ``journal`` at any step."""
        ...


# -- orchestration -------------------------------------------------------------------------------

DESTINATIONS = ("zenodo", "kaggle")
Outcome = Literal["published", "draft", "up-to-date", "dry-run", "failed", "disabled"]
log = logging.getLogger("pipeline.publish")


@dataclass
class DestinationResult:
    """What one destination did with the version (``detail`` is what the publisher returned)."""

    name: str
    outcome: Outcome
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    lines: list[str] = field(default_factory=list)


@dataclass
class PublishReport:
    """The result of :func:`publish`, one entry per destination asked for."""

    version: str | None
    dry_run: bool = False
    results: list[DestinationResult] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.outcome == "failed" for r in self.results)

    def text(self) -> str:
        if self.version is None:
            return "publish: no dataset version has been built yet; nothing to publish"
        lines = [f"publish: version {self.version}" + (" (dry run)" if self.dry_run else "")]
        for r in self.results:
            where = r.detail.get("doi") or r.detail.get("url") or ""
            if r.detail.get("version_number"):
                where += f" (Kaggle version {r.detail['version_number']})"
            lines.append(f"  {r.name}: {r.outcome}" + (f" {where}" if where else "")
                         + (f": {r.error}" if r.error else ""))
            lines += [f"    {line}" for line in r.lines]
        return "\n".join(lines)

    def outputs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"published_version": self.version or "",
                               "publish_failed": str(self.failed).lower()}
        for r in self.results:
            out[f"{r.name}_status"] = r.outcome
            for key in ("doi", "url"):
                if r.detail.get(key):
                    out[f"{r.name}_{key}"] = r.detail[key]
        return out

    def markdown(self) -> str:
        if self.version is None:
            return "## publish\n\nNothing to publish.\n"
        rows = "".join(f"| {r.name} | {r.outcome} | {r.detail.get('doi') or ''} | "
                       f"{r.detail.get('url') or ''} | {(r.error or '').replace('|', '/')} |\n"
                       for r in self.results)
        return (f"## publish {self.version}{' (dry run)' if self.dry_run else ''}\n\n"
                "| destination | outcome | DOI | URL | error |\n|---|---|---|---|---|\n" + rows)


def make_publisher(name: str, dest: Any, workdir: Path, *, sleep: Callable[[float], None]
                   ) -> Publisher:
    """The publisher for ``name``; imported lazily so Zenodo-only use never imports kaggle."""
    if name == "zenodo":
        from pipeline.publish.zenodo import ZenodoPublisher
        return ZenodoPublisher(dest, sleep=sleep)
    from pipeline.publish.kaggle import KagglePublisher
    return KagglePublisher(dest, tmp_root=workdir / "tmp", sleep=sleep)


def publish(manifest: Any, state: State, workdir: str | os.PathLike[str], *,
            target: Literal["all", "zenodo", "kaggle"] = "all", dry_run: bool = False,
            sleep: Callable[[float], None] = time.sleep,
            publishers: Mapping[str, Publisher] | None = None) -> PublishReport:
    """Publish the newest built version to every enabled destination not holding it yet.

    Each destination is independent: a failure is reported (and retried by the next run from
    its journal) and never stops the other. Results go to ``state.versions[-1]["published"]``
    and ``state.destinations[name]`` (saved). With ``dry_run`` the publishers' ``describe``
    lines are returned and nothing is changed. ``publishers`` replaces the ones built from the
    manifest (tests wrap them to simulate crashes). Older unpublished versions are skipped: the
    newest one holds all their records.
    """
    from pipeline.version import built_version

    workdir = Path(workdir)
    if not state.versions:
        return PublishReport(version=None, dry_run=dry_run)
    entry = state.versions[-1]
    report = PublishReport(version=entry["version"], dry_run=dry_run)
    built: BuiltVersion | None = None
    for name in DESTINATIONS:
        if target not in ("all", name):
            continue
        dest = getattr(manifest.destinations, name)
        if dest is None or not dest.enabled:
            report.results.append(DestinationResult(name, "disabled"))
            continue
        if name in entry.get("published", {}):
            report.results.append(DestinationResult(name, "up-to-date",
                                                    dict(entry["published"][name])))
            continue
        built = built or built_version(entry, workdir)
        publisher = (publishers or {}).get(name) or make_publisher(name, dest, workdir,
                                                                   sleep=sleep)
        if dry_run:
            known = dict(state.destinations.get(name, {}))
            report.results.append(DestinationResult(name, "dry-run",
                                                    lines=publisher.describe(built, known)))
            continue
        report.results.append(_publish_one(publisher, built, state, entry))
    return report


def _publish_one(publisher: Publisher, built: BuiltVersion, state: State,
                 entry: dict[str, Any]) -> DestinationResult:
    name = publisher.name
    known = state.destinations.setdefault(name, {})
    try:
        result = publisher.publish(built, known, Journal(state, name))
    except PipelineError as exc:
        log.debug("%s: %s", name, exc)  # printed once, by the CLI, from the report
        state.save()
        return DestinationResult(name, "failed", error=str(exc))
    except Exception as exc:  # a bug in one destination must not stop the other
        log.exception("%s: unexpected error while publishing %s", name, built.version)
        state.save()
        return DestinationResult(name, "failed", error=redact(
            f"[publish] {name}: unexpected {type(exc).__name__}: {exc}. This is a bug; "
            "please report it with this message"))
    if result.get("status") == "draft":
        state.save()
        return DestinationResult(name, "draft", dict(result))
    entry.setdefault("published", {})[name] = dict(result)
    known.update(result)
    state.save()
    return DestinationResult(name, "published", dict(result))
