"""``process``: fetch and convert the records of a plan, in worker processes, shard by shard.

Why this shape:

* ``--shard K/N`` is a deterministic partition of the plan by a stable hash of the record id
  (not by position), so a GitHub Actions matrix or a SLURM job array can split the work, the
  shards together cover the plan exactly once, and a record stays in its shard when the plan
  around it changes;
* ``--jobs N`` runs records in N worker processes (conversion is CPU-bound numpy and zlib work);
* each record ends in exactly one *outcome* file written atomically (:mod:`pipeline.state`), so
  a killed run loses at most the records in progress, and the next run skips what is done;
* a failing record is recorded with its reason and attempt count and never stops the others,
  including a record whose worker process is killed (the kernel's out-of-memory killer sends
  SIGKILL): the records that were in the broken pool are run again one at a time in a fresh
  worker, so the one that kills its worker again fails alone ("worker killed, probably out of
  memory") and the innocent ones finish.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.detect import PlanEntry, load_plan
from pipeline.errors import LocalError, PipelineError, UsageError
from pipeline.http import HttpClient
from pipeline.manifest import Manifest
from pipeline.records import RECORD_ID, Record
from pipeline.state import State, outcome_path, write_outcome
from pipeline.zenodo import ZenodoClient

log = logging.getLogger("pipeline.process")


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` (1-based) to ``(K, N)``; None means the whole plan, ``(1, 1)``."""
    if not text:
        return 1, 1
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard takes K/N, e.g. 2/4; got {text!r}") from None
    if not 1 <= k <= n:
        raise UsageError(f"--shard K/N needs 1 <= K <= N; got {text!r}")
    return k, n


def in_shard(record_id: str, shard: tuple[int, int]) -> bool:
    """Stable partition: crc32 of the id, modulo N (the same on every machine and Python)."""
    k, n = shard
    return zlib.crc32(record_id.encode("utf-8")) % n == k - 1


@dataclass
class ProcessReport:
    planned: int = 0
    shard: tuple[int, int] = (1, 1)
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    already: list[str] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0

    def text(self) -> str:
        k, n = self.shard
        lines = [f"process: shard {k}/{n}: {self.planned} planned, {len(self.done)} done, "
                 f"{len(self.failed)} failed, {len(self.already)} already done; "
                 f"{self.images} images in {self.seconds:.1f} s"]
        lines += [f"  failed {rid}: {reason}" for rid, reason in sorted(self.failed.items())]
        return "\n".join(lines)

    def outputs(self) -> dict[str, Any]:
        return {"planned": self.planned, "processed": len(self.done),
                "failed": len(self.failed), "already_done": len(self.already),
                "images": self.images}

    def rows(self) -> list[dict[str, Any]]:
        return [{"record": rid, "reason": reason} for rid, reason in sorted(self.failed.items())]


def already_done(entry: PlanEntry, state: State, workdir: Path) -> bool:
    """True when this run (or a killed earlier one) has already finished the record."""
    if outcome_path(workdir, entry.id).is_file():
        return True
    prev = state.records.get(entry.id)
    record = entry.record
    checksums = {f["key"]: f["checksum"] for f in record.get("files", [])}
    return bool(prev and prev.get("status") == "done" and entry.id not in state.pending
                and prev.get("revision") == record.get("revision")
                and prev.get("checksums") == checksums)


def process(manifest: Manifest, state: State, workdir: Path, *, plan_path: Path,
            shard: tuple[int, int] = (1, 1), jobs: int = 1) -> ProcessReport:
    """Process the plan's records of ``shard`` with ``jobs`` workers; write one outcome each.

    ``state`` is only read (to skip finished records); it is never written here.
    """
    if not plan_path.is_file():
        raise UsageError(f"no plan at {plan_path}",
                         hint="run `python -m pipeline detect` first, or pass --plan")
    started = time.monotonic()
    remove_stale_temporaries(workdir / "records")
    entries = [e for e in load_plan(plan_path) if in_shard(e.id, shard)]
    report = ProcessReport(planned=len(entries), shard=shard)
    todo: list[PlanEntry] = []
    for entry in _usable(entries, report):
        if already_done(entry, state, workdir):
            report.already.append(entry.id)
        else:
            todo.append(entry)
    args = [(entry, manifest.path, str(workdir)) for entry in todo]
    progress = _progress(len(args))
    try:
        if jobs == 1 or len(todo) <= 1:
            for a in args:
                _collect(report, process_one(*a), progress)
        else:
            _run_pool(args, jobs, report, progress)
    finally:
        if progress is not None:
            progress.close()
    report.seconds = time.monotonic() - started
    return report


def _usable(entries: list[PlanEntry], report: ProcessReport) -> list[PlanEntry]:
    """The entries whose id can name files; the others fail here, without an outcome file.

    Ids are checked where records enter (:mod:`pipeline.records`); this catches plans and
    states written before that check, or edited by hand.
    """
    usable = []
    for entry in entries:
        if RECORD_ID.match(str(entry.id)):
            usable.append(entry)
            continue
        shown = repr(entry.id)[:60]
        report.failed[shown] = (f"[process] record {shown}: the plan holds an id that cannot "
                                "name a file; expected 1 to 20 digits. Run `detect` again "
                                "to rebuild the plan")
        log.warning("%s", report.failed[shown])
    return usable


def remove_stale_temporaries(folder: Path, *, older_than: float = 3600.0) -> int:
    """Delete temporary outputs a killed run left behind (``.<name>.*.tmp``).

    Only files older than ``older_than`` seconds: shards sharing a workdir may be writing theirs
    right now. Partial downloads (``*.part``) are kept: they are resumed.
    """
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than
    removed = 0
    for path in folder.glob(".*.tmp"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _run_pool(args: list[tuple], jobs: int, report: ProcessReport, progress: Any) -> None:
    def collect(outcome: dict[str, Any]) -> None:
        _collect(report, outcome, progress)

    queue = list(args)
    while queue:  # a new pool after each one a killed worker broke
        queue, suspects = _pool_round(queue, jobs, collect)
        for a in suspects:  # alone, so a worker killed again names its record
            if _pool_round([a], 1, collect)[1]:
                collect(_killed_outcome(*a))


def _worker_signals() -> None:
    """Workers leave Ctrl-C to the parent (which stops them and reports it once, SPEC §15):
    the terminal sends SIGINT to the whole process group, and N tracebacks would follow.
    SIGTERM gets its default action back (the parent's handler is inherited by fork)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pool_round(queue: list[tuple], jobs: int, collect: Callable[[dict[str, Any]], None]
                ) -> tuple[list[tuple], list[tuple]]:
    """Run ``queue`` in one pool until it is done or a worker dies.

    Returns the records not started yet and those that were in the pool when it broke (one of
    them killed its worker, but which one is unknown).
    """
    queue = list(queue)
    suspects: list[tuple] = []
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_worker_signals)
    try:
        running: dict[Future, tuple] = {}
        while queue or running:
            while queue and len(running) < jobs * 2 and not suspects:
                a = queue.pop(0)
                running[pool.submit(process_one, *a)] = a
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                a = running.pop(future)
                try:
                    collect(future.result())
                except BrokenProcessPool:
                    suspects.append(a)
            if suspects:  # every other future of a broken pool fails the same way
                for future, a in running.items():
                    try:
                        collect(future.result())
                    except BrokenProcessPool:
                        suspects.append(a)
                break
    except BaseException:
        # Ctrl-C / SIGTERM: stop the workers now instead of waiting for the records in
        # progress; what they had finished is already in its outcome file, and their temporary
        # files are removed when the record is processed again.
        for worker in list((pool._processes or {}).values()):
            worker.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return queue, suspects


def _killed_outcome(entry: PlanEntry, manifest_path: Path, workdir: str) -> dict[str, Any]:
    """The outcome of a record whose worker process died (written here: the worker cannot)."""
    log.warning("record %s: its worker process was killed", entry.id)
    outcome = _failed(entry, Record.from_dict(entry.record), (
        f"[process] record {entry.id}: worker killed, probably out of memory; expected the "
        "worker to finish the record, got a worker ended by a signal (SIGKILL from the kernel's "
        "out-of-memory killer, or a person). Run it alone with more memory (`process --jobs 1`),"
        " or add it to source.exclusions.records; it is retried on the next runs"))
    write_outcome(Path(workdir), outcome)
    return outcome


def _progress(total: int) -> Any:
    """A progress bar on a terminal, unless logging is quieter than INFO (``-q``)."""
    if not total or not sys.stderr.isatty() or not log.isEnabledFor(logging.INFO):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="record", desc="process", file=sys.stderr)


def _collect(report: ProcessReport, outcome: dict[str, Any], progress: Any = None) -> None:
    """Count one record's outcome; show progress as a bar on a terminal, else as a log line
    (the reasons of failures are printed once, in the summary)."""
    if outcome["status"] == "done":
        report.done.append(outcome["id"])
        report.images += int(outcome.get("images", 0))
        what = f"done, {outcome.get('images', 0)} images from {outcome.get('files', 0)} files"
    else:
        report.failed[outcome["id"]] = outcome["reason"]
        what = "failed (the reason is in the summary)"
    if progress is not None:
        progress.update(1)
    else:
        log.info("process: record %s %s (%d/%d)", outcome["id"], what,
                 len(report.done) + len(report.failed), report.planned - len(report.already))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- one record (runs in a worker process) ---------------------------------------------------

_CLIENTS: dict[str, Any] = {}
_MANIFESTS: dict[Path, Manifest] = {}
# A forked worker must not reuse the parent's sessions: their keep-alive sockets would be shared
# by two processes and the responses interleaved (seen as md5 mismatches of downloads).
os.register_at_fork(after_in_child=_CLIENTS.clear)


def _manifest(path: Path) -> Manifest:
    """The manifest, loaded once per worker process."""
    from pipeline.manifest import load

    if path not in _MANIFESTS:
        _MANIFESTS[path] = load(path)
    return _MANIFESTS[path]


def _zenodo(manifest: Manifest) -> ZenodoClient:
    """The worker's Zenodo client: record reads and file downloads share its session."""
    if "zenodo" not in _CLIENTS:
        _CLIENTS["zenodo"] = ZenodoClient(manifest.source.zenodo)
    return _CLIENTS["zenodo"]


def _client(manifest: Manifest, origin: str) -> HttpClient:
    """One session per service per worker process (sessions cannot cross processes)."""
    if origin == "zenodo":
        return _zenodo(manifest).http
    if origin not in _CLIENTS:
        token = os.environ.get(manifest.source.github.token_env) or None
        _CLIENTS[origin] = HttpClient(service="GitHub archives", token=token)
    return _CLIENTS[origin]


def process_one(entry: PlanEntry, manifest_path: Path, workdir: str) -> dict[str, Any]:
    """Fetch, convert and store one record; return (and write) its outcome. Never raises for a
    bad record: the failure becomes the outcome."""
    manifest = _manifest(manifest_path)
    folder = Path(workdir)
    record = Record.from_dict(entry.record)
    remove_record_temporaries(folder, entry.id)
    try:
        result = convert_record(manifest, record, entry.raw, folder)
        outcome = {**_base(entry, record), "status": "done", "attempts": 0, "reason": "",
                   **result}
    except LocalError as exc:  # this machine's fault: not one of the record's attempts
        outcome = {**_failed(entry, record, str(exc)), "attempts": entry.attempts}
    except PipelineError as exc:
        outcome = _failed(entry, record, str(exc))
    except Exception as exc:  # a bug must fail one record, loudly, not the run
        log.exception("record %s: unexpected error", entry.id)
        outcome = _failed(entry, record, f"[process] record {entry.id}: unexpected "
                          f"{type(exc).__name__}: {exc}. This is a bug; please report it with "
                          "this message")
    write_outcome(folder, outcome)
    return outcome


def _base(entry: PlanEntry, record: Record) -> dict[str, Any]:
    return {"id": entry.id, "concept": record.concept_id, "revision": record.revision,
            "updated": record.updated, "checksums": record.checksums, "processed_at": _now()}


def _failed(entry: PlanEntry, record: Record, reason: str) -> dict[str, Any]:
    return {**_base(entry, record), "status": "failed", "attempts": entry.attempts + 1,
            "reason": reason, "record": entry.record}


def remove_record_temporaries(workdir: Path, record_id: str) -> int:
    """Delete what a killed run left half-written for this record, before it is processed again.

    Safe at any age: a record is processed by one worker of one shard at a time (shards
    partition the plan), so these files can only be a dead run's.
    """
    removed = 0
    for folder, name in ((workdir / "records", f"{record_id}.h5"),
                         (workdir / "records", f"{record_id}.json"),
                         (workdir / "outcomes", f"{record_id}.json")):
        for path in folder.glob(f".{name}.*tmp") if folder.is_dir() else ():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def convert_record(manifest: Manifest, record: Record, raw: dict[str, Any] | None,
                   workdir: Path) -> dict[str, Any]:
    """Fetch every archive of ``record`` (or its GitHub fallback), convert and store them.

    Returns the outcome fields of a processed record. Raises a :class:`PipelineError` naming
    the stage for a record that cannot be processed.
    """
    from pipeline.fetch import DownloadLimits, fetch, sources_for
    from pipeline.provenance import record_labels, splits
    from pipeline.store import SourceArchive, write_record

    sources = sources_for(record, manifest.source.github.archive_url)
    if not sources:
        raise PipelineError(
            "the record has no archive file and no GitHub related identifier to fall back on",
            stage="fetch", record=record.id, expected="a .zip/.tar.* file or a github.com "
            "related identifier", got=", ".join(f.key for f in record.files) or "no files",
            hint="nothing to convert; add the record to source.exclusions to stop retrying it")
    if raw is None:
        # Plans carried over from earlier runs keep only the parsed record; the metadata of
        # the output holds Zenodo's own JSON, so read it again.
        raw = _zenodo(manifest).record(record.id, stage="fetch")[1]
    p = manifest.processing
    cache = workdir / "downloads"
    archives = []
    limits = DownloadLimits.from_processing(p)
    for source in sources:
        got = fetch(_client(manifest, source.origin), source, cache, record=record.id,
                    max_bytes=p.max_download_bytes, limits=limits)
        archives.append(SourceArchive(key=source.key, path=got.path, checksum=source.md5,
                                      sha256=got.sha256))
    labels = record_labels(raw, splits(manifest))
    output = write_record(workdir / "records", record.id, archives, processing=p, record=raw,
                          labels=labels)
    return {"images": output.images, "files": output.files, "skipped_files": output.skipped,
            "output": f"records/{output.hdf5.name}", "metadata": f"records/"
            f"{output.metadata.name}", "sha256": output.hdf5_sha256,
            "bytes": output.hdf5_bytes, "source_bytes": output.source_bytes,
            "redactions": output.redactions,
            "archives": [{"key": s.key, "origin": s.origin, "url": s.url} for s in sources]}
