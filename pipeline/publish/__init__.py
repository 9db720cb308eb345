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

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from pipeline.dataset import CATALOG, BuiltVersion, index_name
from pipeline.errors import PipelineError, redact
from pipeline.published import PublishedFiles, find_local
from pipeline.state import State
from pipeline.version import built_version

__all__ = ["BuiltVersion", "DestinationResult", "Journal", "PublishReport", "Publisher",
           "kaggle_names", "kaggle_view", "publish"]
# What a Kaggle version holds besides the chosen parts and their indexes (the card says where
# the full dataset is; SHA256SUMS and datapackage.json describe the Zenodo volume, not this).
KAGGLE_FIXED = (CATALOG, "README.md", "CHANGELOG.md", "dataset-metadata.json")


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


def kaggle_parts(built: BuiltVersion) -> list[str]:
    """The parts the version's catalog puts on Kaggle (chosen by the builder, within
    ``destinations.kaggle.max_bytes``)."""
    catalog = json.loads((built.folder / CATALOG).read_text(encoding="utf-8"))
    return list((catalog.get("kaggle") or {}).get("parts") or [])


def kaggle_names(built: BuiltVersion) -> list[str]:
    """Every file of the Kaggle version of ``built``: budgeted parts, their indexes, and
    :data:`KAGGLE_FIXED`."""
    return sorted([n for p in kaggle_parts(built) for n in (p, index_name(p))]
                  + list(KAGGLE_FIXED))


def kaggle_view(built: BuiltVersion, state: State, folder: Path, files: PublishedFiles
                ) -> BuiltVersion:
    """The Kaggle version of ``built``: a flat folder of hard links (or fetched copies) holding
    the budgeted parts, their indexes and the small descriptive files.

    Parts this run did not write come from Zenodo, one at a time and verified: the download is
    bounded by ``destinations.kaggle.max_bytes`` (and is nothing when every chosen part is new).
    """
    names = kaggle_names(built)
    listing: dict[str, tuple[int, str, str]] = {}
    for entry in state.versions:    # newest wins: every volume's current listing
        for n in entry.get("md5", {}):
            listing[n] = (int(entry["sizes"][n]), entry["md5"][n], entry["files"][n])
    listing.update({n: (built.sizes[n], built.md5[n], built.files[n]) for n in built.files})
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in names:
        md5 = listing[name][1]
        src = built.local(name) or files.fetch(name, md5)
        try:
            os.link(src, folder / name)
        except OSError:
            shutil.copy2(src, folder / name)
    return replace(built, folder=folder, written=frozenset(names),
                   files={n: listing[n][2] for n in names}, md5={n: listing[n][1] for n in names},
                   sizes={n: listing[n][0] for n in names})


def publish(manifest: Any, state: State, workdir: str | os.PathLike[str], *,
            target: Literal["all", "zenodo", "kaggle"] = "all", dry_run: bool = False,
            sleep: Callable[[float], None] = time.sleep,
            publishers: Mapping[str, Publisher] | None = None,
            files: PublishedFiles | None = None) -> PublishReport:
    """Publish the newest built version to every enabled destination not holding it yet.

    Each destination is independent: a failure is reported (and retried by the next run from
    its journal) and never stops the other. Results go to ``state.versions[-1]["published"]``
    and ``state.destinations[name]`` (saved). With ``dry_run`` the publishers' ``describe``
    lines are returned and nothing is changed. ``publishers`` replaces the ones built from the
    manifest (tests wrap them to simulate crashes). Older unpublished versions are skipped: the
    newest one holds all their records. ``files`` fetches the Kaggle parts not on disk (the
    orchestration passes one that counts the bytes).
    """
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
        if name == "kaggle":
            files = files or PublishedFiles(manifest.destinations.zenodo, state,
                                            workdir / "tmp" / "published", stage="publish",
                                            sleep=sleep, local=find_local(workdir))
            report.results.append(_publish_kaggle(publisher, built, state, entry, workdir,
                                                  files))
            continue
        report.results.append(_publish_one(publisher, built, state, entry))
    return report


def _publish_kaggle(publisher: Publisher, built: BuiltVersion, state: State,
                    entry: dict[str, Any], workdir: Path, files: PublishedFiles
                    ) -> DestinationResult:
    """Kaggle gets a view of the version (see :func:`kaggle_view`); fetched files and the view
    are removed afterwards, so the disk it needs is bounded by the Kaggle budget."""
    view_dir = workdir / "tmp" / f"kaggle-view-{built.version}"
    try:
        view = kaggle_view(built, state, view_dir, files)
    except PipelineError as exc:
        log.error("kaggle: %s", exc)
        return DestinationResult("kaggle", "failed", error=str(exc))
    try:
        return _publish_one(publisher, view, state, entry)
    finally:
        shutil.rmtree(view_dir, ignore_errors=True)
        shutil.rmtree(files.folder, ignore_errors=True)


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
    # The version entry keeps the scalar ids of this publication (DOI, URL, version number);
    # the destination's maps (Kaggle's version map, its parts) stay in ``destinations`` only,
    # or every entry would carry a copy that grows with the number of versions.
    entry.setdefault("published", {})[name] = {k: v for k, v in result.items()
                                               if not isinstance(v, dict | list)}
    known.update(result)
    state.save()
    return DestinationResult(name, "published", dict(result))
