"""The image transform in both modes, rule by rule (SPEC section 5; ZENODO_ML_2018.md).

Default mode is checked against hand-written expectations and against a plain per-line Python
implementation of SPEC section 5; the 2018 mode against the rules of ZENODO_ML_2018.md and against
the direct per-character port of the 2018 code.
"""

from __future__ import annotations

import dataclasses
import io
import random
import tarfile

import numpy as np
import pytest

from pipeline.convert import (
    ConvertedFile,
    Skipped,
    convert_archive,
    convert_bytes,
    decode_code_points,
    file_extension,
    narrowest_uint,
    reference_images_2018,
    split_rows_2018,
    text_to_images,
    text_to_images_2018,
    text_to_rows_2018,
)
from pipeline.manifest import Processing, default_processing

W = H = 80
BLANK = [32] * W


def processing(**changes: object) -> Processing:
    return default_processing(**changes)


P2018 = processing(mode="zenodo-ml-2018")


def row(text: str) -> list[int]:
    values = [ord(c) for c in text][:W]
    return values + [32] * (W - len(values))


def lines_of(images: np.ndarray) -> list[list[int]]:
    return images.reshape(-1, W).tolist()


def reference_default(data: bytes, width: int = W, height: int = H, tab: int = 4) -> np.ndarray:
    """SPEC section 5 written the obvious way, one line and one character at a time."""
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if text.endswith("\n") or not text:
        lines.pop()
    rows = []
    for line in lines:
        cells: list[int] = []
        for ch in line:
            cells += [32] * (tab - len(cells) % tab) if ch == "\t" else [ord(ch)]
        rows.append((cells + [32] * width)[:width])
    while len(rows) % height:
        rows.append([32] * width)
    return np.array(rows, dtype=np.int64).reshape(-1, height, width)


# --- default mode -----------------------------------------------------------------------------

def test_empty_file_has_no_images() -> None:
    assert text_to_images(b"").shape == (0, H, W)
    converted = convert_bytes("a/empty.py", b"", processing())
    assert isinstance(converted, ConvertedFile) and converted.image_count == 0


def test_trailing_newline_adds_no_line_and_its_absence_loses_nothing() -> None:
    with_nl, without = text_to_images(b"a\nb\n"), text_to_images(b"a\nb")
    assert with_nl.shape == without.shape == (1, H, W)
    assert np.array_equal(with_nl, without)
    assert lines_of(with_nl)[:3] == [row("a"), row("b"), BLANK]
    assert lines_of(text_to_images(b"\n")) == [BLANK] * H  # one empty line: one blank page


@pytest.mark.parametrize(("n_lines", "pages"), [(79, 1), (80, 1), (81, 2), (160, 2), (161, 3)])
def test_pages_of_height_lines_last_one_padded(n_lines: int, pages: int) -> None:
    data = "".join(f"line {i}\n" for i in range(n_lines)).encode()
    images = text_to_images(data)
    assert images.shape == (pages, H, W)
    rows = lines_of(images)
    assert rows[n_lines - 1] == row(f"line {n_lines - 1}")
    assert rows[n_lines:] == [BLANK] * (pages * H - n_lines)


def test_crlf_and_lone_cr_end_lines() -> None:
    expected = text_to_images(b"a\nb\n")
    assert np.array_equal(text_to_images(b"a\r\nb\r\n"), expected)
    assert np.array_equal(text_to_images(b"a\rb\r"), expected)
    assert lines_of(text_to_images(b"a\r\r\nb"))[:3] == [row("a"), BLANK, row("b")]


@pytest.mark.parametrize(("text", "expected"), [
    ("\tx", "    x"), ("ab\tc", "ab  c"), ("abcd\te", "abcd    e"), ("a\t\tb", "a       b"),
    ("é\tx", "é   x"),
])
def test_tabs_expand_to_tab_stops(text: str, expected: str) -> None:
    assert lines_of(text_to_images(text.encode()))[0] == row(expected)


def test_tab_width_is_a_setting() -> None:
    assert lines_of(text_to_images(b"ab\tc", tab_width=8))[0] == row("ab      c")


def test_long_lines_are_cut_at_width() -> None:
    rows = lines_of(text_to_images(b"x" * 85 + b"\t\n" + b"y" * 80 + b"\nz"))
    assert rows[:3] == [[ord("x")] * W, [ord("y")] * W, row("z")]


@pytest.mark.parametrize(("text", "value", "dtype"), [
    ("é", 233, np.uint8), ("€", 8364, np.uint16), ("😀", 128512, np.uint32),
])
def test_code_points_in_the_narrowest_dtype(text: str, value: int, dtype: type) -> None:
    images = text_to_images(f"a{text}b\n".encode())
    assert images.dtype == dtype
    assert lines_of(images)[0][:3] == [97, value, 98]


def test_a_wide_character_cut_off_does_not_widen_the_images() -> None:
    assert text_to_images(("x" * 90 + "😀\n").encode()).dtype == np.uint8


def test_invalid_utf8_becomes_replacement_character() -> None:
    images = text_to_images(b"a\xffb\xc3\n")
    assert lines_of(images)[0][:4] == [97, 0xFFFD, 98, 0xFFFD]
    assert images.dtype == np.uint16


def test_binary_files_are_skipped_unless_included() -> None:
    data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
    skipped = convert_bytes("logo.png", data, processing())
    assert isinstance(skipped, Skipped) and skipped.reason == "binary"
    included = convert_bytes("logo.png", data, processing(binary_policy="include"))
    assert isinstance(included, ConvertedFile) and included.image_count == 1
    late_nul = b"x" * 8192 + b"\x00"  # only the first 8 KiB are sniffed
    assert isinstance(convert_bytes("a.txt", late_nul, processing()), ConvertedFile)


@pytest.mark.parametrize("limit", [100, 100_000])
def test_file_of_exactly_max_file_bytes_is_converted_one_more_is_skipped(limit: int) -> None:
    p = processing(max_file_bytes=limit)
    assert isinstance(convert_bytes("f.txt", b"x" * limit, p), ConvertedFile)
    too_big = convert_bytes("f.txt", b"x" * (limit + 1), p)
    assert isinstance(too_big, Skipped) and too_big.reason == "too-large"


@pytest.mark.parametrize(("path", "skipped"), [
    (".git/config", True), ("proj/.git/HEAD", True), ("proj/.hg/store", True),
    (".github/workflows/ci.yml", False), ("proj/.gitignore", False),
    ("user.github.io/index.html", False), ("proj/git/x.py", False), ("proj/my.git/x", False),
])
def test_excluded_directories_match_path_components_not_substrings(path: str,
                                                                   skipped: bool) -> None:
    result = convert_bytes(path, b"x\n", processing())
    assert isinstance(result, Skipped) == skipped
    if skipped:
        assert result.reason == "excluded-dir"


def _random_inputs(count: int, seed: int) -> list[bytes]:
    pieces = [b"a", b"bc", b" ", b"\t", b"\n", b"\r", b"\r\n", "é".encode(), "€".encode(),
              "😀".encode(), b"\xff", b"\xc3", b"\x00", b"x" * 85, b"\n" * 79, b"\n" * 81]
    rng = random.Random(seed)
    return [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
            for _ in range(count)]


@pytest.mark.parametrize(("width", "height"), [(80, 80), (5, 3), (1, 1), (3, 2)])
def test_default_mode_equals_the_per_line_reference(width: int, height: int) -> None:
    for data in _random_inputs(400, seed=width * 100 + height):
        got = text_to_images(data, width=width, height=height)
        expected = reference_default(data, width, height)
        assert got.shape == expected.shape, data
        assert np.array_equal(got, expected), data


# --- zenodo-ml-2018 mode (rule numbers of ZENODO_ML_2018.md "Text to image") -----------------

def shapes(images: list[np.ndarray]) -> list[tuple[int, ...]]:
    return [image.shape for image in images]


def test_2018_empty_file_gives_one_empty_array() -> None:  # rule 10
    images = text_to_images_2018(b"")
    # 2018 built each image with pandas; DataFrame([]).values is float64, not int64
    assert shapes(images) == [(0, 0)] and images[0].dtype == np.float64


def test_2018_single_line_without_newline_is_iterated_by_character() -> None:  # rule 9
    (image,) = text_to_images_2018(b"hello")
    assert image.shape == (5, W)
    assert image.tolist() == [[ord(c)] + [32] * (W - 1) for c in "hello"]


def test_2018_last_line_without_newline_is_lost() -> None:  # rule 7
    (image,) = text_to_images_2018(b"a\nb")
    assert image.tolist() == [row("a")]
    (image,) = text_to_images_2018(b"a\nb\n")
    assert image.tolist() == [row("a"), row("b")]


@pytest.mark.parametrize(("n_lines", "newline", "expected"), [
    (80, True, [(80, 80), (0, 0)]),    # rule 10: exactly 80 lines + newline
    (80, False, [(79, 80)]),           # rule 7: the last line is lost
    (81, True, [(80, 80), (1, 80)]),   # rule 8: unpadded remainder
    (81, False, [(80, 80), (6, 80)]),  # rule 9: "line80" iterated by character
    (79, True, [(79, 80)]),
    (160, True, [(80, 80), (80, 80), (0, 0)]),
])
def test_2018_full_images_and_remainders(n_lines: int, newline: bool,
                                         expected: list[tuple[int, int]]) -> None:
    data = "\n".join(f"line{i}" for i in range(n_lines)) + ("\n" if newline else "")
    images = text_to_images_2018(data.encode())
    assert shapes(images) == expected
    assert images[0][0].tolist() == row("line0")


def test_2018_carriage_returns_are_deleted() -> None:  # rule 2
    assert [i.tolist() for i in text_to_images_2018(b"a\r\nb\r\n")] == [[row("a"), row("b")]]
    assert [i.tolist() for i in text_to_images_2018(b"a\rb\nc\n")] == [[row("ab"), row("c")]]


def test_2018_tabs_are_four_spaces_not_tab_stops() -> None:  # rule 2
    (image,) = text_to_images_2018(b"ab\tc\n\tx\n")
    assert image.tolist() == [row("ab    c"), row("    x")]
    p = dataclasses.replace(P2018, tab_width=8)  # the 2018 code had no tab width setting
    converted = convert_bytes("t.py", b"ab\tc\n\n", p)
    assert isinstance(converted, ConvertedFile)
    assert converted.image_list()[0].tolist()[0] == row("ab    c")


def test_2018_long_lines_are_cut_and_values_are_int64_code_points() -> None:  # rules 4, 5
    (image,) = text_to_images_2018(("x" * 90 + "\né€😀\n\n").encode())
    assert image.dtype == np.int64
    assert image.tolist()[:2] == [[ord("x")] * W, [233, 8364, 128512] + [32] * (W - 3)]


def test_2018_invalid_utf8_is_dropped() -> None:  # rule 1
    (image,) = text_to_images_2018(b"a\xffb\xc3\n\n")
    assert image.tolist()[0] == row("ab")


def test_2018_has_no_binary_filter() -> None:
    converted = convert_bytes("x.pyc", b"\x00\x01\x02\n\n", P2018)
    assert isinstance(converted, ConvertedFile)
    assert converted.image_list()[0].tolist()[0][:3] == [0, 1, 2]


def test_2018_size_limit_lists_at_most_but_converts_below() -> None:
    p = dataclasses.replace(P2018, max_file_bytes=100)
    assert isinstance(convert_bytes("f.txt", b"x" * 99, p), ConvertedFile)
    at_limit = convert_bytes("f.txt", b"x" * 100, p)
    assert isinstance(at_limit, Skipped) and at_limit.reason == "too-large"
    assert "listed" in at_limit.detail and "not listed" not in at_limit.detail
    above = convert_bytes("f.txt", b"x" * 101, p)
    assert isinstance(above, Skipped) and "not listed" in above.detail


@pytest.mark.parametrize(("path", "skipped"), [
    (".git/config", True), (".github/workflows/ci.yml", True), ("proj/.gitignore", True),
    ("proj/.gitattributes", True), ("user.github.io/index.html", True),
    ("proj/.hg/store", False), ("proj/git/x.py", False),
])
def test_2018_skips_any_path_containing_dot_git(path: str, skipped: bool) -> None:
    result = convert_bytes(path, b"x\n\n", P2018)
    assert isinstance(result, Skipped) == skipped
    if skipped:
        assert result.reason == "git-substring"


EDGE_CASES = [b"", b"\n", b"hello", b"a\nb", b"a\nb\n", b"\r", b"\r\n", b"\t", b"x" * 200,
              b"\n" * 80, b"\n" * 81, b"\n" * 79, b"a\n" * 80, b"a\n" * 80 + b"b",
              "é€😀".encode(), b"\xff\xfe", b"\x00" * 10, "\n".join(["y" * 100] * 170).encode()]


@pytest.mark.parametrize("data", EDGE_CASES)
@pytest.mark.parametrize(("width", "height"), [(80, 80), (4, 3), (1, 1)])
def test_vectorised_2018_equals_the_per_character_port(data: bytes, width: int,
                                                       height: int) -> None:
    got = text_to_images_2018(data, width=width, height=height)
    expected = reference_images_2018(data, width=width, height=height)
    assert shapes(got) == shapes(expected)
    assert all(g.dtype == e.dtype == (np.float64 if e.shape == (0, 0) else np.int64)
               and np.array_equal(g, e) for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_2018_equals_the_port_on_random_text(seed: int) -> None:
    rng = random.Random(seed)
    for data in _random_inputs(300, seed):
        width, height = rng.choice([(80, 80), (7, 5), (2, 3), (1, 1)])
        got = text_to_images_2018(data, width=width, height=height)
        expected = reference_images_2018(data, width=width, height=height)
        assert shapes(got) == shapes(expected), data
        assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True)), data


def test_2018_rows_round_trip_through_split() -> None:
    data = b"a\n" * 80 + b"tail"  # rule 9: "tail" is the one element left
    rows, image_rows = text_to_rows_2018(data)
    assert rows.dtype == np.uint8 and image_rows.tolist() == [80, 4]
    assert shapes(split_rows_2018(rows, image_rows)) == [(80, 80), (4, 80)]


# --- helpers and archives ---------------------------------------------------------------------

def test_narrowest_uint() -> None:
    assert narrowest_uint([]) == np.uint8
    assert narrowest_uint([np.array([255], np.uint32)]) == np.uint8
    assert narrowest_uint([np.array([1], np.uint8), np.array([256], np.uint32)]) == np.uint16
    assert narrowest_uint([np.array([70000], np.uint32)]) == np.uint32


def test_decode_code_points_picks_narrow_types() -> None:
    assert decode_code_points(b"abc", errors="replace").dtype == np.uint8
    assert decode_code_points("é".encode(), errors="replace").tolist() == [233]
    assert decode_code_points("€".encode(), errors="replace").dtype == np.uint16
    assert decode_code_points("😀".encode(), errors="ignore").tolist() == [128512]


@pytest.mark.parametrize(("path", "ext"), [("a/b.PY", "py"), ("Makefile", ""), (".bashrc", ""),
                                          ("x.tar.gz", "gz"), ("dir.d/file", "")])
def test_file_extension(path: str, ext: str) -> None:
    assert file_extension(path) == ext


def _tar(path: object, files: dict[str, bytes]) -> None:
    with tarfile.open(str(path), "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("proj/link.py")
        link.type, link.linkname = tarfile.SYMTYPE, "main.py"
        tar.addfile(link)


def test_convert_archive_prefixes_paths_and_reports_skips(tmp_path: object) -> None:
    archive = tmp_path / "v1.tar.gz"  # type: ignore[operator]
    _tar(archive, {"proj/main.py": b"print('hi')\n", "proj/.git/HEAD": b"ref\n",
                   "proj/logo.png": b"\x89PNG\x00", "proj/big.txt": b"x" * 200})
    result = convert_archive(archive, processing=processing(max_file_bytes=100), prefix="v1.tgz")
    assert [f.path for f in result.files] == ["v1.tgz/proj/main.py"]
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons == {"v1.tgz/proj/.git/HEAD": "excluded-dir", "v1.tgz/proj/logo.png": "binary",
                       "v1.tgz/proj/big.txt": "too-large", "v1.tgz/proj/link.py": "link"}
    images = result.images()
    assert isinstance(images, np.ndarray) and images.shape == (1, H, W)
    assert lines_of(images)[0] == row("print('hi')")
    assert result.index() == [{"path": "v1.tgz/proj/main.py", "first_image": 0, "image_count": 1,
                               "size": 12, "sha256": result.files[0].sha256,
                               "extension": "py"}]


def test_convert_archive_in_2018_mode_returns_the_2018_list(tmp_path: object) -> None:
    archive = tmp_path / "a.tar.gz"  # type: ignore[operator]
    _tar(archive, {"p/a.py": b"hello", "p/b.py": b"", "p/.github/x.yml": b"on: push\n"})
    result = convert_archive(archive, processing=P2018)
    assert shapes(result.images()) == [(5, W), (0, 0)]  # type: ignore[arg-type]
    assert {s.reason for s in result.skipped} == {"git-substring", "link"}
