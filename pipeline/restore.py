"""Rebuild a lost dataset version folder from the Zenodo record it was published as (SPEC 7).

Why: ``version`` needs the previous version's folder, to hard-link the parts that carry over
unchanged and to read the records out of parts it compacts. In GitHub Actions nothing of the
work folder survives between scheduled runs except what the Actions cache gives back, and a
cache entry is evicted after seven days unused or when the repository's caches pass 10 GB
(GitHub's documented policy, 2025); only the committed state file is certain to be there. The
state knows every file of every version (name, size, sha256, md5) and the Zenodo record each
was published as, and a published Zenodo record is immutable, so the folder can be downloaded
again and proven byte-identical to what was built.

How (after fatiando/pooch): download into ``versions/.tmp-restore-<version>/``, each file's md5
checked as it streams against both the record and the state; then every file is checked against
``SHA256SUMS`` and the state's sha256, as ``sha256sum -c`` would, reading what is on disk; only
then is the folder renamed into place. A failed or killed restore leaves at most the temporary
folder, which the next restore (and ``version``'s orphan cleanup) removes.

Why only Zenodo: the ``kaggle`` client never uploads ``datapackage.json`` or
``dataset-metadata.json`` (it reads them as metadata, KAGGLE_PROTOCOL.md §3.1), so no Kaggle
version holds a whole folder. A published record needs no token (one is sent when set, for a
server that asks for it); a version that was never published exists only where it was built.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import ChecksumError, PipelineError, ServiceError
from pipeline.fetch import DownloadLimits
from pipeline.fsutil import file_digest
from pipeline.http import HttpClient, Sleep, iter_body
from pipeline.manifest import ZenodoDestination
from pipeline.publish.zenodo import diff_files
from pipeline.records import RecordFile
from pipeline.state import State
from pipeline.zenodo import ZenodoClient

STAGE = "version"
SUMS = "SHA256SUMS"
log = logging.getLogger(__name__)


# -- pure decisions -------------------------------------------------------------------------

def published_record(entry: Mapping[str, Any]) -> str | None:
    """The id of the Zenodo record version ``entry`` was published as, or None."""
    zenodo = (entry.get("published") or {}).get("zenodo") or {}
    record_id = zenodo.get("record_id")
    return str(record_id) if record_id else None


def expected_listing(entry: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """``{name: (size, "md5:..")}`` of the version's files, as the state recorded them."""
    return {name: (int(entry["sizes"][name]), md5) for name, md5 in entry["md5"].items()}


def parse_sums(text: str) -> dict[str, str]:
    """``{name: "sha256:<hex>"}`` from ``sha256sum`` lines (``<hex>  name`` or ``<hex> *name``)."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            digest, _, name = line.partition(" ")
            sums[name[1:] if name[:1] in (" ", "*") else name] = f"sha256:{digest.lower()}"
    return sums


def sums_problems(sums: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    """Differences between a ``SHA256SUMS`` listing and ``{name: "sha256:.."}`` (the state's
    files other than ``SHA256SUMS`` itself, which it cannot list)."""
    out = [f"{SUMS} lacks {n}" for n in sorted(set(expected) - set(sums))]
    out += [f"{SUMS} lists {n}, which the version does not hold"
            for n in sorted(set(sums) - set(expected))]
    out += [f"{n}: {SUMS} says {sums[n]}, the state {expected[n]}"
            for n in sorted(set(sums) & set(expected)) if sums[n] != expected[n]]
    return out


# -- I/O ------------------------------------------------------------------------------------

def restore_missing_version(state: State, workdir: str | os.PathLike[str],
                            dest: ZenodoDestination | None, *, sleep: Sleep = time.sleep
                            ) -> Path | None:
    """Restore the newest version's folder if it is missing; return it, or None if it was there.

    Only a *missing* folder is restored: one that exists but differs from the state is a
    different problem, which ``version`` reports rather than overwriting someone's files.
    """
    entry = state.latest_version
    if entry is None or (Path(workdir) / entry["folder"]).is_dir():
        return None
    return restore_version(entry, workdir, dest, sleep=sleep)


def restore_version(entry: Mapping[str, Any], workdir: str | os.PathLike[str],
                    dest: ZenodoDestination | None, *, sleep: Sleep = time.sleep) -> Path:
    """Download version ``entry`` (a ``state.versions`` item) from its Zenodo record into
    ``<workdir>/<entry["folder"]>``, verified; raise :class:`PipelineError` if it cannot be."""
    version = entry["version"]
    final = Path(workdir) / entry["folder"]
    record_id = published_record(entry)
    if record_id is None:
        raise PipelineError(
            f"the folder of version {version} ({final}) is missing, and version {version} was "
            "never published to Zenodo, so it cannot be downloaded", stage=STAGE,
            hint="restore the folder from a copy of the work folder that holds it (in GitHub "
            "Actions, the versions cache of the run that built it); only published versions can "
            "be rebuilt from Zenodo")
    if dest is None:
        raise PipelineError(
            f"the folder of version {version} ({final}) is missing, and the manifest has no "
            f"destinations.zenodo to download it from (record {record_id})", stage=STAGE,
            hint="set destinations.zenodo.url to the server version "
            f"{version} was published to, or restore the folder from a copy of the work folder")
    url = f"{dest.url.rstrip('/')}/api/records/{record_id}"
    zenodo = ZenodoClient.at(dest.url, dest.token_env, sleep=sleep)
    http = zenodo.http
    tmp = final.parent / f".tmp-restore-{version}"
    shutil.rmtree(tmp, ignore_errors=True)   # a killed restore's leftovers
    tmp.mkdir(parents=True)
    try:
        files = _record_files(zenodo, record_id, entry, url)
        for f in files:
            _download(http, f, tmp, entry, record_id)
        _check_sums(tmp, entry, url)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        log.info("version: restored %s from Zenodo record %s (%d files, %d bytes, verified)",
                 final, record_id, len(files), sum(f.size for f in files))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        http.close()
    return final


def _record_files(zenodo: ZenodoClient, record_id: str, entry: Mapping[str, Any], url: str
                  ) -> list[RecordFile]:
    """The record's files, checked against the state's before a byte is downloaded."""
    record, _ = zenodo.record(record_id, stage=STAGE,
                              hint=f"the state says version {entry['version']} was published "
                              f"as record {record_id}; check destinations.zenodo.url")
    problems = [] if record.version == entry["version"] else [
        f"version: expected {entry['version']}, got {record.version or 'none'}"]
    problems += diff_files(expected_listing(entry),
                           {f.key: (f.size, f.checksum) for f in record.files})
    if problems:
        raise PipelineError(
            f"Zenodo record {record_id} does not hold version {entry['version']} as the state "
            "recorded it: " + "; ".join(problems[:5]), stage=STAGE, url=url,
            hint="nothing was downloaded; the state's versions and destinations.zenodo disagree "
            "with Zenodo: restore the state file from git, or the folder from a copy of the "
            "work folder")
    return sorted(record.files, key=lambda f: f.key)


def _download(http: HttpClient, f: RecordFile, folder: Path, entry: Mapping[str, Any],
              record_id: str) -> None:
    """Stream one file into ``folder``, hashing as it goes (a part can be 2 GiB: one pass)."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    path = folder / f.key
    deadline = time.monotonic() + DownloadLimits().deadline(f.size)
    try:
        response = http.request("GET", f.url, stage=STAGE, stream=True,
                                hint=f"record {record_id} lists {f.key}; run `version` again")
        with response, open(path, "wb") as out:
            for block in iter_body(response, stage=STAGE, record=None, deadline=deadline,
                                   what=f"the download of {f.key} from record {record_id}"):
                md5.update(block)
                size += len(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except ServiceError as exc:
        exc.hint = "nothing was put in place; run `version` again"
        raise
    got, want = f"md5:{md5.hexdigest()}", entry["md5"][f.key]
    if (size, got) != (f.size, f.checksum) or got != want:
        raise ChecksumError(
            f"{f.key} downloaded from Zenodo record {record_id} does not match the record and "
            f"the state of version {entry['version']}", stage=STAGE, url=f.url,
            expected=f"{f.size} bytes {want}", got=f"{size} bytes {got}",
            hint="the bad bytes were deleted and nothing was put in place; run `version` again, "
            "and if it persists report it to Zenodo")


def _check_sums(folder: Path, entry: Mapping[str, Any], url: str) -> None:
    """``sha256sum -c SHA256SUMS`` on what is on disk, and every sha256 equal to the state's."""
    files: Mapping[str, str] = entry["files"]
    problems = sums_problems(parse_sums((folder / SUMS).read_text(encoding="utf-8")),
                             {n: d for n, d in files.items() if n != SUMS})
    on_disk = {n: file_digest(folder / n) for n in files}
    problems += [f"{n}: expected {files[n]}, got {on_disk[n]}" for n in sorted(files)
                 if on_disk[n] != files[n]]
    if problems:
        raise ChecksumError(
            f"the files of version {entry['version']} downloaded from Zenodo fail their sha256 "
            "check: " + "; ".join(problems[:5]), stage=STAGE, url=url,
            hint="the downloaded files were deleted and nothing was put in place; run `version` "
            "again")
