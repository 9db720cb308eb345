"""One HDF5 file and one JSON file per record, written by streaming, temp-then-replace.

Why this shape (SPEC section 6; the 2018 outputs in ZENODO_ML_2018.md, "Outputs", are what it
replaces): 2018 wrote one HDF5 dataset *per image* (slashes in paths became nested groups), int64
pickles at about 18 bytes per source byte, and a metadata pickle that needs an old package to
open. Here a record is ``<id>.h5``:

* ``images``: every image of the record in one ``(N, height, width)`` dataset, in the narrowest
  unsigned dtype holding the record's largest code point, chunked by 64 images and gzip-compressed
  (``processing.compression_level``; plus the shuffle filter when values are wider than a byte,
  which groups the mostly-zero high bytes; see ``benchmarks/bench_transform.py``), so plain h5py
  reads it anywhere;
* ``files``: a compound per-file index ``(path, first_image, image_count, size, sha256,
  extension)``; a file's images are ``images[first_image : first_image + image_count]``;
* in ``zenodo-ml-2018`` mode images differ in shape (1 to height-1 rows for a remainder, any
  number of one-character rows, ``(0, 0)``: rules 8-10), so they are stored losslessly as
  ``rows`` ``(R, width)`` (all image rows stacked) plus ``image_rows`` ``(N,)`` (rows per image,
  0 meaning the ``(0, 0)`` array), and ``first_image`` indexes ``image_rows``. Values are stored
  narrow and read back as the 2018 int64 by :mod:`pipeline.loader`;
* root attributes: the layout, the record id, the pipeline version and the processing
  parameters.

``<id>.json`` beside it holds the Zenodo record, the file tree of every archive, every skipped
file with its reason, the processing parameters, the pipeline version, the source archives'
checksums, counts, and the HDF5 file's own sha256 (so a version can verify what it packs).

Streaming: :class:`RecordWriter` appends images to a resizable dataset in whole chunks whenever its
buffer passes ``flush_bytes`` (32 MiB), so a record whose archives hold gigabytes of source never
has more than that in memory. Chunks are compressed by :class:`ChunkEncoder` and written with
``write_direct_chunk`` (standard gzip + shuffle bytes, about twice as fast for wide dtypes). The
dtype is chosen as images arrive: when a wider one is needed after data is already on disk, the
compressed chunks are copied into a fresh temporary file with the wider dtype, without
recompression (copying inside one HDF5 file would leave the old dataset's space dead in it).

Files are written under temporary names in the output folder and verified by reading the counts
back before ``os.replace`` (STYLE guideline 3, :mod:`pipeline.fsutil`); HDF5 object timestamps are
off, so the same input gives the same bytes (and checksum) on every run. A failure, including a
hostile archive, removes the temporary files and leaves the folder as it was.

Several archives in one record: each file's path starts with its archive's key
(``v1.2.zip/proj-1.2/src/main.c``), so archives never overwrite each other (they did in 2018).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gzip
import hashlib
import os
import re
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from pipeline import __version__
from pipeline.code_images import FORMAT, LAYOUT_PAGES, LAYOUT_ROWS_2018, METADATA, SPACE
from pipeline.convert import MODE_2018, ConvertedFile, Skipped, iter_archive
from pipeline.errors import ConvertError, PipelineError
from pipeline.extract import detect_format
from pipeline.fsutil import atomic_path, dumps_json, file_digest, safe_join
from pipeline.manifest import Processing
from pipeline.redact import redaction_summary

# HDF5 1.10+ object formats: compact groups (links in the object header, no symbol-table B-tree
# and heap per group) and single-chunk / fixed-array chunk indexes instead of a v1 B-tree per
# dataset; together most of a small record's overhead. Readable by HDF5 >= 1.10 (2017; every
# h5py wheel since 2.8).
LIBVER = ("v110", "latest")
FORMAT_VERSION = 2  # 2: file-table column ``holder``, compressed ``metadata.json``, fewer attrs
CHUNK_IMAGES = 64
FLUSH_BYTES = 32 * 1024**2
_RECORD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
FILES_COLUMNS = ("path", "first_image", "image_count", "size", "sha256", "extension", "holder")
# What each dataset holds, as its HDF5 attributes, so a file explains itself to anyone who opens
# it with h5py or HDFView: what the values are, the padding value, the order of the dimensions.
# Kept short: they are repeated in every record group of a part (the card explains at length).
DATASET_ATTRS: dict[str, dict[str, Any]] = {
    "images": {"values": "Unicode code points", "padding_value": SPACE,
               "dimensions": "page,row,column"},
    "rows": {"values": "Unicode code points (zenodo-ml-2018 rows, see image_rows)",
             "padding_value": SPACE, "dimensions": "row,column"},
    "image_rows": {"values": "rows per 2018 image (0: the float64 (0, 0) image)",
                   "dimensions": "image"},
    "files": {"values": "per source file: pages images[first_image:+image_count] of record "
                        "holder (empty: this one)", "dimensions": "file"},
    METADATA: {"values": "record metadata", "encoding": "gzip-compressed UTF-8 JSON"},
}


def files_table(rows: Sequence[tuple[str, int, int, int, str, str, str]]) -> np.ndarray:
    """The file table as a compound array with fixed-length UTF-8 strings sized to this record.

    Why fixed length: variable-length strings live on HDF5's global heap, which no filter
    compresses; with gzip a table of similar paths shrinks to a few bytes per row.
    """
    def width(i: int) -> int:
        return max([len(str(r[i]).encode("utf-8")) for r in rows] + [1])
    dtype = np.dtype([
        ("path", h5py.string_dtype("utf-8", width(0))), ("first_image", "<i8"),
        ("image_count", "<i8"), ("size", "<i8"), ("sha256", h5py.string_dtype("ascii", 64)),
        ("extension", h5py.string_dtype("utf-8", width(5))),
        ("holder", h5py.string_dtype("ascii", width(6)))])
    encoded = [(r[0].encode("utf-8"), r[1], r[2], r[3], r[4].encode("ascii"),
                r[5].encode("utf-8"), r[6].encode("ascii")) for r in rows]
    return np.array(encoded, dtype=dtype)


def transform_key(processing: Processing) -> str:
    """What decides the pages of given bytes: equal keys and equal sha256 mean equal pages.

    A short digest of the settings (they are in full in the metadata): it is an attribute of
    every record group, so its length is paid once per record.

    Contents are shared between records only under the same key (:mod:`pipeline.dedup`).
    """
    fields = {"mode": processing.mode, "image_width": processing.image_width,
              "image_height": processing.image_height, "tab_width": processing.tab_width,
              "pipeline_version": __version__}
    for optional in ("redact",):  # settings that change pages, where this pipeline has them
        if hasattr(processing, optional):
            fields[optional] = getattr(processing, optional)
    return "sha256:" + hashlib.sha256(dumps_json(fields).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class SourceArchive:
    """One archive of a record, as fetched: its key on Zenodo (the path prefix), file, checksums."""

    key: str
    path: Path
    checksum: str = ""  # as published, "md5:<hex>"; "" when the source publishes none
    sha256: str = ""    # "sha256:<hex>" of the bytes on disk; computed when empty


@dataclasses.dataclass(frozen=True)
class RecordOutput:
    """What :class:`RecordWriter` wrote (the paths exist and were verified)."""

    hdf5: Path
    metadata: Path
    layout: str
    dtype: str
    images: int
    files: int
    skipped: int
    source_bytes: int  # bytes of the files that were converted
    hdf5_bytes: int
    hdf5_sha256: str
    redactions: int = 0  # secrets masked (listed in the metadata, without their values)


def hdf5_path(folder: str | os.PathLike[str], record_id: str) -> Path:
    return safe_join(folder, f"{record_id}.h5")


def metadata_path(folder: str | os.PathLike[str], record_id: str) -> Path:
    return safe_join(folder, f"{record_id}.json")


_ZLIB_HEADER = b"\x78\x9c"
_FINAL_BLOCK = b"\x03\x00"  # an empty deflate block with the final bit set


class ChunkEncoder:
    """HDF5's shuffle + deflate filters, applied here so each byte plane is compressed alone.

    Why: the shuffle filter splits a chunk of ``uint16``/``uint32`` values into byte planes (all
    low bytes, then all second bytes, ...). For code images the planes above the first are
    almost always all zeros, yet zlib still spends as long on them as on the text. A deflate
    stream may be made of independently compressed segments, each ended by a sync flush, so a
    chunk here is ``zlib header + one segment per plane + an empty final block + adler32`` and a
    zero plane reuses one cached segment. The bytes on disk are exactly what the standard
    filters decode, so any HDF5 reader reads them. The same layout makes widening a chunk from
    ``uint8`` to ``uint16`` (say) a matter of appending zero-plane segments: no recompression.
    With ``level == 0`` chunks are stored raw and no filter is declared.
    """

    def __init__(self, level: int) -> None:
        self.level = level
        self._zero_planes: dict[int, tuple[bytes, bytes]] = {}

    def filters(self, dtype: np.dtype) -> dict[str, Any]:
        """The ``create_dataset`` filter options matching :meth:`encode`."""
        if not self.level:
            return {}
        return {"compression": "gzip", "compression_opts": self.level,
                "shuffle": dtype.itemsize > 1}

    def _segment(self, plane: np.ndarray | bytes) -> bytes:
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, -15)
        # an ndarray is a buffer (no copy); numpy's stubs do not declare __buffer__ for 3.11
        return compressor.compress(plane) + compressor.flush(  # type: ignore[arg-type]
            zlib.Z_SYNC_FLUSH)

    def _zero_plane(self, size: int) -> tuple[bytes, bytes]:
        if size not in self._zero_planes:
            zeros = bytes(size)
            self._zero_planes[size] = (self._segment(zeros), zeros)
        return self._zero_planes[size]

    def encode(self, chunk: np.ndarray, dtype: np.dtype) -> bytes:
        """One full chunk (values of any unsigned dtype no wider than ``dtype``) as stored."""
        if not self.level:
            return chunk.astype(dtype).tobytes()
        values = np.ascontiguousarray(chunk, dtype=chunk.dtype.newbyteorder("<"))
        width = values.dtype.itemsize
        planes = values.view(np.uint8).reshape(values.size, width)
        body, adler = [_ZLIB_HEADER], 1
        for j in range(dtype.itemsize):
            plane = np.ascontiguousarray(planes[:, j]) if j < width else None
            data: np.ndarray | bytes
            if plane is None or not plane.any():
                segment, data = self._zero_plane(values.size)
            else:
                segment, data = self._segment(plane), plane
            body.append(segment)
            adler = zlib.adler32(data, adler)  # type: ignore[arg-type]  # (see _segment)
        body += [_FINAL_BLOCK, adler.to_bytes(4, "big")]
        return b"".join(body)

    def widen(self, stored: bytes, items: int, old: np.dtype, new: np.dtype) -> bytes:
        """A chunk written by :meth:`encode` for ``old``, re-expressed for the wider ``new``."""
        if not self.level:
            return np.frombuffer(stored, old).astype(new).tobytes()
        body, adler = [stored[:-len(_FINAL_BLOCK) - 4]], int.from_bytes(stored[-4:], "big")
        for _ in range(old.itemsize, new.itemsize):
            segment, zeros = self._zero_plane(items)
            body.append(segment)
            adler = zlib.adler32(zeros, adler)
        body += [_FINAL_BLOCK, adler.to_bytes(4, "big")]
        return b"".join(body)


class _Appender:
    """A resizable chunked dataset fed whole chunks (written directly) from a memory buffer."""

    def __init__(self, writer: RecordWriter, name: str, item_shape: tuple[int, ...],
                 chunk_items: int) -> None:
        self.writer, self.name = writer, name
        self.item_shape, self.chunk_items = item_shape, chunk_items
        self.dtype = np.dtype("<u1")
        self.parts: collections.deque[np.ndarray] = collections.deque()
        self.buffered = 0        # items in the buffer
        self.buffered_bytes = 0
        self.written = 0         # items in the dataset

    @property
    def count(self) -> int:
        return self.written + self.buffered

    def append(self, items: np.ndarray) -> None:
        if items.dtype.itemsize > self.dtype.itemsize:
            self.dtype = np.dtype(f"<u{items.dtype.itemsize}")
            if self.name in self.writer._h5:
                self.writer._rewrite(self)
        if len(items):
            self.parts.append(items)
            self.buffered += len(items)
            self.buffered_bytes += items.nbytes
        if self.buffered_bytes >= self.writer.flush_bytes:
            self.flush(final=False)

    def create(self, group: h5py.Group, chunk: int) -> h5py.Dataset:
        return group.create_dataset(
            self.name, shape=(self.written, *self.item_shape),
            maxshape=(None, *self.item_shape), dtype=self.dtype, chunks=(chunk, *self.item_shape),
            track_times=False, **self.writer._encoder.filters(self.dtype))

    def _take(self, n: int) -> np.ndarray:
        """The next ``n`` buffered items as one array (the widest of their dtypes)."""
        taken = []
        while n:
            head = self.parts[0]
            if len(head) <= n:
                taken.append(self.parts.popleft())
                n -= len(head)
            else:
                taken.append(head[:n])
                self.parts[0] = head[n:]
                n = 0
        self.buffered -= sum(len(t) for t in taken)
        self.buffered_bytes -= sum(t.nbytes for t in taken)
        return taken[0] if len(taken) == 1 else np.concatenate(taken)

    def flush(self, *, final: bool) -> None:
        h5 = self.writer._h5
        if self.name not in h5:
            self.create(h5, max(1, min(self.buffered, self.chunk_items)) if final
                        else self.chunk_items)
        ds = h5[self.name]
        chunk = ds.chunks[0]
        n = self.buffered if final else self.buffered // chunk * chunk
        if not n:
            return
        ds.resize(self.written + n, axis=0)
        encoder = self.writer._encoder
        for start in range(0, n, chunk):
            items = self._take(min(chunk, n - start))
            if len(items) < chunk:  # the last chunk is stored whole; HDF5 ignores the tail
                items = np.concatenate([items, np.full((chunk - len(items), *self.item_shape),
                                                       SPACE, items.dtype)])
            ds.id.write_direct_chunk((self.written, *(0 for _ in self.item_shape)),
                                     encoder.encode(items, self.dtype))
            self.written += min(chunk, n - start)


class RecordWriter:
    """Stream one record's converted files into ``<id>.h5`` and ``<id>.json`` in ``folder``.

    Use as a context manager; leaving the block normally verifies and publishes both files,
    leaving it with an exception deletes the temporary files::

        with RecordWriter(folder, "123", processing=p, record=record.to_dict()) as writer:
            for archive in archives:
                writer.add_archive(archive)
        writer.output  # RecordOutput
    """

    def __init__(self, folder: str | os.PathLike[str], record_id: str, *,
                 processing: Processing, record: Mapping[str, Any] | None = None,
                 labels: Mapping[str, Any] | None = None,
                 flush_bytes: int = FLUSH_BYTES) -> None:
        if not _RECORD_ID.match(record_id):
            raise ValueError(f"record id {record_id!r} cannot name a file")
        self.folder, self.record_id = Path(folder), record_id
        self.processing, self.record = processing, dict(record or {})
        self.labels = dict(labels or {})
        self.flush_bytes = flush_bytes
        self._encoder = ChunkEncoder(processing.compression_level)
        self.mode_2018 = processing.mode == MODE_2018
        w, h = processing.image_width, processing.image_height
        self.layout = LAYOUT_ROWS_2018 if self.mode_2018 else LAYOUT_PAGES
        self._images = (_Appender(self, "rows", (w,), CHUNK_IMAGES * h) if self.mode_2018
                        else _Appender(self, "images", (h, w), CHUNK_IMAGES))
        self._image_rows: list[np.ndarray] = []
        self._n_images = 0
        self._index: list[tuple[str, int, int, int, str, str, str]] = []
        self._stored: dict[str, tuple[int, int]] = {}  # sha256 -> (first_image, image_count)
        self._tree: list[dict[str, Any]] = []
        self._skipped: list[dict[str, Any]] = []
        self._sources: list[dict[str, Any]] = []
        self._redactions: list[dict[str, Any]] = []
        self._source_bytes = 0
        self._stack = contextlib.ExitStack()
        self._h5: h5py.File
        self._h5_tmp: Path
        self.output: RecordOutput | None = None

    # -- lifecycle

    def __enter__(self) -> RecordWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._stack as stack:  # entered in this order, replaced in reverse: h5 before json
            self._json_tmp = stack.enter_context(atomic_path(metadata_path(self.folder,
                                                                           self.record_id)))
            self._h5_tmp = stack.enter_context(atomic_path(hdf5_path(self.folder,
                                                                     self.record_id)))
            self._h5 = h5py.File(self._h5_tmp, "w", track_order=True, libver=LIBVER)
            stack.callback(self._close_h5)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if exc is None:
            try:
                self._finish()
            except BaseException as failure:  # remove the temporary files, then re-raise
                self._stack.__exit__(type(failure), failure, failure.__traceback__)
                raise
        return bool(self._stack.__exit__(exc_type, exc, tb))

    def _close_h5(self) -> None:
        """Close the HDF5 handle on the way out; after a failure the file is deleted anyway,
        so an error closing it must not hide the failure that got us here."""
        with contextlib.suppress(Exception):
            self._h5.close()

    # -- adding data

    def add_archive(self, source: SourceArchive) -> None:
        """Convert every member of one archive (paths prefixed by its key) into this record."""
        for item in iter_archive(source.path, processing=self.processing, prefix=source.key,
                                 record=self.record_id):
            self.add(item)
        fmt = detect_format(source.path)  # readable: iter_archive has just read it
        sha256 = source.sha256 or file_digest(source.path)
        self._sources.append({"key": source.key, "format": fmt, "checksum": source.checksum,
                              "sha256": sha256, "bytes": source.path.stat().st_size})

    def add(self, item: ConvertedFile | Skipped) -> None:
        """Add one converted file (its images and index row) or one skipped file."""
        limit = self.processing.max_file_bytes
        if isinstance(item, Skipped):
            self._skipped.append(item.to_dict())
            if item.reason != "duplicate":
                listed = (item.kind == "file" and item.reason != "git-substring"
                          and item.size <= limit)
                self._tree.append(self._tree_entry(item.path, item.size, item.kind, listed))
            return
        expected = self._images.item_shape
        if item.images.shape[1:] != expected or (item.image_rows is None) == self.mode_2018:
            raise ConvertError(f"{item.path}: images of shape {item.images.shape[1:]} do not "
                               f"fit this record", stage="store", record=self.record_id,
                               expected=f"{expected} in {self.layout} layout",
                               got=str(item.images.shape))
        self._tree.append(self._tree_entry(item.path, item.size, "file", True))
        self._source_bytes += item.size
        self._redactions += [r.to_dict(item.path) for r in item.redactions]
        stored = self._stored.get(item.sha256)
        if stored is not None:  # the same bytes earlier in this record: stored once
            self._index.append((item.path, *stored, item.size, item.sha256, item.extension, ""))
            return
        self._stored[item.sha256] = (self._n_images, item.image_count)
        self._index.append((item.path, self._n_images, item.image_count, item.size,
                            item.sha256, item.extension, ""))
        self._n_images += item.image_count
        if item.image_rows is not None:
            self._image_rows.append(item.image_rows)
        self._images.append(item.images)

    def _tree_entry(self, path: str, size: int, kind: str, listed_2018: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": path, "size": size, "kind": kind}
        if self.mode_2018:
            entry["listed_2018"] = listed_2018  # ZENODO_ML_2018.md: the tree used "<="
        return entry

    def _rewrite(self, appender: _Appender) -> None:
        """Move what is on disk into a new temporary file with ``appender``'s wider dtype."""
        fd, side = tempfile.mkstemp(prefix=f".{self.record_id}.h5.", suffix=".widen.tmp",
                                    dir=self.folder)
        os.close(fd)
        try:
            old = self._h5[appender.name]
            zeros = (0,) * len(appender.item_shape)
            with h5py.File(side, "w", track_order=True, libver=LIBVER) as new_file:
                new = appender.create(new_file, old.chunks[0])
                items = old.chunks[0] * int(np.prod(appender.item_shape))
                for start in range(0, len(old), old.chunks[0]):
                    _, stored = old.id.read_direct_chunk((start, *zeros))
                    new.id.write_direct_chunk((start, *zeros), self._encoder.widen(
                        stored, items, old.dtype, appender.dtype))
            self._h5.close()
            os.replace(side, self._h5_tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(side)
        self._h5 = h5py.File(self._h5_tmp, "r+", libver=LIBVER)

    # -- finishing

    def _attrs(self) -> dict[str, Any]:
        """The group's few attributes: what the loader needs to find and read a record group
        without its metadata (every further attribute costs bytes in every record of a part;
        the processing parameters and the rest are in the compressed ``metadata.json``)."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "layout": self.layout,
                "record_id": self.record_id, "transform": transform_key(self.processing)}

    def _finish(self) -> None:
        self._images.flush(final=True)
        image_rows = (np.concatenate(self._image_rows) if self._image_rows
                      else np.empty(0, np.int64))
        h5 = self._h5
        if self.mode_2018:
            h5.create_dataset("image_rows", data=image_rows.astype(np.int64), track_times=False,
                              **self._small_opts(len(image_rows)))
        index = files_table(self._index)
        h5.create_dataset("files", data=index, track_times=False,
                          **self._small_opts(len(index)))
        images = len(image_rows) if self.mode_2018 else self._images.count
        counts = {"tree": len(self._tree), "converted": len(self._index),
                  "skipped": len(self._skipped), "images": images,
                  "source_bytes": self._source_bytes}
        write_metadata(h5, self._metadata(counts), self.processing.compression_level)
        for name, attrs in DATASET_ATTRS.items():
            if name in h5:
                h5[name].attrs.update(attrs)
        if self.mode_2018:
            h5["rows"].attrs["value_dtype"] = "int64 (float64 for the (0, 0) image)"
        h5.attrs.update(self._attrs())
        h5.close()
        self._verify(images, int(image_rows.sum()))
        digest = file_digest(self._h5_tmp)
        hdf5_bytes = self._h5_tmp.stat().st_size
        self.output = RecordOutput(
            hdf5=hdf5_path(self.folder, self.record_id),
            metadata=metadata_path(self.folder, self.record_id), layout=self.layout,
            dtype=self._images.dtype.name, images=images, files=len(self._index),
            skipped=len(self._skipped), source_bytes=self._source_bytes,
            hdf5_bytes=hdf5_bytes, hdf5_sha256=digest, redactions=len(self._redactions))
        meta = self._metadata(counts)
        meta["hdf5"] = {"file": self.output.hdf5.name, "bytes": hdf5_bytes, "sha256": digest,
                        "layout": self.layout, "dtype": self.output.dtype}
        self._json_tmp.write_text(dumps_json(meta), encoding="utf-8")

    def _verify(self, images: int, rows: int) -> None:
        """Reopen the temporary file and check it holds what was written."""
        name = self._images.name
        expected = rows if self.mode_2018 else images
        with h5py.File(self._h5_tmp, "r") as h5:
            got = (len(h5[name]), len(h5["files"]), h5.attrs["layout"])
            if len(h5[name]):
                h5[name][-1]  # decompress the last chunk: the data is readable
        if got != (expected, len(self._index), self.layout):
            raise PipelineError("the HDF5 file read back differs from what was written",
                                stage="store", record=self.record_id,
                                expected=(expected, len(self._index), self.layout), got=got,
                                hint="the disk may be full or failing; nothing was published")

    def _small_opts(self, n: int) -> dict[str, Any]:
        level = self.processing.compression_level
        return {"chunks": True, "compression": "gzip", "compression_opts": level} if n and level \
            else {}

    def _metadata(self, counts: Mapping[str, int]) -> dict[str, Any]:
        """The record's metadata; the JSON file beside the HDF5 adds the file's own checksum."""
        return {
            "format": FORMAT + "-metadata", "format_version": FORMAT_VERSION,
            "record_id": self.record_id, "pipeline_version": __version__,
            "record": self.record, "labels": self.labels,
            "processing": dataclasses.asdict(self.processing),
            "transform": transform_key(self.processing), "layout": self.layout,
            "dtype": self._images.dtype.name,
            "value_dtype": "int64" if self.mode_2018 else self._images.dtype.name,
            "sources": self._sources, "tree": self._tree, "skipped": self._skipped,
            "counts": dict(counts),
            "redaction": redaction_summary(self.processing, len(self._redactions)),
            "redactions": self._redactions,
        }


def write_metadata(group: h5py.Group, metadata: Mapping[str, Any], level: int) -> None:
    """Store ``metadata`` in ``group`` as gzip-compressed JSON bytes (``metadata.json``).

    Why bytes and not a string: a JSON document of a few kilobytes per record was, as a string,
    the largest part of a small record (the tree and the Zenodo record repeat themselves and
    compress about tenfold). The gzip stream is kept as is, so ``gzip.decompress`` reads it
    without HDF5 filters, in any language.
    """
    text = dumps_json(dict(metadata)).encode("utf-8")
    data = np.frombuffer(gzip.compress(text, compresslevel=max(level, 6), mtime=0), np.uint8)
    if METADATA in group:
        del group[METADATA]
    group.create_dataset(METADATA, data=data, track_times=False)
    group[METADATA].attrs.update(DATASET_ATTRS[METADATA])


def write_record(folder: str | os.PathLike[str], record_id: str,
                 archives: Sequence[SourceArchive], *, processing: Processing,
                 record: Mapping[str, Any] | None = None,
                 labels: Mapping[str, Any] | None = None,
                 flush_bytes: int = FLUSH_BYTES) -> RecordOutput:
    """Convert and store every archive of one record: the one call the orchestrator needs.

    Raises :class:`~pipeline.errors.ArchiveError` (hostile or corrupt archive) or another
    :class:`~pipeline.errors.PipelineError`; then nothing is left in ``folder``.
    """
    keys = [a.key for a in archives]
    if len(set(keys)) != len(keys):
        raise ValueError(f"archive keys must differ within a record, got {keys}")
    with RecordWriter(folder, record_id, processing=processing, record=record, labels=labels,
                      flush_bytes=flush_bytes) as writer:
        for archive in archives:
            writer.add_archive(archive)
    assert writer.output is not None
    return writer.output


def copy_record(source: h5py.Group, destination: h5py.Group) -> None:
    """Copy one record's datasets and attributes into ``destination`` (for part files).

    HDF5 copies the compressed chunks as they are (no recompression). The loader reads a record
    group the same wherever it sits: the root of ``<id>.h5`` or a group of a version's part file.
    """
    for name in ("images", "rows", "image_rows", "files", METADATA):
        if name in source:
            source.copy(source[name], destination, name=name)
    destination.attrs.update(dict(source.attrs))
