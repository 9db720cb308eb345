"""Verified downloads of record archives, with resume, a size limit and a content-addressed cache.

Why this shape (after fatiando/pooch): a small pure function decides what to do with a download
(:func:`download_action`), the caller does the I/O. Bytes stream to ``<name>.part`` in the cache
folder while their md5 is computed; only when the size and Zenodo's md5 match is the file renamed
into place, so a file in the cache is always complete and verified. The cache is keyed by the
md5 Zenodo publishes, so a file already downloaded with the same checksum is never downloaded
again, whichever record or run asks for it.

An interrupted download resumes with ``Range: bytes=N-`` when the server answers 206 (Zenodo's
file endpoint does); a 200 means start again. Records without an archive fall back to the GitHub
release archive of their related identifier (``source.github.archive_url``); those have no
published checksum, so their cache key is the repository and ref, and the sha256 is recorded.

Every download has a total deadline derived from its size (:func:`download_deadline`):
``processing.download_grace_seconds + size / processing.download_min_bytes_per_second``, by
default 60 s plus 16 s per MiB (a 2 GiB archive gets about 9.3 hours); the size is the record's,
else the server's ``Content-Length``, else ``processing.max_download_bytes``. A server that
trickles (one byte a second never trips a read timeout) fails the attempt at the deadline.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ChecksumError, LocalError, PipelineError, ServiceError
from pipeline.fsutil import file_digest, file_digests, safe_join
from pipeline.http import HttpClient, content_length, iter_body
from pipeline.manifest import Processing
from pipeline.records import Record, RecordFile

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
BLOCK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One archive to fetch for a record: a Zenodo file, or the GitHub fallback."""

    key: str            # the Zenodo file key, or "github:<owner>/<repo>@<ref>"
    url: str
    md5: str            # "md5:<hex>", or "" when the source publishes none
    size: int           # expected bytes, 0 when unknown
    origin: Literal["zenodo", "github"]


@dataclass(frozen=True)
class Downloaded:
    source: Source
    path: Path
    sha256: str         # "sha256:<hex>" of the bytes on disk
    size: int
    reused: bool        # True when the cache already held the verified file


def is_archive(key: str) -> bool:
    return key.lower().endswith(ARCHIVE_SUFFIXES)


def sources_for(record: Record, archive_url: str) -> list[Source]:
    """The archives to process for ``record``: every archive file, else the GitHub release."""
    archives = [f for f in record.files if is_archive(f.key)]
    if archives:
        return [_zenodo_source(f) for f in archives]
    if record.github is None:
        return []
    g = record.github
    url = archive_url.format(owner=g.owner, repo=g.repo, ref=g.ref)
    return [Source(key=f"github:{g.owner}/{g.repo}@{g.ref}", url=url, md5="", size=0,
                   origin="github")]


def _zenodo_source(f: RecordFile) -> Source:
    return Source(key=f.key, url=f.url, md5=f.checksum, size=f.size, origin="zenodo")


def cache_path(cache: Path, source: Source) -> Path:
    """Where a verified copy of ``source`` lives: by md5 when known, else by origin and key."""
    if source.md5:  # "md5:<32 hex>", checked by pipeline.records where it came in
        alg, _, digest = source.md5.partition(":")
        return safe_join(cache, alg, digest)
    safe = hashlib.sha256(source.key.encode("utf-8")).hexdigest()[:32]
    return safe_join(cache, "github", safe)


@dataclass(frozen=True)
class DownloadLimits:
    """What one download may cost (manifest ``processing.max_download_bytes``, ``download_*``)."""

    max_bytes: int = 2 * 1024**3
    retries: int = 3
    grace_seconds: float = 60.0
    min_bytes_per_second: int = 65536

    @classmethod
    def from_processing(cls, p: Processing) -> DownloadLimits:
        return cls(p.max_download_bytes, p.download_retries, p.download_grace_seconds,
                   p.download_min_bytes_per_second)

    def deadline(self, size: int) -> float:
        """Seconds one download attempt of ``size`` bytes may take in all: a grace period plus
        the size at the slowest acceptable rate (README "Limits")."""
        return self.grace_seconds + size / self.min_bytes_per_second


def download_action(target: Path) -> Literal["reuse", "resume", "fetch"]:
    """Pure-ish decision from what is on disk: a verified file is reused, a ``.part`` resumed."""
    if target.is_file():
        return "reuse"
    part = target.with_name(target.name + ".part")
    if part.is_file() and part.stat().st_size > 0:
        return "resume"
    return "fetch"


def fetch(http: HttpClient, source: Source, cache: Path, *, record: str, max_bytes: int,
          retries: int = 3, limits: DownloadLimits | None = None) -> Downloaded:
    """Download ``source`` into the cache (or reuse it) and verify its size and md5.

    ``limits`` (default: ``max_bytes`` and ``retries`` with the default deadline) bound it.
    """
    limits = limits or DownloadLimits(max_bytes=max_bytes, retries=retries)
    target = cache_path(cache, source)
    try:
        return _fetch(http, source, target, record=record, limits=limits)
    except OSError as exc:  # network errors are ServiceErrors by now: this is our disk
        raise LocalError(f"cannot keep the download of {source.key} in {target.parent}: "
                         f"{exc.strerror or exc}", stage="fetch", record=record,
                         hint="a problem of this machine's disk or work folder, not of the "
                         "record (it does not count as an attempt); fix it and run again"
                         ) from exc


def _fetch(http: HttpClient, source: Source, target: Path, *, record: str,
           limits: DownloadLimits) -> Downloaded:
    max_bytes, retries = limits.max_bytes, limits.retries
    if download_action(target) == "reuse":
        return Downloaded(source, target, file_digest(target), target.stat().st_size, True)
    if source.size and source.size > max_bytes:
        raise PipelineError(
            f"archive {source.key} is larger than processing.max_download_bytes",
            stage="fetch", record=record, url=source.url, expected=f"<= {max_bytes} bytes",
            got=f"{source.size} bytes", hint="raise the limit in the manifest to process it")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _stream(http, source, part, record=record, limits=limits)
            break
        except ServiceError as exc:
            if (exc.status and exc.status < 500 and exc.status != 429) or attempt == retries:
                exc.hint = exc.hint or "the run can be repeated; the partial file is resumed"
                raise
    size = part.stat().st_size
    digests = file_digests(part, ("md5", "sha256"))
    md5, sha256 = digests["md5"], digests["sha256"]
    if source.size and size != source.size:
        part.unlink()
        raise ChecksumError(f"size of {source.key} differs from the record", stage="fetch",
                            record=record, url=source.url, expected=source.size, got=size,
                            hint="the bad bytes were deleted; the record will be retried")
    if source.md5 and md5 != source.md5:
        part.unlink()
        raise ChecksumError(f"checksum of {source.key} differs from the record", stage="fetch",
                            record=record, url=source.url, expected=source.md5, got=md5,
                            hint="the bad bytes were deleted; the record will be retried")
    os.replace(part, target)
    return Downloaded(source, target, sha256, size, False)


def _stream(http: HttpClient, source: Source, part: Path, *, record: str,
            limits: DownloadLimits) -> None:
    max_bytes = limits.max_bytes
    started = time.monotonic()
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    response = http.request("GET", source.url, stage="fetch", record=record, stream=True,
                            ok=(200, 206), headers=headers,
                            hint="the record's file may have been removed; check the URL")
    with response:
        if response.status_code == 200:
            have = 0  # the server ignored the Range: start again
        length = content_length(response)  # None when absent or garbled: md5 decides
        if length is not None and have + length > max_bytes:
            raise PipelineError(
                f"archive {source.key} is larger than processing.max_download_bytes",
                stage="fetch", record=record, url=source.url, expected=f"<= {max_bytes} bytes",
                got=f"{have + length} bytes",
                hint="raise the limit in the manifest to process it")
        size = source.size or (have + length if length is not None else max_bytes)
        deadline = started + limits.deadline(size - have)
        written = have
        bar = download_bar(source.key, have + length if length else 0, have)
        with open(part, "ab" if have else "wb") as out, bar:
            for block in iter_body(response, stage="fetch", record=record,
                                   what=f"the download of {source.key}", deadline=deadline):
                written += len(block)
                bar.update(len(block))
                if written > max_bytes:
                    out.close()
                    part.unlink()
                    raise PipelineError(
                        f"archive {source.key} exceeded processing.max_download_bytes while "
                        "downloading", stage="fetch", record=record, url=source.url,
                        expected=f"<= {max_bytes} bytes", got=f"> {max_bytes} bytes",
                        hint="raise the limit in the manifest to process it")
                out.write(block)


LONG_DOWNLOAD = 50 * 1024 * 1024  # bytes: below this a download is over before a bar helps


def download_bar(key: str, total: int, have: int) -> Any:
    """A byte progress bar for a long download on a terminal (SPEC §3); a no-op otherwise, or
    with ``-q`` (logging above INFO)."""
    from tqdm import tqdm

    show = (total >= LONG_DOWNLOAD and sys.stderr.isatty()
            and logging.getLogger("pipeline").isEnabledFor(logging.INFO))
    return tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=key[-40:], leave=False, disable=not show, file=sys.stderr)
