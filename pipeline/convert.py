"""Source files to "code images": the transform of SPEC section 5, vectorised with numpy.

Why vectorised: the 2018 transform built every image character by character in Python
(``ord`` per character, a pandas frame per image) and managed about 1-3 MB/s; a continuous
pipeline has to keep up with Zenodo on a CI runner. Here a file becomes one array of code points
(``np.frombuffer`` on its UTF-32 encoding, or on the bytes themselves for ASCII files), line breaks
and tabs are found with numpy, and every character is scattered into a ``(pages * height,
width)`` array pre-filled with spaces in one indexed assignment. No Python loop runs per character
or per line; ``benchmarks/bench_transform.py`` measures the difference.

Default mode (SPEC section 5, each rule tested in ``tests/test_convert.py``): skip files larger
than ``max_file_bytes``, binary files (a NUL byte in the first 8 KiB) unless ``binary_policy`` is
``include``, and files under an excluded directory (matched by path *component*); decode UTF-8
with U+FFFD for invalid bytes; ``\\r\\n`` and a lone ``\\r`` end a line; tabs expand to tab stops
of ``tab_width``; a trailing newline adds no line; lines are cut at ``width`` and padded with 32;
pages of ``height`` lines, the last one padded; an empty file has no images; values are code
points in the narrowest unsigned type that holds them.

``mode: zenodo-ml-2018`` reproduces the 2018 scripts rule by rule, defects included
(reference/ZENODO_ML_2018.md, "File selection" and "Text to image"): ``<=`` for the listing but
``<`` for images, the substring ``.git`` anywhere in the path, no binary filter, ``'ignore'``
decoding, ``\\r`` deleted, each tab exactly four spaces (the 2018 code had no tab-width setting,
so ``tab_width`` is ignored; width and height were parameters and are honoured), ``split('\\n')``,
full images while ``start + height < len(lines)``, the remainder ``lines[start:len(lines) - 1]``
unpadded (1 to height-1 rows), a single remaining element iterated character by character (rule
9), a single empty element giving a float64 ``(0, 0)`` image (rule 10: pandas' empty frame),
int64 values otherwise. The direct per-character port, :func:`reference_images_2018`, is kept
as the executable specification that the tests and the benchmark compare the vectorised mode
with.

Paths are filtered on the member's path inside its archive; the archive key the record's files are
prefixed with (so several archives of one record never collide, unlike 2018 where the last one
won) is not part of what the filters see.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import posixpath
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.code_images import SPACE, split_rows_2018
from pipeline.errors import ConvertError
from pipeline.extract import ArchiveLimits, Kind, Member, iter_members
from pipeline.manifest import Processing
from pipeline.redact import Redaction, redact

BINARY_SNIFF_BYTES = 8192
TAB_SPACES_2018 = 4
MODE_2018 = "zenodo-ml-2018"
Reason = Literal["too-large", "binary", "excluded-dir", "git-substring", "link", "duplicate",
                 "unreadable", "unsupported-type"]
_UINTS = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32))


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A file (or link) that produced no images, and why; it goes into the record's metadata."""

    path: str
    size: int
    reason: Reason
    detail: str
    kind: Kind = "file"

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "size": self.size, "reason": self.reason,
                "detail": self.detail, "kind": self.kind}


@dataclasses.dataclass(frozen=True, eq=False)
class ConvertedFile:
    """One converted file: its images and the facts the per-file index keeps.

    Default mode: ``images`` is ``(count, height, width)``. 2018 mode: images differ in shape, so
    ``images`` holds their rows stacked, ``(sum(image_rows), width)``, and ``image_rows`` the row
    count of each image (0 stands for the ``(0, 0)`` image of rule 10); :meth:`image_list` gives
    the 2018 arrays back.
    """

    path: str
    size: int
    sha256: str  # hex digest of the file's bytes
    extension: str
    images: np.ndarray
    image_rows: np.ndarray | None = None
    redactions: tuple[Redaction, ...] = ()  # secrets masked before the transform

    @property
    def image_count(self) -> int:
        return len(self.image_rows) if self.image_rows is not None else len(self.images)

    def image_list(self) -> list[np.ndarray]:
        """The images as separate arrays (2018 mode: int64 and of varying shape, as in 2018)."""
        if self.image_rows is None:
            return list(self.images)
        return split_rows_2018(self.images, self.image_rows)


@dataclasses.dataclass
class ConvertedArchive:
    """Everything :func:`convert_archive` found in one archive (small archives and tests)."""

    processing: Processing
    files: list[ConvertedFile] = dataclasses.field(default_factory=list)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)

    def images(self) -> np.ndarray | list[np.ndarray]:
        """Default mode: all images as one ``(N, h, w)`` array of the narrowest dtype.
        2018 mode: the list of 2018 arrays, file after file."""
        if self.processing.mode == MODE_2018:
            return [image for f in self.files for image in f.image_list()]
        arrays = [f.images for f in self.files]
        if not arrays:
            p = self.processing
            return np.empty((0, p.image_height, p.image_width), np.uint8)
        return np.concatenate(arrays).astype(narrowest_uint(arrays), copy=False)

    def index(self) -> list[dict[str, object]]:
        """The per-file index rows, as :mod:`pipeline.store` writes them: a file's images are
        ``images()[first_image : first_image + image_count]``."""
        rows: list[dict[str, object]] = []
        first = 0
        for f in self.files:
            rows.append({"path": f.path, "first_image": first, "image_count": f.image_count,
                         "size": f.size, "sha256": f.sha256, "extension": f.extension})
            first += f.image_count
        return rows


# --- the transform ----------------------------------------------------------------------------

def narrowest_uint(arrays: Iterable[np.ndarray]) -> np.dtype:
    """The narrowest of uint8/uint16/uint32 that holds every value of ``arrays``."""
    top = 0
    for a in arrays:
        if a.size and a.dtype != np.uint8:
            top = max(top, int(a.max()))
    return next(d for d in _UINTS if top <= np.iinfo(d).max)


def decode_code_points(data: bytes, *, errors: Literal["replace", "ignore"]) -> np.ndarray:
    """The code points of UTF-8 ``data`` in the narrowest unsigned dtype that holds them.

    ASCII needs no decoding; text within Latin-1 is encoded to it (one byte per code point);
    anything else goes through UTF-32 and is narrowed to uint16 when it has no astral code point.
    Everything downstream then moves as few bytes as the text needs.
    """
    if data.isascii():
        return np.frombuffer(data, dtype=np.uint8)
    text = data.decode("utf-8", errors)
    try:
        return np.frombuffer(text.encode("latin-1"), dtype=np.uint8)
    except UnicodeEncodeError:
        cp = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    return cp.astype(np.uint16) if int(cp.max()) <= 0xFFFF else cp


def _fit(values: np.ndarray) -> np.ndarray:
    """``values`` in the narrowest dtype for what they hold (a wide character may have been cut
    off past ``width``, so the text's dtype can be wider than its images need)."""
    if values.dtype == np.uint8 or not values.size:
        return values
    dtype = narrowest_uint([values])
    return values if dtype == values.dtype else values.astype(dtype)


def _line_bounds(cp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(is_break, starts, ends)`` of every ``\n``-separated element, as ``str.split`` sees
    them (ends exclusive)."""
    is_break = cp == 10
    breaks = is_break.nonzero()[0]
    return is_break, np.concatenate(([0], breaks + 1)), np.append(breaks, len(cp))


@functools.lru_cache(maxsize=8)
def _cell_table(width: int) -> np.ndarray:
    """Row ``k``: the first ``k`` of ``width`` cells are filled (a line of ``k`` characters)."""
    table = np.arange(width)[None, :] < np.arange(width + 1)[:, None]
    table.flags.writeable = False
    return table


def _scatter_lines(rows: np.ndarray, cp: np.ndarray, is_break: np.ndarray, starts: np.ndarray,
                   ends: np.ndarray) -> None:
    """Write line ``k`` (cut at the width) into row ``k`` of the space-filled 2-D ``rows``.

    The lines are a prefix of ``cp``'s lines. Two boolean masks do it: one over ``cp`` keeps the
    characters that land in the image (no breaks, nothing past the width), one over the rows
    marks the cells they fill (a row of a lookup table per line, copied by ``np.take``); numpy
    fills masked cells in row-major order, that is line by line.
    """
    if not len(starts):
        return
    width = rows.shape[1]
    stop = int(ends[-1])
    keep = ~is_break[:stop]
    lengths = ends - starts
    long_lines = lengths > width
    if long_lines.any():  # drop what lies past the width: index only the characters cut off
        cut_starts = starts[long_lines] + width
        cut_lengths = lengths[long_lines] - width
        first_cut = np.cumsum(cut_lengths) - cut_lengths
        keep[np.repeat(cut_starts - first_cut, cut_lengths)
             + np.arange(int(cut_lengths.sum()))] = False
        lengths = np.minimum(lengths, width)
    cells = _cell_table(width).take(lengths, axis=0)
    rows[:len(starts)][cells] = cp[:stop][keep]


def _expand_tab_stops(cp: np.ndarray, tab_width: int) -> np.ndarray:
    """Replace each tab with the spaces up to the next multiple of ``tab_width``.

    After a tab the column is a multiple of ``tab_width``, and so is a line's start; so a tab's
    width depends only on how many characters lie between it and the previous tab or line start
    (``d``): ``tab_width - d % tab_width``. That makes the expansion one ``np.repeat``.
    """
    tabs = np.flatnonzero(cp == 9)
    breaks = np.flatnonzero(cp == 10)
    previous_tab = np.empty_like(tabs)
    previous_tab[0] = -1
    previous_tab[1:] = tabs[:-1]
    previous_break = np.concatenate(([-1], breaks))[np.searchsorted(breaks, tabs)]
    gap = tabs - np.maximum(previous_tab, previous_break) - 1
    repeats = np.ones(len(cp), np.intp)
    repeats[tabs] = tab_width - gap % tab_width
    spaced = cp.copy()
    spaced[tabs] = SPACE
    return np.repeat(spaced, repeats)


def text_to_images(data: bytes, *, width: int = 80, height: int = 80,
                   tab_width: int = 4) -> np.ndarray:
    """Default-mode images of one file: ``(pages, height, width)``, narrowest unsigned dtype."""
    cp = decode_code_points(data, errors="replace")
    if not len(cp):
        return np.empty((0, height, width), np.uint8)
    if b"\r" in data:  # "\r\n" is one break, a lone "\r" another: both become "\n"
        crlf = (cp[:-1] == 13) & (cp[1:] == 10)
        cp = cp[np.append(~crlf, True)] if crlf.any() else cp.copy()
        cp[cp == 13] = 10
    if b"\t" in data:
        cp = _expand_tab_stops(cp, tab_width)
    is_break, starts, ends = _line_bounds(cp)
    if cp[-1] == 10:  # a trailing newline ends the last line; it does not start another
        starts, ends = starts[:-1], ends[:-1]
    pages = -(-len(starts) // height)
    out = np.empty((pages * height, width), cp.dtype)
    out.fill(SPACE)
    _scatter_lines(out, cp, is_break, starts, ends)
    return _fit(out.reshape(pages, height, width))


def text_to_rows_2018(data: bytes, *, width: int = 80,
                      height: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """The 2018 images of one file as ``(rows stacked (R, width), rows per image (N,))``.

    Rule numbers refer to ZENODO_ML_2018.md, "Text to image". Values keep the narrowest unsigned
    dtype here (the store keeps them that way); :func:`text_to_images_2018` gives the int64 arrays.
    """
    cp = decode_code_points(data, errors="ignore")           # rule 1
    if b"\r" in data:
        cp = cp[cp != 13]                                     # rule 2: "\r" deleted
    if b"\t" in data:
        tabs = cp == 9                                        # rule 2: a tab is 4 spaces
        spaced = cp.copy()
        spaced[tabs] = SPACE
        cp = np.repeat(spaced, np.where(tabs, TAB_SPACES_2018, 1))
    is_break, starts, ends = _line_bounds(cp)                 # rule 3: split("\n")
    elements = len(starts)
    full = (elements - 1) // height                           # rule 6: start + height < len
    start, finish = full * height, elements - 1               # rule 7: lines[start:len - 1]
    if start == finish:                                       # rule 9: one element left
        last = cp[starts[start]:ends[start]]
        out = np.full((start + len(last), width), SPACE, cp.dtype)
        _scatter_lines(out, cp, is_break, starts[:start], ends[:start])
        out[start:, 0] = last                                 # one character per row
        remainder = len(last)                                 # rule 10: 0 rows -> (0, 0)
    else:
        out = np.full((finish, width), SPACE, cp.dtype)
        _scatter_lines(out, cp, is_break, starts[:finish], ends[:finish])
        remainder = finish - start                            # rule 8: 1..height-1 rows
    image_rows = np.full(full + 1, height, np.int64)
    image_rows[-1] = remainder
    return _fit(out), image_rows


def text_to_images_2018(data: bytes, *, width: int = 80, height: int = 80) -> list[np.ndarray]:
    """The 2018 images of one file, exactly as 2018 made them (a list of int64 arrays)."""
    return split_rows_2018(*text_to_rows_2018(data, width=width, height=height))


def reference_images_2018(data: bytes, *, width: int = 80, height: int = 80) -> list[np.ndarray]:
    """A direct port of the 2018 per-character transform: the executable specification.

    Same control flow as 2018 (ZENODO_ML_2018.md rules 1-10), character by character; only the
    final ``pandas.DataFrame(rows).loc[:, 0:width - 1].values`` is written with numpy (pandas is
    not a dependency): rows are cut at ``width``; no rows gives the ``(0, 0)`` array pandas
    gives for ``DataFrame([]).values``, whose dtype is float64 (not int64).
    """
    text = data.decode("utf-8", "ignore")
    lines = text.replace("\r", "").replace("\t", " " * TAB_SPACES_2018).split("\n")
    images: list[list[list[int]]] = []

    def ordinals(subset: Iterable[str]) -> list[list[int]]:
        padded = [list(line) + (width - len(line)) * [" "] for line in subset]
        return [[ord(ch) for ch in line] for line in padded]

    start = 0
    finish = start + height
    while finish < len(lines):
        finish = start + height
        images.append(ordinals(lines[start:finish]))
        start = finish
        finish = start + height
    if start < len(lines):
        finish = len(lines) - 1
        # a str when one element is left: iterating it yields characters (rule 9)
        subset = lines[start] if start == finish else lines[start:finish]
        images.append(ordinals(subset))
    return [np.array([row[:width] for row in rows], dtype=np.int64) if rows
            else np.zeros((0, 0), np.float64) for rows in images]


# --- file selection and conversion ------------------------------------------------------------

def file_extension(path: str) -> str:
    """Lower-case extension without the dot (``"py"``); ``""`` for ``Makefile`` or ``.bashrc``."""
    return posixpath.splitext(posixpath.basename(path))[1][1:].lower()


def select(path: str, size: int, processing: Processing) -> Skipped | None:
    """Decide from path and size alone whether a file is skipped (pure; no bytes read)."""
    limit = processing.max_file_bytes
    if processing.mode == MODE_2018:
        if ".git" in path:
            return Skipped(path, size, "git-substring",
                           "2018 rule: '.git' occurs in the path (also drops .github/, "
                           ".gitignore)")
        if size >= limit:
            listed = "listed in the 2018 tree (<=) but" if size == limit else "not listed and"
            return Skipped(path, size, "too-large",
                           f"2018 rule: {size} bytes, {listed} no images unless < {limit}")
        return None
    excluded = set(processing.exclude_dirs).intersection(path.split("/")[:-1])
    if excluded:
        return Skipped(path, size, "excluded-dir", f"under an excluded directory "
                                                   f"({', '.join(sorted(excluded))})")
    if size > limit:
        return Skipped(path, size, "too-large", f"{size} bytes > max_file_bytes {limit}")
    return None


def listed_2018(path: str, size: int, processing: Processing) -> bool:
    """Whether the 2018 scripts put the file in their tree (``<=`` the size limit, no ``.git``)."""
    return ".git" not in path and size <= processing.max_file_bytes


def convert_bytes(path: str, data: bytes, processing: Processing) -> ConvertedFile | Skipped:
    """Convert one file's bytes (already read) according to ``processing``."""
    size = len(data)
    skipped = select(path, size, processing)
    if skipped is not None:
        return skipped
    mode_2018 = processing.mode == MODE_2018
    if (not mode_2018 and processing.binary_policy == "skip"
            and b"\0" in data[:BINARY_SNIFF_BYTES]):
        return Skipped(path, size, "binary", f"NUL byte in the first {BINARY_SNIFF_BYTES} bytes")
    data, redactions = redact(path, data, processing.redact)  # before anything is derived
    width, height = processing.image_width, processing.image_height
    try:
        if mode_2018:
            rows, image_rows = text_to_rows_2018(data, width=width, height=height)
        else:
            rows, image_rows = text_to_images(data, width=width, height=height,
                                              tab_width=processing.tab_width), None
    except ValueError as exc:
        raise ConvertError(f"file {path!r} could not be converted: {exc}", stage="convert",
                           hint="report this file; it is a bug in the transform") from exc
    # sha256 of the redacted bytes: a digest of the original would let anyone test guesses of
    # a short password against it
    return ConvertedFile(path, size, hashlib.sha256(data).hexdigest(), file_extension(path),
                         rows, image_rows, redactions)


_KIND_REASONS: dict[str, Reason] = {"symlink": "link", "hardlink": "link",
                                    "duplicate": "duplicate", "other": "unsupported-type",
                                    "file": "unreadable"}


def convert_member(member: Member, processing: Processing, *,
                   prefix: str = "") -> ConvertedFile | Skipped:
    """Convert one archive member; reads at most ``max_file_bytes + 1`` bytes of it."""
    path = f"{prefix}/{member.path}" if prefix else member.path
    if member.skip_reason is not None:
        return Skipped(path, member.size, _KIND_REASONS[member.kind], member.skip_reason,
                       member.kind)
    skipped = select(member.path, member.size, processing)
    if skipped is not None:
        return Skipped(path, skipped.size, skipped.reason, skipped.detail)
    data = member.read(processing.max_file_bytes + 1)  # the header's size may be wrong
    result = convert_bytes(member.path, data, processing)
    if isinstance(result, Skipped):
        return Skipped(path, result.size, result.reason, result.detail)
    return dataclasses.replace(result, path=path)


def iter_archive(archive: str | Path, *, processing: Processing, prefix: str = "",
                 record: str | None = None) -> Iterator[ConvertedFile | Skipped]:
    """Convert every member of one archive, streaming: one file's images in memory at a time.

    ``prefix`` (the archive's key in the record) is prepended to every path. Raises
    :class:`~pipeline.errors.ArchiveError` for a corrupt or hostile archive.
    """
    limits = ArchiveLimits.from_processing(processing)
    for member in iter_members(archive, limits=limits, record=record, name=prefix or None):
        yield convert_member(member, processing, prefix=prefix.strip("/"))


def convert_archive(archive: str | Path, *, processing: Processing, prefix: str = "",
                    record: str | None = None) -> ConvertedArchive:
    """All of one archive in memory: images, per-file results and skipped files.

    For archives of any size use :func:`pipeline.store.write_record`, which streams.
    """
    result = ConvertedArchive(processing)
    for item in iter_archive(archive, processing=processing, prefix=prefix, record=record):
        if isinstance(item, Skipped):
            result.skipped.append(item)
        else:
            result.files.append(item)
    return result
