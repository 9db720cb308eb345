"""Per-record HDF5 + JSON (pipeline.store) and reading them back (pipeline.loader).

The round trip must return exactly the arrays the transform made, in both modes, through the
streaming writer's chunked writes and dtype widening; failures must leave nothing behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline import __version__, loader
from pipeline.convert import ConvertedFile, convert_bytes, text_to_images, text_to_images_2018
from pipeline.errors import ArchiveError
from pipeline.manifest import Processing, default_processing
from pipeline.store import (
    ChunkEncoder,
    RecordWriter,
    SourceArchive,
    copy_record,
    write_record,
)


def processing(**changes: object) -> Processing:
    return default_processing(**changes)


P = processing()
P2018 = processing(mode="zenodo-ml-2018")

SOURCES = {
    "proj/src/main.py": b"def main():\n\treturn 1\n" * 50,
    "proj/src/util.c": b"int x;\n" * 200,
    "proj/README.md": "# Café\n\nUnicode: é € 😀\n".encode(),
    "proj/docs/notes.txt": b"one line, no newline",
    "proj/empty.py": b"",
    "proj/.git/HEAD": b"ref: refs/heads/main\n",
    "proj/.github/workflows/ci.yml": b"on: push\n",
    "proj/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00",
}


def make_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def expected_default(files: dict[str, bytes], prefix: str, p: Processing = P
                     ) -> dict[str, np.ndarray]:
    out = {}
    for name, data in files.items():
        converted = convert_bytes(name, data, p)
        if isinstance(converted, ConvertedFile):
            out[f"{prefix}/{name}"] = converted.images
    return out


@pytest.fixture
def archives(tmp_path: Path) -> list[SourceArchive]:
    tgz = make_tar(tmp_path / "v1.0.tar.gz", SOURCES)
    other = {"proj/src/main.py": b"print('zip copy')\n", "proj/x.js": b"let a = 1;\n"}
    zipped = make_zip(tmp_path / "extra.zip", other)
    return [SourceArchive("v1.0.tar.gz", tgz, checksum="md5:" + "0" * 32),
            SourceArchive("extra.zip", zipped)]


def read_back(source: object) -> dict[str, np.ndarray]:
    return {entry.path: images for entry, images in loader.iter_images(source)}


# --- default mode -----------------------------------------------------------------------------

def test_round_trip_returns_exactly_the_arrays_written(tmp_path: Path,
                                                       archives: list[SourceArchive]) -> None:
    out = write_record(tmp_path / "out", "1234", archives, processing=P, record={"id": 1234})
    expected = {**expected_default(SOURCES, "v1.0.tar.gz"),
                **expected_default({"proj/src/main.py": b"print('zip copy')\n",
                                    "proj/x.js": b"let a = 1;\n"}, "extra.zip")}
    got = read_back(out.hdf5)
    assert got.keys() == expected.keys()
    for path, images in expected.items():
        assert got[path].dtype == np.uint32  # the record's widest code point is an emoji
        assert np.array_equal(got[path], images), path
    assert out.images == sum(len(i) for i in expected.values()) == len(loader.load_all(out.hdf5))
    with h5py.File(out.hdf5) as h5:
        images = h5["images"]
        assert images.shape == (out.images, 80, 80) and images.dtype == np.uint32
        assert images.compression == "gzip" and images.shuffle
        assert loader.read_metadata(h5)["pipeline_version"] == __version__
        assert h5.attrs["layout"] == "pages"
        assert h5["images"].attrs["padding_value"] == 32
        assert h5["images"].attrs["dimensions"] == "page,row,column"


def test_each_archive_keeps_its_own_prefix(tmp_path: Path,
                                           archives: list[SourceArchive]) -> None:
    out = write_record(tmp_path, "7", archives, processing=P)
    paths = [e.path for e in loader.iter_entries(out.hdf5)]
    assert "v1.0.tar.gz/proj/src/main.py" in paths and "extra.zip/proj/src/main.py" in paths
    zip_copy = loader.load_by_pattern(out.hdf5, "extra.zip/*/main.py")
    assert lines(zip_copy)[0].startswith("print('zip copy')")


def lines(images: np.ndarray) -> list[str]:
    return ["".join(map(chr, r)).rstrip() for r in images.reshape(-1, images.shape[-1])]


def test_index_rows(tmp_path: Path, archives: list[SourceArchive]) -> None:
    out = write_record(tmp_path, "7", archives, processing=P)
    entries = {e.path: e for e in loader.iter_entries(out.hdf5)}
    readme = entries["v1.0.tar.gz/proj/README.md"]
    data = SOURCES["proj/README.md"]
    assert (readme.size, readme.sha256, readme.extension) == (
        len(data), hashlib.sha256(data).hexdigest(), "md")
    assert entries["v1.0.tar.gz/proj/empty.py"].image_count == 0
    ordered = list(entries.values())  # index order: each file's images follow the previous
    assert ordered[0].first_image == 0
    assert all(a.first_image + a.image_count == b.first_image
               for a, b in itertools.pairwise(ordered))


def test_metadata_json(tmp_path: Path, archives: list[SourceArchive]) -> None:
    record = {"id": "7", "metadata": {"title": "proj"}}
    out = write_record(tmp_path, "7", archives, processing=P, record=record)
    meta = json.loads(out.metadata.read_text())
    assert meta["record"] == record and meta["pipeline_version"] == __version__
    assert meta["processing"]["mode"] == "default" and meta["processing"]["tab_width"] == 4
    assert [s["key"] for s in meta["sources"]] == ["v1.0.tar.gz", "extra.zip"]
    assert meta["sources"][0]["checksum"] == "md5:" + "0" * 32
    assert meta["sources"][0]["format"] == "tar.gz" and meta["sources"][1]["format"] == "zip"
    assert meta["sources"][1]["sha256"] == "sha256:" + hashlib.sha256(
        archives[1].path.read_bytes()).hexdigest()
    reasons = {s["path"]: s["reason"] for s in meta["skipped"]}
    assert reasons == {"v1.0.tar.gz/proj/.git/HEAD": "excluded-dir",
                       "v1.0.tar.gz/proj/logo.png": "binary"}
    assert len(meta["tree"]) == len(SOURCES) + 2 == meta["counts"]["tree"]
    assert meta["counts"]["images"] == out.images and meta["counts"]["converted"] == out.files
    assert meta["hdf5"]["sha256"] == "sha256:" + hashlib.sha256(out.hdf5.read_bytes()).hexdigest()


def test_same_input_gives_the_same_bytes(tmp_path: Path, archives: list[SourceArchive]) -> None:
    first = write_record(tmp_path / "a", "7", archives, processing=P)
    second = write_record(tmp_path / "b", "7", archives, processing=P)
    assert first.hdf5.read_bytes() == second.hdf5.read_bytes()
    assert first.metadata.read_text() == second.metadata.read_text()


@pytest.mark.parametrize("level", [0, 1, 4, 9])
def test_streaming_writes_and_dtype_widening_round_trip(tmp_path: Path, level: int) -> None:
    """A tiny flush threshold forces many chunk writes and two widenings with data on disk."""
    p = processing(compression_level=level)
    files = {}
    for i in range(120):
        text = f"file {i}\n" + "x = 1\n" * (i * 7 % 170)
        text += "é" if i == 10 else "€" if i == 50 else "😀" if i == 100 else ""
        files[f"f{i:03}.py"] = text.encode()
    with RecordWriter(tmp_path, "9", processing=p, flush_bytes=50_000) as writer:
        for name, data in files.items():
            writer.add(convert_bytes(name, data, p))
    assert writer.output is not None and writer.output.dtype == "uint32"
    got = read_back(writer.output.hdf5)
    for name, data in files.items():
        assert np.array_equal(got[name], text_to_images(data)), name
    assert not list(tmp_path.glob(".*tmp"))


def test_chunks_are_standard_shuffle_plus_deflate(tmp_path: Path) -> None:
    """Decode a stored chunk by hand: zlib, then un-shuffle (what any HDF5 reader does)."""
    p = processing()
    with RecordWriter(tmp_path, "c", processing=p) as writer:
        writer.add(convert_bytes("a.txt", "😀 and ascii\n".encode() * 100, p))
    assert writer.output is not None
    with h5py.File(writer.output.hdf5) as h5:
        ds = h5["images"]
        _, stored = ds.id.read_direct_chunk((0, 0, 0))
        raw = np.frombuffer(zlib.decompress(stored), np.uint8)
        values = raw.reshape(4, -1).T.copy().view("<u4").reshape(ds.chunks)
        assert np.array_equal(values[:len(ds)], ds[()])


def test_chunk_encoder_widen_equals_encoding_wide() -> None:
    encoder = ChunkEncoder(6)
    chunk = np.arange(64 * 10, dtype=np.uint8).reshape(64, 10)
    narrow = encoder.encode(chunk, np.dtype("<u1"))
    widened = encoder.widen(narrow, chunk.size, np.dtype("<u1"), np.dtype("<u4"))
    assert zlib.decompress(widened) == zlib.decompress(encoder.encode(chunk, np.dtype("<u4")))


def test_empty_record(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tgz", {"p/logo.png": b"\x00\x01", "p/empty": b""})
    out = write_record(tmp_path / "out", "5", [SourceArchive("a.tgz", archive)], processing=P)
    assert (out.images, out.files, out.skipped) == (0, 1, 1)
    images = loader.load_all(out.hdf5)
    assert isinstance(images, np.ndarray) and images.shape == (0, 80, 80)


# --- zenodo-ml-2018 mode ----------------------------------------------------------------------

def test_2018_mode_round_trip_is_lossless(tmp_path: Path, archives: list[SourceArchive]) -> None:
    out = write_record(tmp_path, "18", archives[:1], processing=P2018)
    got = read_back(out.hdf5)
    for name, data in SOURCES.items():
        path = f"v1.0.tar.gz/{name}"
        if ".git" in name:
            assert path not in got
            continue
        expected = text_to_images_2018(data)
        assert [a.shape for a in got[path]] == [e.shape for e in expected], name
        assert all(a.dtype == e.dtype and np.array_equal(a, e)
                   for a, e in zip(got[path], expected, strict=True))
        assert all(a.dtype == (np.float64 if a.shape == (0, 0) else np.int64)
                   for a in got[path])
    # rule 10: pandas' DataFrame([]).values, a float64 (0, 0) array, exactly as 2018 had it
    empty = got["v1.0.tar.gz/proj/empty.py"]
    assert [(a.shape, a.dtype) for a in empty] == [((0, 0), np.dtype(np.float64))]
    assert [a.shape for a in got["v1.0.tar.gz/proj/docs/notes.txt"]] == [(20, 80)]  # rule 9
    meta = json.loads(out.metadata.read_text())
    assert {s["reason"] for s in meta["skipped"]} == {"git-substring"}
    assert all(e["listed_2018"] == (".git" not in e["path"]) for e in meta["tree"])
    with h5py.File(out.hdf5) as h5:
        assert h5.attrs["layout"] == "rows-2018"
        assert loader.read_metadata(h5)["value_dtype"] == "int64"
        assert h5["rows"].dtype == np.uint32 and len(h5["image_rows"]) == out.images


def test_2018_streaming_with_small_flushes(tmp_path: Path) -> None:
    files = {f"f{i}.txt": (("line\n" * (i * 13 % 200)) + ("é" if i == 30 else "")).encode()
             for i in range(60)}
    with RecordWriter(tmp_path, "18", processing=P2018, flush_bytes=30_000) as writer:
        for name, data in files.items():
            writer.add(convert_bytes(name, data, P2018))
    got = read_back(tmp_path / "18.h5")
    for name, data in files.items():
        expected = text_to_images_2018(data)
        assert all(np.array_equal(a, e) and a.shape == e.shape
                   for a, e in zip(got[name], expected, strict=True))


# --- failures leave nothing -------------------------------------------------------------------

def test_hostile_archive_fails_the_record_and_writes_nothing(tmp_path: Path,
                                                             archives: list[SourceArchive]
                                                             ) -> None:
    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    out_dir = tmp_path / "out"
    with pytest.raises(ArchiveError, match="path traversal"):
        write_record(out_dir, "66", [archives[0], SourceArchive("evil.tgz", evil)],
                     processing=P)
    assert list(out_dir.iterdir()) == []
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_a_failed_rewrite_keeps_the_previous_output(tmp_path: Path,
                                                    archives: list[SourceArchive]) -> None:
    first = write_record(tmp_path, "66", archives[:1], processing=P)
    before = (first.hdf5.read_bytes(), first.metadata.read_bytes())
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(archives[0].path.read_bytes()[:100])
    with pytest.raises(ArchiveError):
        write_record(tmp_path, "66", [SourceArchive("b.tgz", broken)], processing=P)
    assert (first.hdf5.read_bytes(), first.metadata.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_bad_arguments(tmp_path: Path, archives: list[SourceArchive]) -> None:
    with pytest.raises(ValueError, match="cannot name a file"):
        RecordWriter(tmp_path, "../x", processing=P)
    with pytest.raises(ValueError, match="keys must differ"):
        write_record(tmp_path, "1", [archives[0], archives[0]], processing=P)


# --- loader -----------------------------------------------------------------------------------

def test_selection_by_extension_glob_and_regex(tmp_path: Path,
                                               archives: list[SourceArchive]) -> None:
    out = write_record(tmp_path, "7", archives, processing=P)
    by_ext = loader.load_by_extension(out.hdf5)
    assert set(by_ext) == {"py", "c", "md", "txt", "js", "yml"}  # .github/ is not .git/
    assert np.array_equal(by_ext["c"], text_to_images(SOURCES["proj/src/util.c"]))
    only = loader.load_by_extension(out.hdf5, [".PY", "js"])
    assert set(only) == {"py", "js"}
    globbed = loader.load_by_pattern(out.hdf5, "v1.0.tar.gz/proj/src/*")
    regexed = loader.load_by_pattern(out.hdf5, r"^v1\.0\.tar\.gz/proj/src/", syntax="regex")
    assert np.array_equal(globbed, regexed) and len(globbed) == 2 + 3  # main.py, util.c
    assert [e.path for e in loader.iter_entries(out.hdf5, regex=r"\.c$")] == [
        "v1.0.tar.gz/proj/src/util.c"]


def test_dropping_near_empty_pages(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tgz", {"a.txt": b"x\n" * 81, "b.txt": b"y\n" * 30})
    out = write_record(tmp_path, "3", [SourceArchive("a.tgz", archive)], processing=P)
    assert len(loader.load_all(out.hdf5)) == 3
    kept = loader.load_all(out.hdf5, min_nonblank_rows=30)
    assert len(kept) == 2  # the page holding line 81 alone is dropped
    assert len(loader.load_all(out.hdf5, min_nonblank_rows=31)) == 1


def test_loading_a_folder_and_part_file_groups(tmp_path: Path,
                                               archives: list[SourceArchive]) -> None:
    a = write_record(tmp_path / "records", "1", archives[:1], processing=P)
    b = write_record(tmp_path / "records", "2", archives[1:], processing=P2018)
    from_folder = loader.load_all(tmp_path / "records")
    assert isinstance(from_folder, list)  # a 2018 record is in the selection
    part = tmp_path / "version" / "part-0001.h5"
    part.parent.mkdir()
    with h5py.File(part, "w") as h5:
        for out in (a, b):
            with h5py.File(out.hdf5) as source:
                copy_record(source, h5.create_group(f"records/{out.hdf5.stem}"))
    expected = read_back(tmp_path / "records")
    assert {e.record_id for e in loader.iter_entries(part)} == {"1", "2"}
    got = read_back(part)
    assert got.keys() == expected.keys()
    for path, images in expected.items():
        if isinstance(images, np.ndarray):
            assert np.array_equal(got[path], images)
        else:
            assert all(np.array_equal(x, y) for x, y in zip(got[path], images, strict=True))
    with h5py.File(part) as h5:  # an open group works too
        assert len(list(loader.iter_entries(h5["records/1"]))) == a.files


def test_a_huge_archive_is_written_in_bounded_memory(tmp_path: Path) -> None:
    """~100 MB of source in one archive, in a fresh interpreter: peak RSS stays far below it."""
    settings = json.dumps(dataclasses.asdict(processing(compression_level=1)))
    script = f"""
import io, json, sys, tarfile
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from pipeline.manifest import Processing, default_processing
from pipeline.store import SourceArchive, write_record
path = Path({str(tmp_path / "huge.tar.gz")!r})
page = "".join(f"    value_{{i}} = compute({{i}}, 'é') + 1\\n" for i in range(2000)).encode()
with tarfile.open(path, "w:gz", compresslevel=1) as tar:
    for i in range(1200):  # distinct contents: identical files would be stored once
        data = f"# module {{i}}\\n".encode() + page
        info = tarfile.TarInfo(f"proj/src/module_{{i}}.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
def hwm():
    # VmHWM is this process's own peak; ru_maxrss would carry over the peak of the (large)
    # pytest process that forked it, since Linux keeps it across execve.
    text = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("VmHWM")))
before = hwm()
out = write_record({str(tmp_path)!r}, "big", [SourceArchive("huge.tar.gz", path)],
                   processing=Processing(**json.loads({settings!r})))
peak = hwm()
print(out.source_bytes, out.images, before, peak)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=240)
    source_bytes, images, _, peak_kib = map(int, done.stdout.split())
    assert source_bytes > 90_000_000 and images >= 30_000
    print(f"peak RSS {peak_kib / 1024:.0f} MiB for {source_bytes / 1e6:.0f} MB of source")
    assert peak_kib < 250 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
