"""The one place the stages are chained: detect -> process -> version -> publish -> notify.

Why one module: the CLI's single commands, ``run``, the demo and the simulated-year benchmark
must do exactly the same thing at each stage (fold outcomes into the state first, give the
version builder and the Kaggle publisher a way to fetch published files by need, count what was
downloaded). Each stage is a function returning a :class:`StageResult` (what to print, the step
outputs, tables and notes for a GitHub job summary); the CLI and the demo show them with
:func:`pipeline.actions.show`. Nothing here parses arguments and nothing here prints.

Imports go one way: ``cli`` and ``demo`` import this module, this module imports the stages, and
no stage imports this module.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.http import Sleep
from pipeline.manifest import Manifest
from pipeline.published import PublishedFiles, find_local
from pipeline.state import State, ingest_outcomes

STAGES = ("detect", "process", "version", "publish", "notify")


@dataclass
class RunStats:
    """What a cycle cost, for the simulated-year benchmark and the job summary."""

    search_requests: int = 0
    published_bytes_downloaded: int = 0
    published_files_downloaded: int = 0


@dataclass
class Context:
    """One run: the manifest, the work folder, an injectable sleep, and the costs so far."""

    manifest: Manifest
    workdir: Path
    sleep: Sleep = time.sleep
    stats: RunStats = field(default_factory=RunStats)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)

    def state(self) -> State:
        """The state with every finished record outcome folded in (and saved)."""
        state = State.load(self.manifest.state_path)
        ingest_outcomes(state, self.workdir)
        return state

    def published_files(self, state: State, stage: str) -> PublishedFiles:
        return PublishedFiles(self.manifest.destinations.zenodo, state,
                              self.workdir / "tmp" / f"published-{stage}", stage=stage,
                              sleep=self.sleep, local=find_local(self.workdir))

    def count(self, files: PublishedFiles) -> None:
        self.stats.published_bytes_downloaded += files.bytes_downloaded
        self.stats.published_files_downloaded += files.files_downloaded


@dataclass
class StageResult:
    """What a stage did: ``text`` for a terminal, the rest for a GitHub job summary."""

    name: str
    ok: bool = True
    text: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def version_outputs(state: State, version: str | None) -> dict[str, Any]:
    """The step outputs every version-related stage shares: ``version``, ``doi``,
    ``kaggle_url`` and ``new_records`` (added + updated records of that version)."""
    entry = next((v for v in state.versions if v["version"] == version), None)
    if entry is None:
        return {"version": "", "doi": "", "kaggle_url": "", "new_records": 0}
    published = entry.get("published", {})
    counts = entry.get("counts", {})
    return {"version": version, "doi": published.get("zenodo", {}).get("doi", ""),
            "kaggle_url": published.get("kaggle", {}).get("url", ""),
            "new_records": int(counts.get("added", 0)) + int(counts.get("updated", 0))}


def detect_stage(ctx: Context, *, out: Path | None = None, since: str | None = None,
                 until: str | None = None, record_ids: Sequence[str] = (),
                 max_records: int | None = None) -> StageResult:
    from pipeline.detect import detect
    from pipeline.zenodo import ZenodoClient

    state = ctx.state()
    out = out or ctx.workdir / "plan.json"
    client = ZenodoClient(ctx.manifest.source.zenodo)
    try:
        plan = detect(ctx.manifest, state, client, out=out, since=since, until=until,
                      record_ids=tuple(record_ids), max_records=max_records)
    finally:
        client.close()
    ctx.stats.search_requests += plan.search_requests
    counts = plan.counts()
    total = len(plan.entries)
    return StageResult(
        "detect",
        text=f"detect: {total} record(s) planned ({counts['new']} new, {counts['updated']} "
             f"updated, {counts['retry']} retry), {len(plan.skipped)} skipped, "
             f"{plan.search_requests} search request(s); window {plan.since} .. {plan.until}; "
             f"plan: {out}",
        outputs={"planned": total, "has_work": total > 0, "plan": str(out), **counts},
        tables={"Planned records": [{"record": e.id, "action": e.action, "reason": e.reason}
                                    for e in plan.entries]})


def process_stage(ctx: Context, *, plan: Path | None = None, shard: str | None = None,
                  jobs: int = 1) -> StageResult:
    from pipeline.process import parse_shard, process

    # Read-only: shards of a job array may share the workdir and the state file, so process
    # never writes the state; its outcome files are folded in by the next stage.
    state = State.load(ctx.manifest.state_path)
    report = process(ctx.manifest, state, ctx.workdir, plan_path=plan or
                     ctx.workdir / "plan.json", shard=parse_shard(shard), jobs=jobs)
    return StageResult("process", ok=not report.failed, text=report.text(),
                       outputs=report.outputs(), tables={"Failed records": report.rows()})


def version_stage(ctx: Context) -> StageResult:
    """Build the next version; part indexes it must rewrite and does not have on disk are
    fetched from Zenodo one at a time (and removed afterwards)."""
    from pipeline.version import build_version

    state = ctx.state()
    files = ctx.published_files(state, "version")
    try:
        built = build_version(ctx.manifest, state, ctx.workdir, source=files.fetch)
    finally:
        ctx.count(files)
        files.close()
        shutil.rmtree(files.folder, ignore_errors=True)
    if built is None:
        return StageResult("version", text="version: nothing changed since the last version; "
                           "no new version", outputs={"version": "", "new_version": False},
                           notes=["Nothing changed since the last version."])
    return StageResult("version", text=f"version: built {built.version} (volume {built.volume})"
                       f" in {built.folder} ({built.counts})",
                       outputs={**built.counts, "new_version": True,
                                **version_outputs(state, built.version)},
                       notes=[built.notes])


def publish_stage(ctx: Context, *, target: str = "all", dry_run: bool = False) -> StageResult:
    from pipeline.publish import DESTINATIONS, publish
    from pipeline.version import prune_published

    state = ctx.state()
    files = ctx.published_files(state, "publish")
    try:
        report = publish(ctx.manifest, state, ctx.workdir, target=target,  # type: ignore[arg-type]
                         dry_run=dry_run, sleep=ctx.sleep, files=files)
    finally:
        ctx.count(files)
        files.close()
        shutil.rmtree(files.folder, ignore_errors=True)
    if not dry_run and not report.failed:
        enabled = [n for n in DESTINATIONS if getattr(ctx.manifest.destinations, n) is not None
                   and getattr(ctx.manifest.destinations, n).enabled]
        prune_published(state, ctx.workdir, enabled)
    return StageResult("publish", ok=not report.failed, text=report.text(),
                       outputs={**report.outputs(), **version_outputs(state, report.version)},
                       notes=[report.markdown()])


def notify_stage(ctx: Context) -> StageResult:
    from pipeline.notify import notify

    state = ctx.state()
    report = notify(ctx.manifest, state)
    newest = report.versions[-1] if report.versions else None
    return StageResult("notify", ok=report.ok, text="\n".join(report.lines()),
                       outputs={**report.outputs(), **version_outputs(state, newest)},
                       tables={"Notifications": report.rows()}, notes=report.lines())


def run_all(ctx: Context, *, on_stage: Callable[[StageResult], None],
            detect_options: dict[str, Any] | None = None, jobs: int = 1,
            target: str = "all") -> bool:
    """detect -> process -> version -> publish -> notify; stops at the first failing stage,
    except that record failures in ``process`` do not stop the run (they are retried later).
    Returns whether every stage that ran succeeded (``process`` record failures excepted)."""
    steps: list[Callable[[], StageResult]] = [
        lambda: detect_stage(ctx, **(detect_options or {})),
        lambda: process_stage(ctx, plan=(detect_options or {}).get("out"), jobs=jobs),
        lambda: version_stage(ctx),
        lambda: publish_stage(ctx, target=target),
        lambda: notify_stage(ctx),
    ]
    for step in steps:
        result = step()
        on_stage(result)
        if not result.ok and result.name != "process":
            return False
    return True
