"""Safe reading of source archives (zip, tar, tar.gz, tar.bz2, tar.xz) without extracting them.

Why read in place: the 2018 scripts ran ``tar -xzf`` and ``ZipFile.extractall`` into temporary
folders (ZENODO_ML_2018.md, "Download"), trusting whatever a record's archive contained. An archive
is untrusted input (SPEC section 10): it may hold absolute paths, ``..`` components, links or
devices pointing outside the tree, millions of members, or a compression bomb. Here members are
read straight from the archive into memory, one at a time, so nothing is ever written to disk and
a hostile archive can only fail its own record (:class:`~pipeline.errors.ArchiveError`).

What is checked, and when:

* **format** by magic bytes, never by file name (Zenodo file keys and GitHub URLs lie);
* **paths**: normalised to a relative POSIX path; absolute paths (``/x``, ``C:x``) and ``..``
  components are rejected. Zip names written with backslashes (broken Windows tools; the zip spec
  mandates ``/``) are read with ``\\`` as a separator, so ``..\\x`` is rejected too;
* **links**: a symlink or hardlink whose target leaves the tree is rejected; one that stays inside
  is reported with a skip reason and never followed (the 2018 scripts followed file symlinks, one
  of the deviations this project keeps even in ``zenodo-ml-2018`` mode);
* **devices, fifos, sockets**: rejected;
* **member count**: zip's central directory is walked *before* :mod:`zipfile` parses it (zipfile
  trusts the directory size, not the entry count, and would build one object per entry); tar is
  counted while streaming;
* **path length and header payloads**: a member path may have at most ``MAX_PATH_BYTES`` (4096)
  bytes in UTF-8. Zip name lengths are read from the central directory before :mod:`zipfile`
  reads a name, and the directory itself may hold at most ``MAX_ZIP_DIRECTORY_BYTES``. A tar's
  GNU long-name/long-link payload is refused above ``MAX_PATH_BYTES`` and a pax header above
  ``MAX_PAX_HEADER_BYTES`` (1 MiB, also the total of all global pax headers) *before*
  :mod:`tarfile` reads it whole (a 2 MB tar.gz can otherwise declare a 300 MB name). Tar names
  that are not UTF-8 are decoded with U+FFFD for the bad bytes, and ``\\`` is a separator in
  every archive, so ``..\\x`` is traversal too;
* **uncompressed bytes and compression ratio**: zip's declared sizes are checked up front (zipfile
  never returns more than a member's declared size), tar streams are metered while they are
  decompressed, so a bomb stops after at most ``max_compression_ratio * compressed +
  ratio_floor_bytes`` bytes, not after filling the disk or memory;
* **corruption**: CRC and stream errors, and a tar that ends without its end-of-archive block
  (tarfile silently accepts that, so a truncated download would look complete). Only errors of
  the archive formats count as corruption (:func:`is_format_error`): a local disk error or a bug
  of ours is not blamed on the record's archive.

Tar archives are read as a forward-only stream (``mode="r|"``), so a :class:`Member` can only be
read before the iterator moves on, exactly like :mod:`tarfile`'s own stream mode.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import io
import lzma
import posixpath
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, cast

from pipeline.errors import ArchiveError, LocalError
from pipeline.manifest import Processing

Format = Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"]
Kind = Literal["file", "symlink", "hardlink", "duplicate", "other"]

_STAGE = "extract"
_BLOCK = 1 << 16
_MAX_LINK_TARGET = 4096
MAX_PATH_BYTES = 4096
MAX_PAX_HEADER_BYTES = 1024**2
MAX_ZIP_DIRECTORY_BYTES = 64 * 1024**2  # zipfile holds it, and a ZipInfo per entry, in memory
# Errors the standard library raises for corrupt or truncated data, translated at this boundary.
# NotImplementedError is what zipfile raises for a compression method it does not support;
# UnicodeDecodeError a zip name flagged UTF-8 that is not.
_FORMAT_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError,
                  struct.error, NotImplementedError, UnicodeDecodeError)
_CORRUPT = (*_FORMAT_ERRORS, OSError, ValueError)  # caught, then sorted by is_format_error


def is_format_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the archive's bytes are bad (the record's fault), not our machine.

    gzip and bz2 raise plain ``OSError`` without an errno for bad data ("Not a gzipped file",
    "Invalid data stream"); a seek to a garbage offset is ``EINVAL``. An ``OSError`` with any
    other errno (EIO, EACCES, ENOSPC, ...) is the local disk, and a ``ValueError`` is only the
    format's when the archive modules themselves raised it.
    """
    if isinstance(exc, _FORMAT_ERRORS):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (None, errno.EINVAL)
    if isinstance(exc, ValueError):
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        origin = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
        return origin in ("zipfile", "tarfile", "gzip", "bz2", "lzma", "_compression",
                          "zipfile._path")
    return False


class _HeaderTooLarge(Exception):
    """Raised inside :mod:`tarfile` parsing; becomes an :class:`ArchiveError` in _iter_tar."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(what)
        self.what, self.size, self.limit = what, size, limit


def _too_many_members(kind: str, limits: ArchiveLimits, record: str | None) -> ArchiveError:
    return ArchiveError(f"{kind} has too many members", stage=_STAGE, record=record,
                        expected=f"<= {limits.max_members} members",
                        got=f"more than {limits.max_members}",
                        hint="raise processing.max_members if the archive is genuine")


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may cost before its record is failed (manifest ``processing.max_*``).

    ``ratio_floor_bytes`` keeps honest highly compressible files (a few MiB of zeros in a test
    fixture) from tripping the ratio limit: a ratio is only judged once more than that many bytes
    came out of the stream or member.
    """

    max_members: int = 200_000
    max_uncompressed_bytes: int = 8 * 1024**3
    max_compression_ratio: float = 200.0
    ratio_floor_bytes: int = 4 * 1024**2

    @classmethod
    def from_processing(cls, processing: Processing) -> ArchiveLimits:
        return cls(max_members=processing.max_members,
                   max_uncompressed_bytes=processing.max_uncompressed_bytes,
                   max_compression_ratio=processing.max_compression_ratio)

    def ratio_exceeded(self, produced: int, consumed: int) -> bool:
        return (produced > self.ratio_floor_bytes
                and produced > self.max_compression_ratio * max(consumed, 1))


@dataclass(eq=False)
class Member:
    """One non-directory entry of an archive.

    ``kind == "file"`` and ``skip_reason is None``: a regular file whose bytes :meth:`read` returns.
    Otherwise the entry cannot be read (a link inside the tree, a duplicate path, an encrypted or
    unsupported zip member) and ``skip_reason`` says why; callers record it and move on.
    """

    path: str
    size: int
    kind: Kind
    skip_reason: str | None = None
    link_target: str | None = None
    _reader: Callable[[int | None], bytes] | None = field(default=None, repr=False)
    _live: list[bool] = field(default_factory=lambda: [True], repr=False)

    def read(self, limit: int | None = None) -> bytes:
        """The member's bytes, at most ``limit`` of them (all when ``None``).

        Reading ``limit = max_file_bytes + 1`` is how a caller learns a file is too large without
        decompressing all of it. Must be called before the iterator that yielded this member
        advances (tar archives are streamed).
        """
        if self._reader is None:
            raise ArchiveError(f"member {self.path!r} has no readable content ({self.skip_reason})",
                               stage=_STAGE)
        if not self._live[0]:
            raise ArchiveError(f"member {self.path!r} was read after the archive iterator moved "
                               f"on", stage=_STAGE, hint="read each member inside the loop")
        return self._reader(limit)


@dataclass(frozen=True)
class TreeEntry:
    """A row of an archive's file tree (the metadata of SPEC section 6)."""

    path: str
    size: int
    kind: Kind = "file"


def detect_format(path: str | Path) -> Format | None:
    """The archive format of ``path`` from its magic bytes, or ``None`` if it is not one we read."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[:3] == b"BZh":
        return "tar.bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "tar.xz"
    if _looks_like_tar(head) or _empty_tar(path, head):
        return "tar"
    return None


def _empty_tar(path: str | Path, head: bytes) -> bool:
    """A valid tar with no members: only zero blocks (at least the two end-of-archive ones)."""
    size = Path(path).stat().st_size
    if len(head) < 512 or head.count(0) != len(head) or size < 1024 or size % 512:
        return False
    with open(path, "rb") as fh:
        return all(block.count(0) == len(block) for block in iter(lambda: fh.read(_BLOCK), b""))


def _looks_like_tar(block: bytes) -> bool:
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    try:  # pre-POSIX (v7) headers have no magic: trust a valid header checksum
        stored = int(block[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:512])


def safe_member_path(name: str, *, record: str | None = None) -> str:
    """``name`` as a normalised relative POSIX path; raise :class:`ArchiveError` if it escapes.

    ``./a//b/`` becomes ``a/b``; ``/etc/passwd``, ``C:/x`` and any ``..`` component are hostile.
    Returns ``""`` for the archive root (``./``), which callers skip. ``\\`` is a separator
    (broken Windows tools), bytes that were not UTF-8 become U+FFFD, and a path longer than
    ``MAX_PATH_BYTES`` is refused.
    """
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\\", "/")
    if len(name.encode("utf-8")) > MAX_PATH_BYTES:
        raise ArchiveError(f"member path of {len(name.encode('utf-8'))} bytes "
                           f"({name[:60]!r}...)", stage=_STAGE, record=record,
                           expected=f"<= {MAX_PATH_BYTES} bytes",
                           got=f"{len(name.encode('utf-8'))} bytes",
                           hint="the archive is hostile or broken; the record was not processed")
    if "\0" in name:
        raise ArchiveError(f"member {name!r}: NUL byte in the path", stage=_STAGE, record=record)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise ArchiveError(f"member {name!r}: absolute path", stage=_STAGE, record=record,
                           expected="a path relative to the archive root", got=name,
                           hint="the archive is hostile or broken; the record was not processed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member {name!r}: '..' component (path traversal)", stage=_STAGE,
                           record=record, expected="no '..' in member paths", got=name,
                           hint="the archive is hostile or broken; the record was not processed")
    return "/".join(parts)


def _link_inside(member_path: str, target: str, *, hard: bool) -> bool:
    """Whether a link at ``member_path`` pointing to ``target`` stays inside the archive tree."""
    if not target or target.startswith("/") or "\0" in target:
        return False
    base = "" if hard else posixpath.dirname(member_path)  # hardlinks name archive paths
    resolved = posixpath.normpath(posixpath.join("/root", base, target))
    return resolved == "/root" or resolved.startswith("/root/")


def iter_members(path: str | Path, *, limits: ArchiveLimits,
                 record: str | None = None, name: str | None = None) -> Iterator[Member]:
    """Yield every non-directory entry of the archive at ``path``, safely, in archive order.

    Raises :class:`ArchiveError` (naming the member and the reason) for hostile entries, limits
    exceeded and corrupt or truncated data. Each path is yielded once: a later duplicate of a path
    comes back with a skip reason (the first copy is the one converted). ``name`` (the archive's
    key in its record) is what messages call the archive; the cache file's name means nothing
    to a reader.
    """
    name = name or Path(path).name
    fmt = _format_or_fail(path, record, name)
    seen: set[str] = set()
    inner = _iter_zip(path, limits, record) if fmt == "zip" else _iter_tar(
        path, fmt, limits, record)
    try:
        for member in inner:
            if member.path in seen:
                member = Member(member.path, member.size, "duplicate",
                                skip_reason="duplicate path (the first copy is used)")
            seen.add(member.path)
            yield member
            member._live[0] = False
    except _HeaderTooLarge as exc:
        raise ArchiveError(f"{fmt} archive {name}: {exc.what} of {exc.size} bytes",
                           stage=_STAGE, record=record, expected=f"<= {exc.limit} bytes",
                           got=f"{exc.size} bytes", hint="the archive is hostile or broken; "
                           "the record was not processed") from exc
    except _CORRUPT as exc:
        if not is_format_error(exc):
            if isinstance(exc, OSError):
                raise _local_error(exc, name, record) from exc
            raise
        raise ArchiveError(f"corrupt or truncated {fmt} archive {name}: "
                           f"{type(exc).__name__}: {_short(str(exc))}", stage=_STAGE,
                           record=record, hint="the download may be incomplete; it is retried "
                           "on a later run") from exc


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def list_tree(path: str | Path, *, limits: ArchiveLimits,
              record: str | None = None) -> list[TreeEntry]:
    """The archive's file tree (path, size, kind) without reading file contents."""
    return [TreeEntry(m.path, m.size, m.kind) for m in iter_members(path, limits=limits,
                                                                       record=record)
            if m.kind != "duplicate"]


def _local_error(exc: OSError, name: str, record: str | None) -> LocalError:
    """An ``OSError`` of our own disk while reading an archive: not the archive's fault."""
    return LocalError(f"cannot read the downloaded archive {name}: {exc.strerror or exc}",
                      stage=_STAGE, record=record, hint="a problem of this machine's disk or "
                      "work folder, not of the record (it does not count as an attempt); fix it "
                      "and run again")


def _format_or_fail(path: str | Path, record: str | None, name: str) -> Format:
    try:
        fmt = detect_format(path)
    except OSError as exc:
        raise _local_error(exc, name, record) from exc
    if fmt is None:
        raise ArchiveError(f"{name} is not a zip or tar archive", stage=_STAGE,
                           record=record, expected="zip, tar, tar.gz, tar.bz2 or tar.xz magic "
                           "bytes", got="unrecognised content",
                           hint="only archives are converted; check the record's files")
    return fmt


# --- zip --------------------------------------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_HEADER_SIZE = 46
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def _zip_directory(fp: IO[bytes], size: int, record: str | None) -> tuple[int, int]:
    """``(start, length)`` of the central directory, located as :mod:`zipfile` locates it."""
    tail_len = min(size, _EOCD.size + 65535)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise ArchiveError("zip has no end-of-central-directory record (truncated download?)",
                           stage=_STAGE, record=record)
    eocd_pos = size - tail_len + at
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(tail, at)
    end = eocd_pos
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:  # zip64: the real numbers are further back
        fp.seek(max(eocd_pos - _EOCD64_LOCATOR.size - _EOCD64.size, 0))
        raw = fp.read(_EOCD64.size + _EOCD64_LOCATOR.size)
        if (len(raw) == _EOCD64.size + _EOCD64_LOCATOR.size and raw[:4] == b"PK\x06\x06"
                and raw[_EOCD64.size:_EOCD64.size + 4] == b"PK\x06\x07"):
            cd_size = _EOCD64.unpack_from(raw)[8]
            end = eocd_pos - _EOCD64_LOCATOR.size - _EOCD64.size
    start = end - cd_size
    if start < 0:
        raise ArchiveError("zip central directory lies outside the file (truncated download?)",
                           stage=_STAGE, record=record, expected=f"<= {end} bytes",
                           got=f"{cd_size} bytes")
    return start, cd_size


def _count_zip_entries(fp: IO[bytes], size: int, limits: ArchiveLimits,
                       record: str | None) -> int:
    """Walk the central directory headers (no objects built) and enforce ``max_members``."""
    start, length = _zip_directory(fp, size, record)
    if length > MAX_ZIP_DIRECTORY_BYTES:
        raise ArchiveError("zip central directory is too large", stage=_STAGE, record=record,
                           expected=f"<= {MAX_ZIP_DIRECTORY_BYTES} bytes", got=f"{length} bytes",
                           hint="the archive is hostile or broken; the record was not processed")
    fp.seek(start)
    count = pos = 0
    while pos < length:
        header = fp.read(_CENTRAL_HEADER_SIZE)
        if len(header) < _CENTRAL_HEADER_SIZE or header[:4] != b"PK\x01\x02":
            raise ArchiveError(f"zip central directory is corrupt at entry {count + 1}",
                               stage=_STAGE, record=record)
        name_len, extra_len, comment_len = struct.unpack_from("<3H", header, 28)
        if name_len > MAX_PATH_BYTES:
            raise ArchiveError(f"zip entry {count + 1} has a name of {name_len} bytes",
                               stage=_STAGE, record=record, expected=f"<= {MAX_PATH_BYTES} bytes",
                               got=f"{name_len} bytes", hint="the archive is hostile or broken; "
                               "the record was not processed")
        skip = name_len + extra_len + comment_len
        fp.seek(skip, io.SEEK_CUR)
        pos += _CENTRAL_HEADER_SIZE + skip
        count += 1
        if count > limits.max_members:
            raise _too_many_members("zip", limits, record)
    return count


def _iter_zip(path: str | Path, limits: ArchiveLimits, record: str | None) -> Iterator[Member]:
    archive_size = Path(path).stat().st_size
    with open(path, "rb") as fp:
        _count_zip_entries(fp, archive_size, limits, record)
        fp.seek(0)
        with zipfile.ZipFile(fp) as zf:
            infos = zf.infolist()
            _check_zip_sizes(infos, archive_size, limits, record)
            for info in infos:
                if info.is_dir():
                    safe_member_path(info.filename, record=record)
                    continue
                yield _zip_member(zf, info, record)


def _check_zip_sizes(infos: list[zipfile.ZipInfo], archive_size: int, limits: ArchiveLimits,
                     record: str | None) -> None:
    total = 0
    for info in infos:
        total += info.file_size
        if limits.ratio_exceeded(info.file_size, info.compress_size):
            raise ArchiveError(
                f"member {info.filename!r}: compression ratio "
                f"{info.file_size / max(info.compress_size, 1):.0f}:1 (compression bomb?)",
                stage=_STAGE, record=record, expected=f"<= {limits.max_compression_ratio:g}:1",
                got=f"{info.file_size} bytes from {info.compress_size}",
                hint="raise processing.max_compression_ratio if the archive is genuine")
    if total > limits.max_uncompressed_bytes:
        raise ArchiveError("zip would expand beyond the uncompressed size limit", stage=_STAGE,
                           record=record, expected=f"<= {limits.max_uncompressed_bytes} bytes",
                           got=f"{total} bytes declared",
                           hint="raise processing.max_uncompressed_bytes if it is genuine")
    if sum(info.compress_size for info in infos) > archive_size:
        raise ArchiveError("zip entries overlap (their compressed sizes add up to more than the "
                           "file: an overlapping-entry bomb)", stage=_STAGE, record=record,
                           expected=f"<= {archive_size} compressed bytes in all",
                           got=f"{sum(info.compress_size for info in infos)}",
                           hint="the archive is hostile; the record was not processed")
    if limits.ratio_exceeded(total, archive_size):
        raise ArchiveError(f"zip expands {total / max(archive_size, 1):.0f}:1 overall",
                           stage=_STAGE, record=record,
                           expected=f"<= {limits.max_compression_ratio:g}:1",
                           got=f"{total} bytes from {archive_size}",
                           hint="raise processing.max_compression_ratio if the archive is "
                           "genuine")


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, record: str | None) -> Member:
    name = safe_member_path(info.filename, record=record)
    mode = info.external_attr >> 16 if info.create_system == 3 else 0  # 3: made on Unix

    def reader(limit: int | None) -> bytes:
        try:
            with zf.open(info) as fh:
                return fh.read() if limit is None else fh.read(limit)
        except _CORRUPT as exc:
            if not is_format_error(exc):
                raise
            raise ArchiveError(f"member {name!r} cannot be read: {type(exc).__name__}: {exc}",
                               stage=_STAGE, record=record) from exc

    if stat.S_ISLNK(mode):
        target = reader(_MAX_LINK_TARGET).decode("utf-8", "replace")
        return _link_member(name, target, info.file_size, hard=False, record=record)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise _special_member(name, record)
    if info.flag_bits & 0x1:
        return Member(name, info.file_size, "file", skip_reason="encrypted zip member")
    if info.compress_type not in _ZIP_METHODS:
        return Member(name, info.file_size, "file",
                      skip_reason=f"unsupported zip compression method {info.compress_type}")
    return Member(name, info.file_size, "file", _reader=reader)


def _link_member(name: str, target: str, size: int, *, hard: bool,
                 record: str | None) -> Member:
    kind: Kind = "hardlink" if hard else "symlink"
    if not _link_inside(name, target, hard=hard):
        raise ArchiveError(f"member {name!r}: {kind} to {target!r} points outside the archive",
                           stage=_STAGE, record=record, expected="links that stay in the tree",
                           got=target, hint="the archive is hostile; the record was not processed")
    return Member(name, size, kind, skip_reason=f"{kind} to {target!r} (links are not followed)",
                  link_target=target)


def _special_member(name: str, record: str | None) -> ArchiveError:
    return ArchiveError(f"member {name!r}: device, fifo or socket entry", stage=_STAGE,
                        record=record, expected="regular files, directories and links",
                        got="a special file", hint="the archive is hostile; the record was not "
                                                   "processed")


# --- tar --------------------------------------------------------------------------------------

class _MeteredStream:
    """Counts bytes read through a file object; the decompressed side enforces the limits."""

    def __init__(self, inner: IO[bytes], limits: ArchiveLimits | None = None,
                 source: _MeteredStream | None = None, record: str | None = None) -> None:
        self._inner = inner
        self._limits = limits
        self._source = source  # the compressed side, for ratios
        self._record = record
        self.count = 0
        self.member_start = (0, 0)  # (count, source count) when the current member began

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self.count += len(data)
        if self._limits is not None:
            self._check()
        return data

    def _check(self) -> None:
        limits = self._limits
        assert limits is not None
        consumed = self._source.count if self._source is not None else self.count
        if self.count > limits.max_uncompressed_bytes:
            raise ArchiveError("archive expands beyond the uncompressed size limit",
                               stage=_STAGE, record=self._record,
                               expected=f"<= {limits.max_uncompressed_bytes} bytes",
                               got=f"more than {limits.max_uncompressed_bytes}",
                               hint="raise processing.max_uncompressed_bytes if it is genuine")
        member_out = self.count - self.member_start[0]
        member_in = consumed - self.member_start[1]
        if limits.ratio_exceeded(self.count, consumed) or limits.ratio_exceeded(member_out,
                                                                               member_in):
            raise ArchiveError(f"compression ratio above {limits.max_compression_ratio:g}:1 "
                               f"while decompressing (compression bomb?)", stage=_STAGE,
                               record=self._record,
                               expected=f"<= {limits.max_compression_ratio:g}:1",
                               got=f"{self.count} bytes from {consumed}",
                               hint="raise processing.max_compression_ratio if it is genuine")

    def mark_member(self) -> None:
        self.member_start = (self.count, self._source.count if self._source else self.count)


class _CheckedTarInfo(tarfile.TarInfo):
    """Remembers why tarfile stopped: it treats a truncated or garbled header as a clean end."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> _CheckedTarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]  # all-zero: the proper end
            raise
        except tarfile.HeaderError as exc:
            setattr(tarfile_, "pipeline_stop_reason", f"{type(exc).__name__}: {exc}")  # noqa: B010
            raise

    # tarfile reads these payloads whole with one read(); refuse absurd sizes before that.
    def _proc_gnulong(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_PATH_BYTES + 1:  # the payload holds the path and a NUL
            raise _HeaderTooLarge("GNU long name/link header", self.size, MAX_PATH_BYTES + 1)
        return super()._proc_gnulong(tarfile_)  # type: ignore[misc]

    def _proc_pax(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_PAX_HEADER_BYTES:
            raise _HeaderTooLarge("pax header", self.size, MAX_PAX_HEADER_BYTES)
        if self.type == tarfile.XGLTYPE:  # global headers accumulate for the whole archive
            total = getattr(tarfile_, "pipeline_global_pax", 0) + self.size
            tarfile_.pipeline_global_pax = total  # type: ignore[attr-defined]
            if total > MAX_PAX_HEADER_BYTES:
                raise _HeaderTooLarge("pax global headers", total, MAX_PAX_HEADER_BYTES)
        return super()._proc_pax(tarfile_)  # type: ignore[misc]


def _iter_tar(path: str | Path, fmt: Format, limits: ArchiveLimits,
              record: str | None) -> Iterator[Member]:
    with open(path, "rb") as fh, contextlib.ExitStack() as stack:
        raw = _MeteredStream(fh)
        file_raw = cast(IO[bytes], raw)  # a read-only file object, as the type checker sees it
        decompressed: IO[bytes] = file_raw  # plain tar: the metered file itself
        if fmt == "tar.gz":
            decompressed = stack.enter_context(
                cast(IO[bytes], gzip.GzipFile(fileobj=file_raw, mode="rb")))
        elif fmt == "tar.bz2":
            decompressed = stack.enter_context(bz2.BZ2File(file_raw, mode="rb"))
        elif fmt == "tar.xz":
            decompressed = stack.enter_context(lzma.LZMAFile(file_raw, mode="rb"))
        stream = _MeteredStream(decompressed, limits, raw, record)
        tf = stack.enter_context(tarfile.open(
            fileobj=cast(IO[bytes], stream), mode="r|", bufsize=_BLOCK, tarinfo=_CheckedTarInfo))
        count = 0
        while (info := tf.next()) is not None:
            tf.members.clear()  # type: ignore[attr-defined]  # stream mode keeps every TarInfo
            count += 1
            if count > limits.max_members:
                raise _too_many_members("tar", limits, record)
            member = _tar_member(tf, info, stream, limits, record)
            if member is not None:
                stream.mark_member()
                yield member
        stop = getattr(tf, "pipeline_stop_reason", None)
        if stop is not None:
            raise ArchiveError(f"tar ends without its end-of-archive block ({stop})",
                               stage=_STAGE, record=record, hint="the download is truncated or "
                               "corrupt; it is retried on a later run")
        while stream.read(_BLOCK):  # verify the compressed stream's trailer (CRC, length)
            pass


def _tar_member(tf: tarfile.TarFile, info: tarfile.TarInfo, stream: _MeteredStream,
                limits: ArchiveLimits, record: str | None) -> Member | None:
    name = safe_member_path(info.name, record=record)
    if info.isdir() or not name:
        return None
    if info.issym() or info.islnk():
        target = info.linkname.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return _link_member(name, target, info.size, hard=info.islnk(), record=record)
    if info.ischr() or info.isblk() or info.isfifo():
        raise _special_member(name, record)
    if not info.isreg():
        return Member(name, info.size, "other",
                      skip_reason=f"unsupported tar member type {info.type!r}")
    if stream.count + info.size > limits.max_uncompressed_bytes:
        raise ArchiveError(f"member {name!r} would pass the uncompressed size limit",
                           stage=_STAGE, record=record,
                           expected=f"<= {limits.max_uncompressed_bytes} bytes in all",
                           got=f"{stream.count + info.size} bytes",
                           hint="raise processing.max_uncompressed_bytes if it is genuine")

    def reader(limit: int | None) -> bytes:
        try:
            fh = tf.extractfile(info)
            assert fh is not None  # regular files always have a file object
            data = fh.read() if limit is None else fh.read(limit)
        except _CORRUPT as exc:
            if not is_format_error(exc):
                raise
            raise ArchiveError(f"member {name!r} cannot be read: {type(exc).__name__}: {exc}",
                               stage=_STAGE, record=record, hint="the download may be "
                               "incomplete; it is retried on a later run") from exc
        if len(data) < (info.size if limit is None else min(limit, info.size)):
            raise ArchiveError(f"member {name!r} is truncated", stage=_STAGE, record=record,
                               expected=f"{info.size} bytes", got=f"{len(data)} bytes")
        return data

    return Member(name, info.size, "file", _reader=reader)
