"""Files of the published dataset, fetched from Zenodo one at a time, by need, verified.

Why: a version is a listing (:mod:`pipeline.version`), so a run never needs the previous version
as a whole; it needs at most a few small part indexes to rewrite (the version builder) and, for
Kaggle, the parts inside the Kaggle budget that this run did not write. On a CI runner whose
cache was evicted only the state is left, and a published Zenodo record is immutable, so each
such file is downloaded from the record it was published in and proven to be the bytes the state
lists (md5 while streaming, the size, then the sha256 on disk) before anyone reads it.

Which record: the newest published version of the file's volume whose listing names the file
with that md5 (every version of a volume lists the files it carries, so the newest published one
holds every carried file). A published record needs no token (one is sent when set).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import ChecksumError, PipelineError
from pipeline.fetch import Source as Download
from pipeline.fetch import fetch
from pipeline.fsutil import file_digest
from pipeline.http import Sleep
from pipeline.manifest import ZenodoDestination
from pipeline.state import State
from pipeline.zenodo import ZenodoClient

log = logging.getLogger(__name__)
# (name, md5) -> a local path holding that file's bytes; raises PipelineError if it cannot
Source = Callable[[str, str], Path]


def find_local(workdir: str | os.PathLike[str]) -> Source:
    """A :data:`Source` that looks for a file in the version folders already on disk (a warm
    cache, or the machine that built them), by name and md5; it never touches the network."""
    versions = Path(workdir) / "versions"

    def source(name: str, md5: str) -> Path:
        for folder in sorted(versions.iterdir() if versions.is_dir() else [], reverse=True):
            path = folder / name
            if not folder.name.startswith(".") and path.is_file() and \
                    file_digest(path, "md5") == md5:
                return path
        raise PipelineError(f"{name} ({md5}) is not in any version folder under {versions}",
                            stage="version", hint="run the `version` command (it fetches what "
                            "it needs from Zenodo), or restore the work folder")
    return source


def published_record(entry: Mapping[str, Any]) -> str | None:
    """The id of the Zenodo record version ``entry`` was published as, or None."""
    zenodo = (entry.get("published") or {}).get("zenodo") or {}
    record_id = zenodo.get("record_id")
    return str(record_id) if record_id else None


def record_holding(versions: Sequence[Mapping[str, Any]], name: str, md5: str
                   ) -> tuple[str, Mapping[str, Any]] | None:
    """``(record id, version entry)`` of the newest published version listing ``name`` with
    ``md5``, or None if no published version holds it."""
    for entry in reversed(versions):
        record_id = published_record(entry)
        if record_id and entry.get("md5", {}).get(name) == md5:
            return record_id, entry
    return None


class PublishedFiles:
    """Fetches single files of published versions into ``folder``; counts the bytes.

    ``local`` is tried first (see :func:`find_local`): a warm cache saves the download.
    """

    def __init__(self, dest: ZenodoDestination | None, state: State, folder: Path, *,
                 stage: str, sleep: Sleep = time.sleep, local: Source | None = None) -> None:
        self.dest, self.state, self.folder, self.stage = dest, state, Path(folder), stage
        self.local = local
        self.sleep = sleep
        self.bytes_downloaded = 0
        self.files_downloaded = 0
        self._zenodo: ZenodoClient | None = None
        self._records: dict[str, Any] = {}

    def close(self) -> None:
        if self._zenodo is not None:
            self._zenodo.close()

    def fetch(self, name: str, md5: str) -> Path:
        """A verified local copy of the published file ``name`` with ``md5``."""
        path = self.folder / name
        if path.is_file() and file_digest(path, "md5") == md5:
            return path
        if self.local is not None:
            try:
                return self.local(name, md5)
            except PipelineError:
                pass   # not on disk: download it
        found = record_holding(self.state.versions, name, md5)
        if found is None:
            raise PipelineError(
                f"{name} ({md5}) is needed but is neither on disk nor in a published version",
                stage=self.stage, hint="the version that wrote it was never published and its "
                "work folder is gone: publish from the machine that built it, or delete the "
                "unpublished version entries from the state and run `version` again")
        record_id, entry = found
        if self.dest is None:
            raise PipelineError(
                f"{name} must be downloaded from Zenodo record {record_id}, and the manifest has "
                "no destinations.zenodo", stage=self.stage,
                hint="set destinations.zenodo.url to the server the dataset is published on")
        if self._zenodo is None:
            self._zenodo = ZenodoClient.at(self.dest.url, self.dest.token_env,
                                           sleep=self.sleep)
        record = self._record(record_id)
        listed = {f.key: f for f in record.files}
        f = listed.get(name)
        if f is None or f.checksum != md5:
            raise PipelineError(
                f"Zenodo record {record_id} does not hold {name} as the state lists it",
                stage=self.stage, url=f"{self.dest.url}/api/records/{record_id}",
                expected=md5, got=f.checksum if f else "no such file",
                hint="the state and Zenodo disagree: restore the state file from git")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._download(f.url, path, name, md5, int(entry["sizes"][name]), record_id)
        sha = entry.get("files", {}).get(name)
        if sha and file_digest(path) != sha:
            path.unlink(missing_ok=True)
            raise ChecksumError(f"{name} from Zenodo record {record_id} fails its sha256 check",
                                stage=self.stage, expected=sha, got="a different sha256",
                                hint="the file was deleted; run the command again")
        return path

    def _record(self, record_id: str) -> Any:
        """The published record, read through the one Zenodo client (checked shape and id)."""
        if record_id not in self._records:
            assert self._zenodo is not None
            self._records[record_id] = self._zenodo.record(
                record_id, stage=self.stage, hint="check destinations.zenodo.url")[0]
        return self._records[record_id]

    def _download(self, url: str, path: Path, name: str, md5: str, size: int,
                  record_id: str) -> None:
        """The one verified download (:func:`pipeline.fetch.fetch`: streamed within a deadline
        from its size, md5 and size checked, a broken transfer resumed), then moved to ``path``."""
        assert self._zenodo is not None
        source = Download(key=name, url=url, md5=md5, size=size, origin="zenodo")
        got = fetch(self._zenodo.http, source, self.folder / ".cache", record=record_id,
                    max_bytes=max(size, 1), retries=3)
        os.replace(got.path, path)
        self.bytes_downloaded += got.size
        self.files_downloaded += 1
        log.info("%s: fetched %s (%d bytes) from Zenodo record %s, verified", self.stage, name,
                 got.size, record_id)
