"""Write temp, verify, replace (STYLE guideline 3), and ``"alg:hex"`` checksums of files.

Why: the pipeline is killed by CI time limits and by people pressing cancel. Every file it writes
(downloads, HDF5, state, plans, version folders) must be either the old complete file or the new
complete file, never a truncated mix. A temporary name in the *same* directory makes
``os.replace`` atomic on POSIX; ``fsync`` makes the bytes durable before the rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# mkstemp creates files readable by their owner only; outputs and published versions should get
# the permissions any new file gets (umask read once: os.umask can only be read by setting it).
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The caller writes (and may verify) the temporary file inside the ``with`` block. On an
    exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any, *, indent: int | None = 1) -> str:
    """Deterministic JSON (sorted keys, UTF-8 kept), so committed files diff line by line."""
    return json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 1) -> None:
    atomic_write_text(path, dumps_json(obj, indent=indent))


def file_digest(path: str | os.PathLike[str], alg: str = "sha256") -> str:
    """``"alg:hex"`` of a file, read in 1 MiB blocks."""
    h = hashlib.new(alg)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return f"{alg}:{h.hexdigest()}"
