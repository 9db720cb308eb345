"""The pipeline's state (SPEC section 7): cursor, records, versions, destinations, publishing
journal and notifications sent.

Why this layout: the scheduled workflow commits the state back to the repository every day, so
every change is reviewable in git, and a state of a million records must stay below GitHub's
50 MB warning with a daily diff the size of that day's changes (SCALE.md). So the state is

* ``state/state.json`` (``state.path``): everything small (cursor, pending, versions,
  destinations, journal, notifications, last run) plus a one-line summary per records file;
* ``state/state.records/<NNNNNN>.jsonl`` (folder ``<stem>.records`` beside the state file): the
  records, one compact JSON line each (``{"id": ..., ...}``, sorted by id), split by record-id
  range (:data:`IDS_PER_FILE` ids a file). New Zenodo records have ascending ids, so a day's new
  records land in one or two files, and a record's change is a one-line diff;
* ``state/state.records/concepts/<NNNNNN>.jsonl``: the concept index
  ``{"id": concept, "done": [ids]}`` kept by ``version`` (split by concept id the same way), so
  that ``version`` costs what the records touched since the last version cost (issue 8).

Every file is written atomically (:mod:`pipeline.fsutil`), the records files first and
``state.json`` last; only the records files whose text changed are rewritten. Records files are
read lazily: a command that looks up a few records (a no-op ``detect``, ``process``) reads only
their files, and the per-file summary (status counts and the failed records with their attempt
counts) answers :meth:`State.counts` and :meth:`State.failed` without reading the others.

Per-record progress during ``process`` is not written here record by record. Workers write one
small *outcome* file per record (``<workdir>/outcomes/<id>.json``, atomically) and
:func:`ingest_outcomes` folds them into the state at the start of every command. Outcomes carry
absolute attempt counts, so folding one twice changes nothing; that is also how the shards of a
GitHub Actions matrix report back.

Layout of ``state.json`` (``schema`` 2; a schema-1 file, which held every record inline, loads
and is migrated on the next save)::

    cursor          ISO 8601 "Z" timestamp the harvest has reached (exclusive upper bound)
    touched         {id: snapshot} records set since the last version (see Records), or null:
                    not known (state written before it existed, or over TOUCHED_MAX), so the
                    next ``version`` reads every record once
    record_files    {file stem: {done: n, failed: {id: attempts}, skipped: n}}
                    (each records line: {id, status: done|failed|skipped, concept, revision,
                    updated, checksums, attempts, reason, images, files, output, sha256,
                    version, part, added_in}; part: the part file holding its live copy)
    pending         {id: {action, reason, attempts, record, planned_at}}: planned by ``detect``
                    and not processed yet; carried into the next plan, because the cursor has
                    already moved past them
    versions        [{version, created, added, updated, removed, files, counts...}] (oldest first)
    destinations    {zenodo: {...ids..., volumes: {n: {...ids..., continued_by}}}, kaggle: {...}}
                    (continued_by: the later volumes' concept DOIs a closed volume links to)
    journal         {destination: {version, steps, ...}} publishing in progress (also
                    ``zenodo-volumes``: the forward-link edits of closed volumes, with ``what``
                    and the last ``error``)
    notifications   {version: {channel: {status, attempts, error}}}

A record line: ``{"id", "status": done|failed|skipped, "concept", "revision", "updated",
"checksums", "attempts", "reason", "images", "files", "output", "sha256", "version"}`` (a failed
record also keeps the planned ``record`` to retry it). No per-run timestamp is kept per record
(when a record was processed is in its metadata JSON and the version's changelog), so an
unchanged record never changes its line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import StateError
from pipeline.fsutil import atomic_write_json, atomic_write_text, safe_join
from pipeline.records import id_key

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
# What the state keeps of a record's outcome; the rest (archive URLs, byte counts, when it was
# processed) lives in the record's metadata JSON. At a million records every key costs
# megabytes in committed files, and a key that changes on every run costs a diff line a record.
RECORD_KEYS = frozenset({"status", "concept", "revision", "updated", "checksums", "attempts",
                         "reason", "images", "files", "output", "sha256", "version",
                         "record", "part", "added_in", "redactions"})
# Where a record sits in the published dataset: kept when the record is processed again, until
# ``version`` moves it (its old copy then leaves the old part's index).
PLACEMENT_KEYS = ("part", "added_in")
RecordStatus = Literal["done", "failed", "skipped"]
# Record ids per records file. Zenodo ids grow by about 30,000 a day (all record types), so a
# day's new software records fall in one to three files; a file holds at most 10,000 records
# (about 3 MB), and a million records make 100 to 2,000 files.
IDS_PER_FILE = 10_000
# Records touched since the last version, remembered in ``state.json`` so that ``version`` reads
# only their files. Beyond this many (a backfill run without versions) the index is dropped and
# the next version scans every record once, a cost then shared by that many new records.
TOUCHED_MAX = 50_000
# What a touched record's entry was at the last version: enough to take its share out of the
# version's counts and to find its concept (``version`` reads the rest from the entry itself).
SNAPSHOT_KEYS = ("status", "concept", "part")


def counted(entry: dict[str, Any]) -> dict[str, int]:
    """A record's share of a version's counts (``files`` is a count or, in old states, a list)."""
    files = entry.get("files")
    return {"files": files if isinstance(files, int) else len(files or []),
            "images": int(entry.get("images") or 0),
            "redactions": int(entry.get("redactions") or 0)}


def snapshot(entry: dict[str, Any] | None) -> dict[str, Any]:
    """What :attr:`Records.touched` keeps of an entry before its first change since a version:
    its status, concept and part and, when placed in the dataset, its share of the counts."""
    if not entry:
        return {}
    out = {k: entry[k] for k in SNAPSHOT_KEYS if entry.get(k) is not None}
    if entry.get("part"):
        out.update(counted(entry))
    return out


def records_folder(state_path: Path) -> Path:
    """Where the records of the state file ``state_path`` live: ``<stem>.records`` beside it."""
    return state_path.with_name(f"{state_path.stem}.records")


def concepts_folder(state_path: Path) -> Path:
    """Where the concept index of the state file lives: ``concepts/`` in its records folder,
    so that it travels (artifact, cache, commit) wherever the records go."""
    return records_folder(state_path) / "concepts"


def concept_key(rid: str, entry: dict[str, Any]) -> str:
    """The concept a record belongs to; a record without one is its own concept."""
    return str(entry.get("concept") or rid)


def file_of(record_id: str) -> str:
    """The records file (stem) holding ``record_id``: its id range, zero-padded to sort."""
    return f"{int(record_id) // IDS_PER_FILE:06d}" if record_id.isdigit() else "other"


def render_records(records: dict[str, dict[str, Any]]) -> str:
    """One compact JSON line per record, sorted by id, the id first (``grep '"id":"123"'``)."""
    lines = []
    for rid in sorted(records, key=id_key):
        body = json.dumps(records[rid], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        lines.append(f'{{"id":{json.dumps(rid)}' + ("," + body[1:] if body != "{}" else "}"))
    return "\n".join(lines) + "\n" if lines else ""


def summarise(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ``state.json`` keeps of one records file: status counts and the failed records."""
    out: dict[str, Any] = {"done": 0, "failed": {}, "skipped": 0}
    for rid, rec in records.items():
        if rec.get("status") == "failed":
            out["failed"][rid] = int(rec.get("attempts", 0))
        else:
            out[rec.get("status", "done")] = out.get(rec.get("status", "done"), 0) + 1
    return out


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class Records(MutableMapping[str, dict[str, Any]]):
    """``{record id: entry}`` backed by the records files, each read on first use.

    Entries may be changed in place (``records[rid]["version"] = v``): :meth:`save` re-renders
    every file it has read and rewrites those whose text changed, so no change is lost and no
    unchanged file is touched. Iterating reads every file (a full ``version`` scan does;
    ``detect`` does not).

    ``touched`` (``{id: snapshot}``, or None when unknown) lists the records set or deleted since
    the last version, each with :func:`snapshot` of its entry at that version, so ``version``
    decides from them alone; in-place changes are not tracked (only ``version`` makes them).
    """

    def __init__(self, folder: Path, summary: dict[str, dict[str, Any]] | None = None,
                 touched: dict[str, dict[str, Any]] | None = None, *, track: bool = True) -> None:
        self.folder = folder
        self.summary: dict[str, dict[str, Any]] = dict(summary or {})
        self.touched: dict[str, dict[str, Any]] | None = touched if track else None
        self._track = track
        self._files: dict[str, dict[str, dict[str, Any]]] = {}
        self._read_digest: dict[str, str | None] = {}

    def _file(self, name: str) -> dict[str, dict[str, Any]]:
        loaded = self._files.get(name)
        if loaded is not None:
            return loaded
        path = self.folder / f"{name}.jsonl"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None
        except OSError as exc:
            raise StateError(f"cannot read the records file {path}: {exc}", stage="state",
                             hint="restore it from git") from exc
        try:
            # One JSON array parse per file: several times faster than a parse per line.
            entries = json.loads("[" + ",".join((text or "").splitlines()) + "]")
            records = {str(e.pop("id")): e for e in entries}
        except (ValueError, KeyError, AttributeError, TypeError):
            records = _parse_lines(path, text or "")
        self._files[name] = records
        self._read_digest[name] = _digest(text) if text is not None else None
        return records

    def _names(self) -> set[str]:
        on_disk = {p.stem for p in self.folder.glob("*.jsonl")} if self.folder.is_dir() else set()
        return on_disk | set(self.summary) | set(self._files)

    def load_all(self) -> None:
        for name in sorted(self._names()):
            self._file(name)

    def __getitem__(self, rid: str) -> dict[str, Any]:
        return self._file(file_of(rid))[rid]

    def __setitem__(self, rid: str, entry: dict[str, Any]) -> None:
        records = self._file(file_of(rid))
        self._touch(rid, records.get(rid))
        records[rid] = entry

    def __delitem__(self, rid: str) -> None:
        records = self._file(file_of(rid))
        self._touch(rid, records.get(rid))
        del records[rid]

    def _touch(self, rid: str, before: dict[str, Any] | None) -> None:
        if not self._track or self.touched is None or rid in self.touched:
            return
        if len(self.touched) >= TOUCHED_MAX:
            self.touched = None     # too many: the next version scans every record
        else:
            self.touched[rid] = snapshot(before)

    def __contains__(self, rid: object) -> bool:
        return isinstance(rid, str) and rid in self._file(file_of(rid))

    def __iter__(self) -> Iterator[str]:
        self.load_all()
        for name in sorted(self._files):
            yield from list(self._files[name])

    def __len__(self) -> int:
        return sum(len(self._files[n]) if n in self._files else
                   _summary_total(self.summary.get(n, {})) for n in self._names())

    def file_summaries(self) -> dict[str, dict[str, Any]]:
        """The summary of every records file: read files from memory, the others as stored."""
        out = {n: s for n, s in self.summary.items() if n not in self._files}
        out.update({n: summarise(r) for n, r in self._files.items() if r})
        return dict(sorted(out.items()))

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "failed": 0, "skipped": 0}
        for s in self.file_summaries().values():
            out["done"] += s.get("done", 0)
            out["skipped"] += s.get("skipped", 0)
            out["failed"] += len(s.get("failed", {}))
        return out

    def failed(self, *, attempts_below: int | None = None) -> dict[str, dict[str, Any]]:
        """Failed records (with fewer than ``attempts_below`` attempts), reading only the files
        whose summary lists such a record: records given up on cost nothing per run."""
        out = {}
        for name, s in self.file_summaries().items():
            if any(attempts_below is None or n < attempts_below
                   for n in s.get("failed", {}).values()):
                out.update({rid: r for rid, r in self._file(name).items()
                            if r.get("status") == "failed"})
        return out

    def save(self) -> int:
        """Rewrite the read files whose text changed (remove emptied ones); how many."""
        written = 0
        for name, records in sorted(self._files.items()):
            text = render_records(records)
            digest = _digest(text) if text else None
            if digest == self._read_digest.get(name):
                continue
            path = self.folder / f"{name}.jsonl"
            if text:
                atomic_write_text(path, text)
            else:
                path.unlink(missing_ok=True)
            self._read_digest[name] = digest
            written += 1
        self.summary = self.file_summaries()
        return written


def _parse_lines(path: Path, text: str) -> dict[str, dict[str, Any]]:
    """Parse a records file line by line, to name the line that is not a record."""
    records = {}
    for n, line in enumerate(text.splitlines(), 1):
        try:
            entry = json.loads(line)
            records[str(entry.pop("id"))] = entry
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise StateError(f"{path}:{n}: not a record line: {line[:120]!r}", stage="state",
                             expected='{"id": ..., "status": ...}', got=str(exc),
                             hint="restore the file from git") from exc
    return records


def _summary_total(s: dict[str, Any]) -> int:
    return int(s.get("done", 0)) + int(s.get("skipped", 0)) + len(s.get("failed", {}))


@dataclass
class State:
    path: Path
    cursor: str | None = None
    records: Records = field(default=None)  # type: ignore[assignment]  # set in __post_init__
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    journal: dict[str, dict[str, Any]] = field(default_factory=dict)
    notifications: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_run: dict[str, Any] = field(default_factory=dict)
    # {concept: {"done": [ids]}}: every done record by concept, as of the last version (kept by
    # ``version``), so that ``source.versions: latest`` and the concept count need no full scan
    concepts: Records = field(default=None)  # type: ignore[assignment]  # set in __post_init__

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not isinstance(self.records, Records):
            initial = self.records or {}
            self.records = Records(records_folder(self.path), touched={})
            for rid, entry in initial.items():
                self.records[rid] = entry
        if not isinstance(self.concepts, Records):
            self.concepts = Records(concepts_folder(self.path), track=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> State:
        """Read the state at ``path``; a missing file is a fresh state (first run)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            fresh = cls(path=path)
            if any(records_folder(path).glob("*.jsonl")):
                fresh.records.touched = None     # records without their state.json: unknown
            return fresh
        except (OSError, ValueError) as exc:
            raise StateError(
                f"cannot read the state file {path}: {exc}", stage="state",
                hint="restore it from git (it is committed by the workflow) or rebuild it from "
                "the latest published version's index",
            ) from exc
        schema = raw.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise StateError(f"state file {path} has schema {schema!r}", stage="state",
                             expected=SCHEMA, got=schema,
                             hint="upgrade the pipeline to the version that wrote it")
        # No "touched" key (written before it existed, or schema 1): not known, full scan once.
        records = Records(records_folder(path), raw.get("record_files", {}),
                          raw.get("touched") if schema == SCHEMA else None)
        for rid, entry in (raw.get("records", {}) if schema == 1 else {}).items():
            # Schema 1 held the records inline: they move to their files on the next save.
            records[rid] = {k: v for k, v in entry.items() if k in RECORD_KEYS}
        return cls(
            path=path, cursor=raw.get("cursor"), records=records,
            pending=raw.get("pending", {}),
            versions=raw.get("versions", []), destinations=raw.get("destinations", {}),
            journal=raw.get("journal", {}), notifications=raw.get("notifications", {}),
            last_run=raw.get("last_run", {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """``state.json``'s content (the records themselves are in their files)."""
        return {
            "schema": SCHEMA, "cursor": self.cursor,
            "record_files": self.records.file_summaries(), "pending": self.pending,
            "touched": self.records.touched,
            "versions": self.versions, "destinations": self.destinations,
            "journal": self.journal, "notifications": self.notifications,
            "last_run": self.last_run,
        }

    def save(self) -> None:
        """Records files (and the concept index) first, ``state.json`` last, each atomically."""
        self.records.save()
        self.concepts.save()
        atomic_write_text(self.path, render(self.to_dict()))

    # -- records ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return self.records.counts()

    def failed(self, *, attempts_below: int | None = None) -> dict[str, dict[str, Any]]:
        return self.records.failed(attempts_below=attempts_below)

    def apply_outcome(self, outcome: dict[str, Any]) -> None:
        """Fold one record outcome (as written by ``process``) into the state."""
        rid = str(outcome["id"])
        self.pending.pop(rid, None)
        previous = self.records.get(rid, {})
        entry = {k: v for k, v in outcome.items() if k in RECORD_KEYS}
        # A record processed again keeps the dataset version that first added it until
        # ``version`` assigns a new one.
        if previous.get("version") and entry.get("status") == "done" and \
                previous.get("checksums") == entry.get("checksums") and \
                previous.get("revision") == entry.get("revision"):
            entry["version"] = previous["version"]
        else:
            entry.setdefault("version", None)
        for key in PLACEMENT_KEYS:
            if previous.get(key):
                entry[key] = previous[key]
        self.records[rid] = entry

    @property
    def latest_version(self) -> dict[str, Any] | None:
        return self.versions[-1] if self.versions else None


def render(data: dict[str, Any]) -> str:
    """``state.json`` with one line per pending record and per records file, so a day's diff
    names the records planned and the records files that changed."""
    out = ["{"]
    keys = sorted(data)
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        value = data[key]
        if key in ("record_files", "pending", "touched") and value:
            items = sorted(value.items())
            out.append(f" {json.dumps(key)}: {{")
            out += [f"  {json.dumps(k)}: "
                    f"{json.dumps(v, sort_keys=True, separators=(',', ':'), ensure_ascii=False)}"
                    f"{',' if j < len(items) - 1 else ''}" for j, (k, v) in enumerate(items)]
            out.append(f" }}{comma}")
        else:
            text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False)
            out.append(f" {json.dumps(key)}: " + text.replace("\n", "\n ") + comma)
    out.append("}")
    return "\n".join(out) + "\n"


def outcome_path(workdir: Path, record_id: str) -> Path:
    return safe_join(Path(workdir) / "outcomes", f"{record_id}.json")


def write_outcome(workdir: Path, outcome: dict[str, Any]) -> None:
    """Write one record's outcome atomically (called once per record by ``process``)."""
    atomic_write_json(outcome_path(workdir, str(outcome["id"])), outcome)


def read_outcomes(workdir: Path) -> Iterable[tuple[Path, dict[str, Any]]]:
    folder = Path(workdir) / "outcomes"
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except ValueError as exc:
            raise StateError(f"outcome file {path} is unreadable: {exc}", stage="state",
                             hint="delete it; the record will be processed again") from exc
    return found


def ingest_outcomes(state: State, workdir: Path) -> int:
    """Fold every outcome file into ``state``, save it, then remove the folded files.

    Returns how many outcomes were folded. Safe to repeat: outcomes are absolute, and files are
    removed only after the state holding them is on disk.
    """
    found = list(read_outcomes(workdir))
    if not found:
        return 0
    for _, outcome in found:
        state.apply_outcome(outcome)
    state.save()
    for path, _ in found:
        path.unlink(missing_ok=True)
    return len(found)
