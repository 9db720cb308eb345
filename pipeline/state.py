"""The pipeline's single state file (SPEC section 7): cursor, records, versions, destinations,
publishing journal and notifications sent.

Why one JSON file: the scheduled workflow commits it back to the repository, so every change of
state is reviewable in git (sorted keys, one key per line). It is written atomically
(:func:`pipeline.fsutil.atomic_write_json`); a run killed at any moment leaves the previous state.

Per-record progress during ``process`` is not written here record by record (rewriting a state of
100,000 records per record would be quadratic). Workers write one small *outcome* file per record
(``<workdir>/outcomes/<id>.json``, atomically) and :func:`ingest_outcomes` folds them into the
state at the start of every command. Outcomes carry absolute attempt counts, so folding one twice
changes nothing; that is also how the shards of a GitHub Actions matrix report back.

Layout (``schema`` 1)::

    cursor          ISO 8601 "Z" timestamp the harvest has reached (exclusive upper bound)
    records         {id: {status: done|failed|skipped, concept, revision, updated, checksums,
                          attempts, reason, images, files, output, processed_at, version}}
    pending         {id: {action, reason, attempts, record, planned_at}}: planned by ``detect``
                    and not processed yet; carried into the next plan, because the cursor has
                    already moved past them
    versions        [{version, created, added, updated, removed, files, counts...}] (oldest first)
    destinations    {zenodo: {...ids...}, kaggle: {...}}
    journal         {destination: {version, step, ...}} publishing in progress
    notifications   {version: {channel: {status, attempts, error}}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import StateError
from pipeline.fsutil import atomic_write_json, atomic_write_text, safe_join

SCHEMA = 1
# What the state keeps of a record's outcome; the rest (archive URLs, byte counts) lives in the
# record's metadata JSON. At 100,000 records every key costs megabytes in a committed file.
RECORD_KEYS = frozenset({"status", "concept", "revision", "updated", "checksums", "attempts",
                         "reason", "images", "files", "output", "sha256", "processed_at",
                         "version", "record"})
RecordStatus = Literal["done", "failed", "skipped"]


@dataclass
class State:
    path: Path
    cursor: str | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    journal: dict[str, dict[str, Any]] = field(default_factory=dict)
    notifications: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_run: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> State:
        """Read the state at ``path``; a missing file is a fresh state (first run)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path=path)
        except (OSError, ValueError) as exc:
            raise StateError(
                f"cannot read the state file {path}: {exc}", stage="state",
                hint="restore it from git (it is committed by the workflow) or rebuild it from "
                "the latest published version's index",
            ) from exc
        schema = raw.get("schema")
        if schema != SCHEMA:
            raise StateError(f"state file {path} has schema {schema!r}", stage="state",
                             expected=SCHEMA, got=schema,
                             hint="upgrade the pipeline to the version that wrote it")
        return cls(
            path=path, cursor=raw.get("cursor"), records=raw.get("records", {}),
            pending=raw.get("pending", {}),
            versions=raw.get("versions", []), destinations=raw.get("destinations", {}),
            journal=raw.get("journal", {}), notifications=raw.get("notifications", {}),
            last_run=raw.get("last_run", {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "cursor": self.cursor, "records": self.records,
            "pending": self.pending,
            "versions": self.versions, "destinations": self.destinations,
            "journal": self.journal, "notifications": self.notifications,
            "last_run": self.last_run,
        }

    def save(self) -> None:
        atomic_write_text(self.path, render(self.to_dict()))

    # -- records ---------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {"done": 0, "failed": 0, "skipped": 0}
        for rec in self.records.values():
            out[rec["status"]] = out.get(rec["status"], 0) + 1
        return out

    def failed(self) -> dict[str, dict[str, Any]]:
        return {rid: r for rid, r in self.records.items() if r["status"] == "failed"}

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
        self.records[rid] = entry

    @property
    def latest_version(self) -> dict[str, Any] | None:
        return self.versions[-1] if self.versions else None


def render(data: dict[str, Any]) -> str:
    """The state as JSON with one line per record, so a change of one record is a one-line diff
    in git and a state of 100,000 records stays compact."""
    out = ["{"]
    keys = sorted(data)
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        value = data[key]
        if key in ("records", "pending") and value:
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
