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
    """What a stage did: ``text`` in words for a terminal, ``data`` for ``--json``, ``next``
    the command to run next (its words after ``pipeline``, None when there is nothing to do)
    with ``next_note`` said after it, and the rest for a GitHub job summary."""

    name: str
    ok: bool = True
    text: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    next: str | None = None
    next_note: str = ""


def plural(n: int, word: str) -> str:
    """``1 record``, ``2,000 records``: summaries in words (issue 11)."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


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
    default_plan = out == ctx.workdir / "plan.json"
    return StageResult(
        "detect",
        text=f"detect: {plural(total, 'record')} planned ({counts['new']} new, "
             f"{counts['updated']} updated, {counts['retry']} to retry), "
             f"{len(plan.skipped)} skipped, {plural(plan.search_requests, 'search request')}; "
             f"window {plan.since} .. {plan.until}; plan written to {out}",
        outputs={"planned": total, "has_work": total > 0, "plan": str(out), **counts},
        tables={"Planned records": [{"record": e.id, "action": e.action, "reason": e.reason}
                                    for e in plan.entries]},
        data={"planned": total, **counts, "skipped": len(plan.skipped), "plan": str(out),
              "since": plan.since, "until": plan.until, "search_requests": plan.search_requests,
              "records": [{"id": e.id, "action": e.action, "reason": e.reason}
                          for e in plan.entries]},
        next=("process" + ("" if default_plan else f" --plan {out}")) if total else None)


def process_stage(ctx: Context, *, plan: Path | None = None, shard: str | None = None,
                  jobs: int = 1) -> StageResult:
    from pipeline.process import parse_shard, process

    # Read-only: shards of a job array may share the workdir and the state file, so process
    # never writes the state; its outcome files are folded in by the next stage.
    state = State.load(ctx.manifest.state_path)
    parsed = parse_shard(shard)
    report = process(ctx.manifest, state, ctx.workdir, plan_path=plan or
                     ctx.workdir / "plan.json", shard=parsed, jobs=jobs)
    lines = [report.text()]
    if report.failed:
        lines.append("failed records are retried by the next detect + process (up to "
                      "source.retry_limit); `pipeline status` lists them")
    return StageResult("process", ok=not report.failed, text="\n".join(lines),
                       outputs=report.outputs(), tables={"Failed records": report.rows()},
                       data={**report.outputs(), "shard": f"{parsed[0]}/{parsed[1]}",
                             "seconds": round(report.seconds, 3),
                             "failed_records": report.rows()},
                       next="version" if report.done else None)


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
        unpublished = bool(state.versions) and not state.versions[-1].get("published")
        return StageResult("version", text="version: nothing changed since the last version; "
                           "no new version", outputs={"version": "", "new_version": False},
                           notes=["Nothing changed since the last version."],
                           data={"new_version": False, "version": ""},
                           next="publish" if unpublished else None)
    c = built.counts
    return StageResult(
        "version",
        text=f"version: built {built.version} (volume {built.volume}): "
             f"{plural(c.get('records', 0), 'record')} ({c.get('added', 0)} added, "
             f"{c.get('updated', 0)} updated, {c.get('removed', 0)} removed), "
             f"{plural(c.get('images', 0), 'image')} in {plural(c.get('parts', 0), 'part file')};"
             f" folder {built.folder}",
        outputs={**c, "new_version": True, **version_outputs(state, built.version)},
        notes=[built.notes],
        data={"new_version": True, "version": built.version, "volume": built.volume,
              "folder": str(built.folder), "counts": c},
        next="publish")


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
    if report.failed:
        step, note = "publish", "again once the problem above is fixed; it resumes the same version"
    elif report.dry_run:
        step, note = "publish" + ("" if target == "all" else f" --target {target}"), ""
    elif any(r.outcome == "published" for r in report.results):
        step, note = "notify", ""
    else:
        step, note = None, ""
    return StageResult("publish", ok=not report.failed, text=report.text(),
                       outputs={**report.outputs(), **version_outputs(state, report.version)},
                       notes=[report.markdown()],
                       data={"version": report.version, "dry_run": report.dry_run,
                             "failed": report.failed,
                             "results": [{"destination": r.name, "outcome": r.outcome,
                                          "detail": r.detail, "error": r.error,
                                          "lines": r.lines} for r in report.results]},
                       next=step, next_note=note)


def notify_stage(ctx: Context) -> StageResult:
    from pipeline.notify import notify

    state = ctx.state()
    report = notify(ctx.manifest, state)
    newest = report.versions[-1] if report.versions else None
    return StageResult("notify", ok=report.ok, text="\n".join(report.lines()),
                       outputs={**report.outputs(), **version_outputs(state, newest)},
                       tables={"Notifications": report.rows()}, notes=report.lines(),
                       data={"ok": report.ok, "results": report.rows(),
                             "feed": report.feed_path,
                             "given_up": [{"version": v, "channel": c}
                                          for v, c in report.given_up],
                             "waiting": report.waiting},
                       next=None if report.ok else "notify",
                       next_note="" if report.ok else
                       "retries the failed channels (so does the next run)")


def run_all(ctx: Context, *, on_stage: Callable[[StageResult], Any],
            detect_options: dict[str, Any] | None = None, jobs: int = 1,
            target: str = "all", on_start: Callable[[str], Any] | None = None) -> bool:
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
    for name, step in zip(STAGES, steps, strict=True):
        if on_start is not None:
            on_start(name)
        result = step()
        on_stage(result)
        if not result.ok and result.name != "process":
            return False
    return True
