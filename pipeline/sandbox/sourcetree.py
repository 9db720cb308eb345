"""Deterministic source trees and the release archives built from them (zip and tar.gz).

Why: the pipeline's fetch, extract and convert stages must meet what real software archives hold,
not a tidy ``hello.py``. Every full tree therefore carries the awkward cases on purpose: tabs,
CRLF and lone-CR line ends, lines wider than 80 columns, non-ASCII text and emoji, invalid UTF-8,
a BOM, a file without a trailing newline, an empty file, a binary PNG (NUL bytes), a text file over
100 KB (above ``processing.max_file_bytes``), deep folders, ``.github/workflows/ci.yml``,
``.gitignore`` and a ``.git/`` folder, in a dozen languages.

Everything is a pure function of a :class:`Release` (owner, repo, tag, flavour, edition): the same
release always gives the same bytes (so an md5 computed once when a record is made matches every
later download), and versions of one software share most of their files: a new version edits a
few, as real release chains do (:func:`_evolve`). Archives are built on demand; only a bounded
number is kept in memory (:func:`archive_bytes` is an LRU cache) while their sizes and digests,
a few bytes each, are kept for good (:func:`archive_digest`). The bulk corpus (10,000+ records)
uses the ``small`` flavour.

Top folders follow the real producers: GitHub's codeload archives (``/{owner}/{repo}/tar.gz/{ref}``)
unpack into ``<repo>-<tag>/`` with a leading ``v`` of a version tag dropped (``v1.2.0`` gives
``<repo>-1.2.0/``); the zipball that Zenodo's GitHub integration stores as
``<owner>/<repo>-<tag>.zip`` unpacks into ``<owner>-<repo>-<short sha>/`` (ZENODO_API.md §2.1:
the key holds a slash). A pipeline must therefore never assume the top folder's name.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import random
import re
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import Literal

from pipeline.sandbox.secrets import Planted, planted_tree

ArchiveFormat = Literal["zip", "tar.gz"]
Flavour = Literal["full", "small"]

_WORDS = ("flux", "orbit", "kernel", "spectra", "genome", "lattice", "plasma", "tensor", "signal",
          "cohort", "delta", "sparse", "vector", "photon", "graph", "mesh", "tide", "cell")
_VERBS = ("fit", "load", "solve", "estimate", "render", "merge", "filter", "sample", "normalise")
_STATIONS = ("Zürich", "São Paulo", "Kraków", "Reykjavík", "Dakar", "Nagoya", "Québec", "Perth")


@dataclass(frozen=True)
class Release:
    """One GitHub release: what both the Zenodo archive and the codeload archive are built from.

    ``edition`` changes the contents without changing the name (a record whose files were
    replaced, see ``ZenodoService.update_record``).
    """

    owner: str
    repo: str
    tag: str
    flavour: Flavour = "full"
    edition: int = 0

    @property
    def sha(self) -> str:
        """The (fake but stable) commit id the tag points to."""
        name = f"{self.owner}/{self.repo}@{self.tag}#{self.edition}"
        return hashlib.sha1(name.encode()).hexdigest()

    @property
    def codeload_top(self) -> str:
        """``<repo>-<tag>`` with a leading ``v`` dropped before a digit, as codeload names it."""
        tag = self.tag[1:] if re.match(r"^v\d", self.tag) else self.tag
        return f"{self.repo}-{tag}"

    @property
    def zipball_top(self) -> str:
        """``<owner>-<repo>-<sha7>``: the folder in the zipball Zenodo's integration archives."""
        return f"{self.owner}-{self.repo}-{self.sha[:7]}"


@dataclass(frozen=True)
class ArchiveSpec:
    """How to build one archive file: which release, which format, which top folder."""

    release: Release
    fmt: ArchiveFormat
    top: str
    variant: Literal["main", "examples", "secrets"] = "main"

    def build(self) -> bytes:
        return archive_bytes(self)

    def digest(self) -> tuple[int, str]:
        return archive_digest(self)


def _rng(release: Release, variant: str, *, tag: bool = False) -> random.Random:
    """The tree's random source: the same for every version of one software (so versions share
    most files, as real releases do), or, with ``tag``, one for this version's own changes."""
    name = f"{release.owner}/{release.repo}:{release.flavour}:{release.edition}:{variant}"
    seed = hashlib.sha256((name + (f"@{release.tag}" if tag else "")).encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


_EDITABLE = re.compile(r"\.(py|js|c|rs|go|R|jl|java|md)$")


def _evolve(tree: dict[str, bytes], release: Release, variant: str) -> None:
    """This version's changes to the software's shared tree: one to three source files edited
    and, now and then, a file added; the version strings (README, pyproject.toml, CITATION.cff,
    ``_version.py``) already carry the tag. So consecutive versions differ in a few files."""
    rng = _rng(release, variant, tag=True)
    editable = sorted(p for p in tree if _EDITABLE.search(p) and "README" not in p)
    for path in rng.sample(editable, min(len(editable), rng.randint(1, 3))):
        comment = "#" if path.endswith((".py", ".R", ".jl", ".md")) else "//"
        tree[path] += (f"\n{comment} {release.tag}: {rng.choice(_VERBS)} "
                       f"{rng.choice(_WORDS)} {rng.randint(1, 999)}\n").encode()
    if rng.random() < 0.3:
        word = rng.choice(_WORDS)
        tree[f"src/extra_{word}_{re.sub(r'[^0-9a-z]', '_', release.tag.lower())}.py"] = (
            f'"""Added in {release.tag}."""\n\n\ndef {word}(x):\n    return x\n').encode()


def png_bytes(rng: random.Random, width: int = 8, height: int = 8) -> bytes:
    """A valid RGB PNG; its IHDR length field alone contains NUL bytes."""
    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(width * 3))
                    for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


def pdf_bytes(title: str, rng: random.Random) -> bytes:
    """A small but well-formed one-page PDF (binary comment line included, like real writers)."""
    text = title.encode("latin-1", "replace").replace(b"(", b"[").replace(b")", b"]")
    stream = b"BT /F1 12 Tf 72 720 Td (" + text + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /ID [<%s>] >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, rng.randbytes(16).hex().encode(), xref)
    return bytes(out)


def _csv(rng: random.Random, min_bytes: int) -> bytes:
    lines = ["timestamp,station,value,error,flag"]
    size = len(lines[0]) + 1
    minute = 0
    while size <= min_bytes:
        minute += rng.randint(1, 9)
        day, rest = divmod(minute, 1440)
        when = f"2025-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{rest // 60:02d}:{rest % 60:02d}"
        value, error = rng.uniform(-50, 50), rng.uniform(0, 2)
        line = (f"{when}:00Z,{rng.choice(_STATIONS)},{value:.4f},{error:.4f},"
                f"{rng.choice(('ok', 'ok', 'ok', 'suspect', 'gap'))}")
        lines.append(line)
        size += len(line.encode()) + 1
    return ("\n".join(lines) + "\n").encode()


def _python(pkg: str, cls: str, fn: str, rng: random.Random) -> str:
    label = " ".join(rng.choice(_WORDS) for _ in range(8))
    long_arg = f'label: str = "{label}"'  # the def line ends up wider than 80 columns
    return f'''"""{cls}: {rng.choice(_WORDS)} models for {pkg}.

Café-grade numerics — prices in € are printed with a narrow no-break space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class {cls}:
    """A {rng.choice(_WORDS)} with two parameters."""

    alpha: float = {rng.uniform(0, 3):.3f}
    beta: float = {rng.uniform(0, 3):.3f}

    def {fn}(self, values: list[float]) -> float:
        total = 0.0
        for v in values:
            total += math.exp(-self.alpha * v) * self.beta
        return total / max(len(values), 1)


def describe(model: {cls}, *, precision: int = 3, verbose: bool = False, {long_arg}) -> str:
    text = f"{{label}}: α={{model.alpha:.{{precision}}f}} β={{model.beta:.{{precision}}f}}"
    if verbose:
        text += " ✓"
    return text
'''


def _modules(pkg: str, rng: random.Random) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for _ in range(rng.randint(1, 4)):
        name = f"{rng.choice(_VERBS)}_{rng.choice(_WORDS)}"
        cls = rng.choice(_WORDS).capitalize() + rng.choice(("Model", "Solver", "Reader"))
        files[f"src/{pkg}/{name}.py"] = _python(pkg, cls, rng.choice(_VERBS), rng).encode()
    for i in range(rng.randint(1, 3)):
        fn = rng.choice(_VERBS)
        files[f"tests/test_{fn}_{i}.py"] = (
            f"from {pkg} import __version__\n\n\ndef test_{fn}_{i}():\n"
            f"    assert __version__\n    assert {rng.randint(1, 99)} > 0\n").encode()
    return files


def _full_tree(release: Release, rng: random.Random) -> dict[str, bytes]:
    owner, repo, tag = release.owner, release.repo, release.tag
    pkg = re.sub(r"\W", "_", repo.lower())
    word, verb = rng.choice(_WORDS), rng.choice(_VERBS)
    cls = word.capitalize() + "Model"
    long_js = ", ".join(f'"{rng.choice(_WORDS)}{i}": {rng.randint(0, 999)}' for i in range(30))
    files = {
        "README.md": (
            f"# {repo} {tag}\n\n{repo} fits {word} data — résumé of the method, café-style "
            "notes and costs in € are in the docs. 🚀✨\n\n"
            f"Install with `pip install {repo}` or read the documentation at "
            f"https://{owner}.github.io/{repo}/ for a very long explanation of every option that "
            "this package offers.\n\n| column | meaning |\n|---|---|\n| α | rate |\n").encode(),
        "LICENSE": (f"MIT License\n\nCopyright (c) 2026 {owner}\n\nPermission is hereby granted, "
                    "free of charge, to any person obtaining a copy\nof this software.\n").encode(),
        ".gitignore": b"__pycache__/\n*.pyc\n.venv/\nbuild/\ndist/\n*.egg-info/\n",
        ".git/config": (f"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n"
                        f'[remote "origin"]\n\turl = https://github.com/{owner}/{repo}.git\n').encode(),
        ".git/HEAD": b"ref: refs/heads/main\n",
        ".github/workflows/ci.yml": (
            b"name: CI\non:\n  push:\n    branches: [main]\n  pull_request:\njobs:\n  test:\n"
            b"    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
            b"      - uses: actions/setup-python@v5\n        with:\n          python-version: "
            b"'3.11'\n      - run: pip install -e . && pytest -q\n"),
        "config/settings.yaml": (f"name: {repo}\nthreshold: {rng.uniform(0, 1):.2f}\n"
                                 f"stations:\n  - Zürich\n  - Kraków\nunits: \"€/kWh\"\n").encode(),
        "pyproject.toml": f'[project]\nname = "{repo}"\nversion = "{tag.lstrip("v")}"\n'.encode(),
        f"src/{pkg}/__init__.py": f'"""{repo}."""\n\nfrom ._version import __version__\n'.encode(),
        f"src/{pkg}/_version.py": f'__version__ = "{tag.lstrip("v")}"'.encode(),  # no final newline
        f"src/{pkg}/py.typed": b"",
        f"src/{pkg}/core.py": _python(pkg, cls, verb, rng).encode(),
        f"src/{pkg}/io/readers/fits_reader.py": (
            b"def read(path):\n\twith open(path, 'rb') as fh:\n\t\treturn fh.read()\n"),
        "web/app.js": (f"// {repo} widget 🚀\nconst table = {{{long_js}}};\n"
                       "export function render(el) {\n  el.textContent = "
                       "`${Object.keys(table).length} entries — prêt`;\n}\n").encode(),
        "csrc/fast.c": (f"#include <stdio.h>\n#include \"fast.h\"\n\n/* {word} kernel */\n"
                        "double fast_sum(const double *x, int n)\n{\n\tdouble s = 0.0;\n"
                        "\tfor (int i = 0; i < n; i++)\n\t\ts += x[i];\n\treturn s;\n}\n").encode(),
        "csrc/fast.h": b"#pragma once\ndouble fast_sum(const double *x, int n);\n",
        f"java/src/main/java/org/{pkg}/Main.java": (
            f"package org.{pkg};\n\npublic class Main {{\n"
            "    public static void main(String[] args) {\n"
            f"        System.out.println(\"{repo} — naïve run\");\n    }}\n}}\n").encode(),
        "rust/src/lib.rs": (f"/// {word} → {verb}\npub fn {verb}(xs: &[f64]) -> f64 {{\n"
                            "    xs.iter().sum::<f64>() / xs.len().max(1) as f64\n}\n").encode(),
        "go/main.go": (f"package main\n\nimport \"fmt\"\n\nfunc main() {{\n"
                       f"\tfmt.Println(\"{repo}\")\n"
                       "\tfor i := 0; i < 3; i++ {\n\t\tfmt.Println(i)\n\t}\n}\n").encode(),
        f"R/{verb}.R": (f"# {word} helpers — élan vital\n{verb}_{word} <- function(x) {{\n"
                        "  mean(x, na.rm = TRUE)\n}\n").encode(),
        f"julia/{cls}.jl": (f"module {cls}\n\nexport step\n\nconst α = {rng.uniform(0, 1):.3f}\n\n"
                            "step(x) = α * x + (1 - α) * x^2\n\nend\n").encode(),
        "docs/index.md": (f"# {repo}\n\nSee [the API](api.md).\n\nUnits: m/s², €, °C.\n").encode(),
        "Makefile": b"test:\n\tpytest -q\n\nlint:\n\truff check src tests\n",
        "scripts/build.bat": (f"@echo off\r\nrem build {repo}\r\npython -m build\r\n"
                              "echo done\r\n").encode(),
        "docs/legacy_notes.txt": (f"Notes from the Mac OS 9 era\r{repo} {tag}\rend of notes\r"
                                  ).encode(),
        "legacy/latin1_readme.txt": f"caf\xe9 na\xefve {word} \xa9 2009\n".encode("latin-1"),
        "win/Program.cs": ("\ufeffusing System;\r\nclass Program { static void Main() { "
                           "Console.WriteLine(\"hi\"); } }\r\n").encode(),
        "data/logo.png": png_bytes(rng),
        "data/measurements.csv": _csv(rng, 100_000 + rng.randint(2_000, 20_000)),
        "CITATION.cff": (f"cff-version: 1.2.0\ntitle: {repo}\nversion: {tag}\n"
                         f"repository-code: https://github.com/{owner}/{repo}\n").encode(),
    }
    files.update(_modules(pkg, rng))
    return files


def _small_tree(release: Release, rng: random.Random) -> dict[str, bytes]:
    pkg = re.sub(r"\W", "_", release.repo.lower())
    return {
        "README.md": f"# {release.repo}\n\nRelease {release.tag} — ✓\n".encode(),
        f"src/{pkg}.py": (f"def {rng.choice(_VERBS)}(x):\n\treturn x * {rng.randint(2, 9)}\n"
                          ).encode(),
        ".gitignore": b"*.pyc\n",
    }


def _examples_tree(release: Release, rng: random.Random) -> dict[str, bytes]:
    module = re.sub(r"[^a-z0-9_]", "_", release.repo.lower())
    notebook = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [],
                           "execution_count": None,
                           "source": [f"import {module}\n", "print('α ≈ 0.5')"]}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return {
        "README.md": f"# Examples for {release.repo} {release.tag}\n".encode(),
        "examples/demo.ipynb": json.dumps(notebook, indent=1).encode(),
        "examples/run_all.sh": b"#!/bin/sh\nfor f in examples/*.py; do python \"$f\"; done\n",
        f"examples/{rng.choice(_VERBS)}_example.py": b"print('example')\n",
    }


def source_files(release: Release, variant: str = "main") -> dict[str, bytes]:
    """The tree of a release as ``{relative path: bytes}`` (no top folder), sorted by path."""
    rng = _rng(release, variant)
    if variant == "examples":
        tree = _examples_tree(release, rng)
    elif variant == "secrets":
        tree = planted_tree(rng, package=re.sub(r"\W", "_", release.repo.lower()))[0]
    elif release.flavour == "small":
        tree = _small_tree(release, rng)
    else:
        tree = _full_tree(release, rng)
    _evolve(tree, release, variant)
    if release.edition:
        tree["CHANGES.md"] = f"Edition {release.edition}: files replaced.\n".encode()
    return dict(sorted(tree.items()))


def planted_secrets(release: Release) -> list[Planted]:
    """What the ``secrets`` variant of ``release`` planted (the same seed as its tree)."""
    return planted_tree(_rng(release, "secrets"),
                        package=re.sub(r"\W", "_", release.repo.lower()))[1]


def _folders(paths: list[str]) -> list[str]:
    seen: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            seen.add("/".join(parts[:i]))
    return sorted(seen)


def _zip(top: str, tree: dict[str, bytes], comment: str) -> bytes:
    buf = io.BytesIO()
    stamp = (2026, 1, 1, 12, 0, 0)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(f"{top}/", stamp)
        info.external_attr = (0o40755 << 16) | 0x10
        zf.writestr(info, b"")
        for folder in _folders(list(tree)):
            info = zipfile.ZipInfo(f"{top}/{folder}/", stamp)
            info.external_attr = (0o40755 << 16) | 0x10
            zf.writestr(info, b"")
        for path, data in tree.items():
            info = zipfile.ZipInfo(f"{top}/{path}", stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)
        zf.comment = comment.encode()
    return buf.getvalue()


def _tar_gz(top: str, tree: dict[str, bytes], comment: str) -> bytes:
    raw = io.BytesIO()
    mtime = 1767268800  # 2026-01-01T12:00:00Z
    # GitHub's tarballs come from `git archive`: a pax global header carries the commit id.
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": comment}) as tar:
        for folder in ["", *_folders(list(tree))]:
            info = tarfile.TarInfo(f"{top}/{folder}".rstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            info.uname = info.gname = "root"
            tar.addfile(info)
        for path, data in tree.items():
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


@functools.lru_cache(maxsize=24)
def archive_bytes(spec: ArchiveSpec) -> bytes:
    """The archive's bytes, built on demand; the 24 most recent are kept."""
    tree = source_files(spec.release, spec.variant)
    if spec.fmt == "zip":
        return _zip(spec.top, tree, spec.release.sha)
    return _tar_gz(spec.top, tree, spec.release.sha)


_DIGESTS: dict[ArchiveSpec, tuple[int, str]] = {}


def archive_digest(spec: ArchiveSpec) -> tuple[int, str]:
    """``(size, md5 hex)`` of the archive; computed once per process, without keeping the bytes."""
    known = _DIGESTS.get(spec)
    if known is None:
        data = archive_bytes(spec)
        known = _DIGESTS[spec] = (len(data), hashlib.md5(data).hexdigest())
    return known
