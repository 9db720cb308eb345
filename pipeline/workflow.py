"""The decisions the scheduled workflow makes, as plain functions behind CLI commands.

Why here and not in the YAML: a decision written as inline bash or Python in a workflow file is
untested and runs for the first time on a scheduled runner. Each function below decides from
data (inputs, the manifest, the state, the plan, the outcome files) and returns what the workflow
needs as step outputs; ``.github/workflows/continuous-data.yml`` only wires the commands
(``check-run``, ``shards``, ``check-outcomes``; see the README's command table).

Sizing (issue 8, SCALE.md): the stream is about 2,000 software records a day. A run plans at most
``source.max_records_per_run`` (500) records, the schedule runs every 4 hours (six runs, 3,000
records a day: 1.5 times the stream, so a busy day's backlog drains), and a plan is split into
shards of :data:`RECORDS_PER_SHARD` records, at most :data:`MAX_SHARDS` of them, so that
``RECORDS_PER_SHARD * MAX_SHARDS == 500``: a full plan fills the matrix exactly. A record costs
about 0.1 s of CPU per 4 MB of source (BENCHMARKS.md, bench_process) plus its download, so a
shard of 50 records takes minutes on a 4-vCPU runner, far inside the 6-hour job limit, and 10
jobs stay below the free plan's 20 concurrent jobs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from pipeline.detect import load_plan
from pipeline.errors import UsageError
from pipeline.manifest import Manifest
from pipeline.process import in_shard
from pipeline.state import State, outcome_path, records_folder

RECORDS_PER_SHARD = 50
MAX_SHARDS = 10
PUBLISH_MODES = ("none", "sandbox", "production")
TARGETS = ("all", "zenodo", "kaggle")
PRODUCTION_ZENODO_HOSTS = ("zenodo.org", "www.zenodo.org")


@dataclass(frozen=True)
class RunInputs:
    """A run's inputs as the workflow passes them (a scheduled run passes the defaults)."""
    publish: str
    targets: str
    manifest: str
    since: str = ""
    records: str = ""
    max_records: str = ""


def check_inputs(inputs: RunInputs, repository: Path) -> list[str]:
    """Every problem with the inputs, one line each (an empty list: they are fine).

    Why strict: the inputs are typed by a person in the Actions UI and reach a shell; a malformed
    one must stop the run with a message, never be ignored or interpreted.
    """
    problems = []
    if inputs.publish not in PUBLISH_MODES:
        problems.append(f"publish must be one of {', '.join(PUBLISH_MODES)}, got "
                        f"{inputs.publish!r}")
    if inputs.targets not in TARGETS:
        problems.append(f"targets must be one of {', '.join(TARGETS)}, got {inputs.targets!r}")
    if not re.fullmatch(r"[0-9T:.+Z-]*", inputs.since):
        problems.append("since must be an ISO 8601 time such as 2026-11-01T00:00:00Z, got "
                        f"{inputs.since!r}")
    if not re.fullmatch(r"[\s0-9]*", inputs.records):
        problems.append("records must be Zenodo record ids separated by spaces, got "
                        f"{inputs.records!r}")
    if not re.fullmatch(r"([1-9][0-9]*)?", inputs.max_records):
        problems.append(f"max_records must be a positive number, got {inputs.max_records!r}")
    path = PurePosixPath(inputs.manifest)
    if (not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*", inputs.manifest) or ".." in path.parts
            or not (repository / path).is_file()):
        problems.append(f"manifest must name a file of this repository, got {inputs.manifest!r}")
    return problems


def sandbox_guard(mode: str, manifest: Manifest) -> str | None:
    """Why a run in publish mode ``mode`` must not go on with ``manifest`` (None: it may).

    Sandbox mode uses the ``sandbox`` environment's secrets; with a manifest that publishes to
    zenodo.org it would publish a test version to the production record.
    """
    zenodo = manifest.destinations.zenodo
    if (mode == "sandbox" and zenodo is not None and zenodo.enabled
            and urlsplit(zenodo.url).hostname in PRODUCTION_ZENODO_HOSTS):
        return (f"{manifest.path} publishes to {zenodo.url}; sandbox mode needs a manifest whose "
                "destinations.zenodo.url is https://sandbox.zenodo.org (e.g. "
                "manifests/sandbox.zenodo.yaml)")
    return None


def unfinished_work(manifest: Manifest, state: State) -> list[str]:
    """Work an earlier run left (a publish in progress, a version not yet on every destination,
    a notification to retry): the publish job runs for it even on a day without new records."""
    from pipeline.notify import MAX_ATTEMPTS, announceable, enabled_destinations

    why = [f"publishing {entry.get('version')} to {name} is in progress"
           for name, entry in sorted(state.journal.items())]
    latest = state.latest_version
    if latest is not None and not announceable(latest, enabled_destinations(manifest)):
        why.append(f"version {latest['version']} is not yet on every destination")
    for version, channels in sorted(state.notifications.items()):
        for name, channel in sorted(channels.items()):
            if channel.get("status") == "failed" and channel.get("attempts", 0) < MAX_ATTEMPTS:
                why.append(f"notification {name} of {version} is to be retried")
    return why


def run_paths(manifest: Manifest, repository: Path) -> dict[str, str]:
    """The repository paths the workflow moves between jobs and commits: the state file, its
    records folder and the feed; and the scope of the versions cache (one per state file)."""
    root = repository.resolve()

    def rel(p: Path) -> str:
        return p.resolve().relative_to(root).as_posix()

    return {"state_path": rel(manifest.state_path),
            "records_path": rel(records_folder(manifest.state_path)),
            "feed_path": rel(manifest.notifications.feed_path),
            "cache_scope": manifest.state_path.stem}


def shard_count(planned: int, *, records_per_shard: int = RECORDS_PER_SHARD,
                max_shards: int = MAX_SHARDS) -> int:
    """Matrix jobs for a plan of ``planned`` records: one per ``records_per_shard`` records, at
    least 1 and at most ``max_shards`` (beyond that shards just hold more records)."""
    if records_per_shard < 1 or max_shards < 1:
        raise UsageError(f"records per shard and the shard cap must be at least 1, got "
                         f"{records_per_shard} and {max_shards}")
    return max(1, min(max_shards, math.ceil(planned / records_per_shard)))


def missing_outcomes(plan_path: Path, state: State, workdir: Path, shards: int
                     ) -> dict[str, int]:
    """Planned records with neither an outcome file nor a finished state entry, each with the
    shard (K of ``shards``) that should have produced it: what a lost shard artifact looks like
    (it would otherwise pass for "nothing new", leaving the records silently pending)."""
    if not plan_path.is_file():
        raise UsageError(f"no plan at {plan_path}", hint="download the plan job's `plan` "
                         "artifact into the work folder, or pass --plan")
    missing = {}
    for entry in load_plan(plan_path):
        if outcome_path(workdir, entry.id).is_file() or entry.id not in state.pending:
            continue
        missing[entry.id] = next(k for k in range(1, shards + 1)
                                 if in_shard(entry.id, (k, shards)))
    return missing
