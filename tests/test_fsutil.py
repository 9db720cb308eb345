"""safe_join: the one place a folder is joined with a name that came from elsewhere."""

from pathlib import Path

import pytest

from pipeline.fsutil import UnsafePathError, file_digest, file_digests, safe_join


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "..\\x", "a\0b", ""])
def test_names_that_leave_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path / "downloads", "md5", name)


def test_a_symlink_inside_that_points_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path / "work", "link", "x.json")
    assert safe_join(tmp_path / "work", "md5", "ab" * 16) == tmp_path / "work" / "md5" / ("ab" * 16)


def test_one_read_gives_every_digest(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    both = file_digests(path, ("md5", "sha256"))
    assert both["md5"] == "md5:900150983cd24fb0d6963f7d28e17f72"
    assert both["sha256"] == file_digest(path)
