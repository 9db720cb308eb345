"""Safe archive reading: real archives, good and hostile, built in the test's temporary folder.

Every hostile case must raise :class:`ArchiveError` with a reason that names it, and nothing may
be written anywhere (reading happens in memory; the ``no_writes`` fixture checks both the
temporary folder and the working directory).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import ArchiveError, LocalError
from pipeline.extract import (
    ArchiveLimits,
    Member,
    detect_format,
    is_format_error,
    iter_members,
    list_tree,
    safe_member_path,
)

LIMITS = ArchiveLimits()
FILES = {"proj/src/main.py": b"print('hello')\n", "proj/README.md": b"# proj\n",
         "proj/empty.txt": b""}


def tar_info(name: str, data: bytes = b"", **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz",
              ) -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def write_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]],
              compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def zip_special(name: str, data: bytes, mode: int) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so the mode bits are honoured
    info.external_attr = mode << 16
    return info, data


def read_all(path: Path, limits: ArchiveLimits = LIMITS) -> dict[str, bytes | str]:
    """Every member: its bytes, or its skip reason."""
    out: dict[str, bytes | str] = {}
    for member in iter_members(path, limits=limits, record="rec-1"):
        out[member.path] = member.read() if member.skip_reason is None else member.skip_reason
    return out


def snapshot(*folders: Path) -> set[str]:
    return {str(p) for folder in folders for p in folder.rglob("*")}


@pytest.fixture
def no_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder to build archives in; after the test nothing else may exist anywhere nearby."""
    archives = tmp_path / "archives"
    archives.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    outside = tmp_path.parent / f"{tmp_path.name}-escaped.txt"
    yield archives
    assert not any(cwd.iterdir()), "reading an archive wrote into the working directory"
    assert snapshot(tmp_path) == snapshot(archives) | {str(archives), str(cwd)}
    assert not outside.exists()
    assert not Path("/tmp/escaped-by-test.txt").exists()


# --- good archives ----------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "fmt"), [("w", "tar"), ("w:gz", "tar.gz"),
                                           ("w:bz2", "tar.bz2"), ("w:xz", "tar.xz")])
def test_tar_formats_read_in_place(no_writes: Path, mode: str, fmt: str) -> None:
    path = write_tar(no_writes / "misleading.zip", [tar_info(n, d) for n, d in FILES.items()],
                     mode)
    assert detect_format(path) == fmt
    assert read_all(path) == FILES


def test_zip_reads_in_place_and_is_detected_by_magic(no_writes: Path) -> None:
    path = write_zip(no_writes / "release.tar.gz", list(FILES.items()))
    assert detect_format(path) == "zip"
    assert read_all(path) == FILES


def test_stored_bzip2_and_lzma_zip_members(no_writes: Path) -> None:
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        path = write_zip(no_writes / f"m{method}.zip", list(FILES.items()), method)
        assert read_all(path) == FILES


def test_paths_are_normalised_and_directories_skipped(no_writes: Path) -> None:
    path = write_tar(no_writes / "a.tgz", [
        tar_info("./proj/", type=tarfile.DIRTYPE), tar_info("./proj//a.py", b"x"),
        tar_info("proj/./b.py", b"y")])
    assert read_all(path) == {"proj/a.py": b"x", "proj/b.py": b"y"}


def test_links_inside_the_tree_are_skipped_with_a_reason(no_writes: Path) -> None:
    tar = write_tar(no_writes / "a.tgz", [
        tar_info("p/a.py", b"x"), tar_info("p/sub/l.py", type=tarfile.SYMTYPE,
                                           linkname="../a.py"),
        tar_info("p/h.py", type=tarfile.LNKTYPE, linkname="p/a.py")])
    got = read_all(tar)
    assert got["p/a.py"] == b"x"
    assert "symlink to '../a.py'" in str(got["p/sub/l.py"])
    assert "hardlink to 'p/a.py'" in str(got["p/h.py"])
    zipped = write_zip(no_writes / "a.zip", [("p/a.py", b"x"),
                                              zip_special("p/l.py", b"a.py", stat.S_IFLNK | 0o777)])
    assert "not followed" in str(read_all(zipped)["p/l.py"])


def test_duplicate_paths_keep_the_first_copy(no_writes: Path) -> None:
    path = write_tar(no_writes / "a.tar", [tar_info("a.py", b"one"), tar_info("a.py", b"two")],
                     "w")
    seen = [(m.kind, m.read() if m.skip_reason is None else m.skip_reason)
            for m in iter_members(path, limits=LIMITS)]
    assert seen == [("file", b"one"), ("duplicate", "duplicate path (the first copy is used)")]
    assert [e.path for e in list_tree(path, limits=LIMITS)] == ["a.py"]


def test_read_limit_and_stream_order(no_writes: Path) -> None:
    path = write_tar(no_writes / "a.tgz", [tar_info("big.txt", b"x" * 5000),
                                           tar_info("b.txt", b"b")])
    members: list[Member] = []
    for member in iter_members(path, limits=LIMITS):
        if member.path == "big.txt":
            assert member.read(101) == b"x" * 101
        members.append(member)
    with pytest.raises(ArchiveError, match="after the archive iterator moved on"):
        members[0].read()


def test_list_tree_gives_paths_sizes_and_kinds(no_writes: Path) -> None:
    path = write_zip(no_writes / "a.zip", [*FILES.items(),
                                           zip_special("proj/l", b"README.md",
                                                       stat.S_IFLNK | 0o777)])
    tree = {(e.path, e.size, e.kind) for e in list_tree(path, limits=LIMITS)}
    assert tree == {("proj/src/main.py", 15, "file"), ("proj/README.md", 7, "file"),
                    ("proj/empty.txt", 0, "file"), ("proj/l", 9, "symlink")}


def test_an_honest_compressible_file_below_the_ratio_floor_is_fine(no_writes: Path) -> None:
    path = write_tar(no_writes / "a.tgz", [tar_info("zeros.bin", bytes(1_000_000))])
    assert read_all(path) == {"zeros.bin": bytes(1_000_000)}


# --- hostile archives -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../escaped.txt", "proj/../../escaped.txt", "a/..", ".."])
def test_tar_path_traversal_is_rejected(no_writes: Path, name: str) -> None:
    path = write_tar(no_writes / "evil.tgz", [tar_info("ok.txt", b"x"), tar_info(name, b"x")])
    with pytest.raises(ArchiveError, match=r"'\.\.' component \(path traversal\)") as info:
        read_all(path)
    assert name in str(info.value) and "record rec-1" in str(info.value)


@pytest.mark.parametrize("name", ["../escaped.txt", "..\\..\\escaped.txt", "a/../../x"])
def test_zip_path_traversal_is_rejected(no_writes: Path, name: str) -> None:
    path = write_zip(no_writes / "evil.zip", [("ok.txt", b"x"), (name, b"x")])
    with pytest.raises(ArchiveError, match="path traversal"):
        read_all(path)


@pytest.mark.parametrize("name", ["/tmp/escaped-by-test.txt", "C:/escaped.txt", "c:escaped"])
def test_absolute_paths_are_rejected(no_writes: Path, name: str) -> None:
    path = write_tar(no_writes / "evil.tar", [tar_info(name, b"x")], "w")
    with pytest.raises(ArchiveError, match="absolute path"):
        read_all(path)
    zipped = write_zip(no_writes / "evil.zip", [("Xabs/x.txt", b"x")])
    # zipfile strips a leading "/" when writing, so patch the name in both headers
    zipped.write_bytes(zipped.read_bytes().replace(b"Xabs/x.txt", b"/abs/x.txt"))
    with pytest.raises(ArchiveError, match="absolute path"):
        read_all(zipped)


@pytest.mark.parametrize("target", ["../../escaped.txt", "/etc/passwd", "a/../../../x"])
def test_tar_symlink_escaping_the_tree_is_rejected(no_writes: Path, target: str) -> None:
    path = write_tar(no_writes / "evil.tgz", [
        tar_info("proj/link", type=tarfile.SYMTYPE, linkname=target)])
    with pytest.raises(ArchiveError, match=r"symlink to .* points outside the archive"):
        read_all(path)


def test_tar_hardlink_escaping_the_tree_is_rejected(no_writes: Path) -> None:
    path = write_tar(no_writes / "evil.tgz", [
        tar_info("proj/link", type=tarfile.LNKTYPE, linkname="../escaped.txt")])
    with pytest.raises(ArchiveError, match=r"hardlink to '\.\./escaped\.txt' points outside"):
        read_all(path)


def test_zip_symlink_escaping_the_tree_is_rejected(no_writes: Path) -> None:
    path = write_zip(no_writes / "evil.zip", [
        zip_special("proj/link", b"../../escaped.txt", stat.S_IFLNK | 0o777)])
    with pytest.raises(ArchiveError, match="points outside the archive"):
        read_all(path)


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_devices_and_fifos_are_rejected(no_writes: Path, kind: bytes) -> None:
    path = write_tar(no_writes / "evil.tar", [tar_info("dev/thing", type=kind)], "w")
    with pytest.raises(ArchiveError, match="device, fifo or socket"):
        read_all(path)


def test_zip_device_is_rejected(no_writes: Path) -> None:
    path = write_zip(no_writes / "evil.zip", [zip_special("dev/x", b"", stat.S_IFCHR | 0o600)])
    with pytest.raises(ArchiveError, match="device, fifo or socket"):
        read_all(path)


def test_too_many_members(no_writes: Path) -> None:
    limits = ArchiveLimits(max_members=10)
    many = [(f"f{i}.txt", b"x") for i in range(11)]
    tar = write_tar(no_writes / "many.tgz", [tar_info(n, d) for n, d in many])
    with pytest.raises(ArchiveError, match="tar has too many members"):
        read_all(tar, limits)
    zipped = write_zip(no_writes / "many.zip", many)
    with pytest.raises(ArchiveError, match="zip has too many members"):
        read_all(zipped, limits)
    assert len(read_all(zipped, ArchiveLimits(max_members=11))) == 11


def test_zip_bomb_is_refused_before_decompressing(no_writes: Path) -> None:
    path = write_zip(no_writes / "bomb.zip", [("zeros.bin", bytes(20_000_000))])
    limits = ArchiveLimits(max_compression_ratio=100, ratio_floor_bytes=1 << 20)
    with pytest.raises(ArchiveError, match=r"member 'zeros.bin': compression ratio \d+:1"):
        next(iter_members(path, limits=limits))


def test_zip_over_the_uncompressed_limit_is_refused(no_writes: Path) -> None:
    path = write_zip(no_writes / "big.zip", [("a", b"x" * 3000), ("b", b"y" * 3000)],
                     zipfile.ZIP_STORED)
    with pytest.raises(ArchiveError, match="uncompressed size limit"):
        read_all(path, ArchiveLimits(max_uncompressed_bytes=5000))


def _gzip_tar_bomb(path: Path, declared: int, block: int = 8 << 20) -> Path:
    """A tar.gz whose one member declares ``declared`` bytes of zeros, built from repeated gzip
    members so it costs a few MB to make (what an attacker would do)."""
    header = tarfile.TarInfo("zeros.bin")
    header.size = declared
    zeros = gzip.compress(bytes(block), compresslevel=9)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT) + bytes(block - 512)))
        for _ in range(declared // block):
            fh.write(zeros)
    return path


def test_tar_gz_bomb_is_stopped_while_decompressing(no_writes: Path) -> None:
    path = _gzip_tar_bomb(no_writes / "bomb.tgz", declared=4 * 1024**3)
    assert path.stat().st_size < 5_000_000
    limits = ArchiveLimits(max_compression_ratio=100, ratio_floor_bytes=1 << 20)
    start = time.perf_counter()
    with pytest.raises(ArchiveError, match="compression ratio above 100:1 while decompressing"):
        for member in iter_members(path, limits=limits):
            member.read(1000)  # a caller skipping the too-large file still streams past it
    assert time.perf_counter() - start < 5  # 4 GiB were not decompressed


def test_tar_member_past_the_uncompressed_limit_is_refused_from_its_header(
        no_writes: Path) -> None:
    path = write_tar(no_writes / "big.tar", [tar_info("a.bin", bytes(300_000))], "w")
    with pytest.raises(ArchiveError, match=r"member 'a\.bin' would pass the uncompressed size"):
        read_all(path, ArchiveLimits(max_uncompressed_bytes=200_000))
    small = write_tar(no_writes / "small.tar", [tar_info("b.bin", bytes(4096))], "w")
    with pytest.raises(ArchiveError, match="uncompressed size limit"):  # metered on the stream
        read_all(small, ArchiveLimits(max_uncompressed_bytes=2048))


def _sample_tar(mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for i in range(20):
            data = os.urandom(2000)  # incompressible, so truncation hits the member data
            info = tarfile.TarInfo(f"f{i}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_truncated_archives_are_refused(no_writes: Path, mode: str) -> None:
    whole = _sample_tar(mode)
    path = no_writes / "cut.bin"
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ArchiveError, match=r"truncated|corrupt|cannot be read"):
        read_all(path)


@pytest.mark.parametrize("extra", [0, 100])
def test_tar_cut_at_a_member_boundary_or_inside_a_header_is_truncated(no_writes: Path,
                                                                      extra: int) -> None:
    """tarfile itself reads both as a complete archive with one member."""
    boundary = 512 + 2048  # the first member: its header and 2000 bytes padded to 2048
    path = no_writes / "cut.tar"
    path.write_bytes(_sample_tar("w")[:boundary + extra])
    with pytest.raises(ArchiveError, match="ends without its end-of-archive block"):
        read_all(path)


def test_truncated_zip_is_refused(no_writes: Path) -> None:
    whole = write_zip(no_writes / "a.zip", [("a.bin", os.urandom(5000))]).read_bytes()
    path = no_writes / "cut.zip"
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ArchiveError, match="end-of-central-directory"):
        read_all(path)


def test_corrupt_zip_member_fails_its_crc(no_writes: Path) -> None:
    path = write_zip(no_writes / "a.zip", [("a.txt", b"hello world" * 10)], zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"hello world")
    raw[at] = ord("j")
    path.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match=r"member 'a.txt' cannot be read: .*CRC"):
        read_all(path)


def test_corrupt_compressed_stream_is_refused(no_writes: Path) -> None:
    good = gzip.compress(_sample_tar("w"))
    bad = good[:200] + bytes(len(good) - 208) + good[-8:]
    path = no_writes / "bad.tgz"
    path.write_bytes(bad)
    with pytest.raises(ArchiveError, match=r"corrupt or truncated|cannot be read"):
        read_all(path)


@pytest.mark.parametrize("content", [b"", b"just some text\n", b"\x1f\x8b garbage",
                                     bz2.compress(b"not a tar"), lzma.compress(b"x" * 600)])
def test_things_that_are_not_archives(no_writes: Path, content: bytes) -> None:
    path = no_writes / "x.tar.gz"
    path.write_bytes(content)
    with pytest.raises(ArchiveError):
        read_all(path)


def test_a_missing_file_is_a_local_error_not_a_corrupt_archive(no_writes: Path) -> None:
    with pytest.raises(LocalError, match="cannot read the downloaded archive") as info:
        read_all(no_writes / "absent.zip")
    assert not isinstance(info.value, ArchiveError) and "not of the record" in str(info.value)


@pytest.mark.parametrize(("name", "expected"), [("a/b", "a/b"), ("./a//b/", "a/b"), ("./", ""),
                                                ("a/./b", "a/b")])
def test_safe_member_path(name: str, expected: str) -> None:
    assert safe_member_path(name) == expected


def test_only_errors_of_the_archive_formats_count_as_a_corrupt_archive() -> None:
    import errno

    assert is_format_error(gzip.BadGzipFile("Not a gzipped file"))
    assert is_format_error(OSError("Invalid data stream"))  # bz2: no errno
    assert is_format_error(OSError(errno.EINVAL, "Invalid argument"))  # seek to a garbage offset
    assert not is_format_error(OSError(errno.EIO, "Input/output error"))  # the disk
    assert not is_format_error(OSError(errno.ENOSPC, "No space left on device"))
    try:
        int("our own bug")
    except ValueError as exc:
        assert not is_format_error(exc)


def test_an_honest_highly_compressible_zip_is_not_called_an_overlapping_bomb(
        no_writes: Path) -> None:
    path = no_writes / "zeros.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"p/{i}.txt", b"\0" * (3 * 1024**2))
    with pytest.raises(ArchiveError) as info:
        read_all(path)
    assert "overlap" not in str(info.value) and "expands" in str(info.value)
    assert "max_compression_ratio" in str(info.value)


def test_tar_names_that_are_not_utf8_and_empty_tars_are_read(no_writes: Path) -> None:
    path = no_writes / "latin1.tar"
    info = tarfile.TarInfo("proj/caf\udce9.py")  # how tarfile decodes the byte 0xE9
    info.size = 3
    with tarfile.open(path, "w", encoding="utf-8", errors="surrogateescape") as tf:
        tf.addfile(info, io.BytesIO(b"x=1"))
    assert read_all(path) == {"proj/caf\ufffd.py": b"x=1"}
    empty = no_writes / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    assert read_all(empty) == {}


def test_many_global_pax_headers_cannot_add_up_in_memory(no_writes: Path) -> None:
    def global_pax(i: int) -> bytes:
        record = "comment=" + "c" * 600_000 + "\n"
        record = f"{len(record) + 7} {record}"  # the length prefix counts itself (6 + 1)
        info = tarfile.TarInfo(f"pax_global_header{i}")
        info.type = tarfile.XGLTYPE
        info.size = len(record)
        return info.tobuf(tarfile.USTAR_FORMAT) + record.encode().ljust(
            -(-len(record) // 512) * 512, b"\0")

    path = no_writes / "globals.tar"
    path.write_bytes(global_pax(1) + global_pax(2) + b"\0" * 1024)
    with pytest.raises(ArchiveError, match="pax global headers of 12"):
        read_all(path)
