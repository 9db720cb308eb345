"""Write temp, verify, replace (STYLE guideline 3), ``"alg:hex"`` checksums of files, and the one
place that joins a folder with a name taken from elsewhere (:func:`safe_join`).

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


def file_digests(path: str | os.PathLike[str], algs: tuple[str, ...] = ("sha256",)
                 ) -> dict[str, str]:
    """``{alg: "alg:hex"}`` of a file for every algorithm in ``algs``, in one read (1 MiB blocks).

    Why one helper: downloads need md5 (what Zenodo publishes) and sha256 (what we record) of
    the same bytes; reading a 2 GB archive twice would double the cost.
    """
    hashes = {alg: hashlib.new(alg, usedforsecurity=False) for alg in algs}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            for h in hashes.values():
                h.update(block)
    return {alg: f"{alg}:{h.hexdigest()}" for alg, h in hashes.items()}


def file_digest(path: str | os.PathLike[str], alg: str = "sha256") -> str:
    """``"alg:hex"`` of a file, read in 1 MiB blocks."""
    return file_digests(path, (alg,))[alg]


class UnsafePathError(ValueError):
    """A name would make a path outside its folder (raised by :func:`safe_join`)."""


def safe_join(folder: str | os.PathLike[str], *names: str) -> Path:
    """``folder / names...``, guaranteed to stay inside ``folder``.

    Why: ids, checksums and file keys come from services; they are validated where they enter
    (:mod:`pipeline.records`), and this is the second line: every path made from such a name goes
    through here. Each name must be a plain relative path (no NUL, no absolute path, no ``..``);
    the joined path, with symlinks resolved, must lie under the resolved folder.
    """
    base = Path(folder)
    out = base
    for name in names:
        if not name or "\0" in name or name.startswith(("/", "\\")) or any(
                part == ".." for part in name.replace("\\", "/").split("/")):
            raise UnsafePathError(f"{name!r} cannot name a file inside {base}")
        out = out / name
    root = base.resolve()
    if out.resolve() != root and root not in out.resolve().parents:
        raise UnsafePathError(f"{out} leaves {base}")
    return out
