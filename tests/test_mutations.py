"""Property-style: random byte mutations of valid zip/tar archives and random JSON mutations of a
valid record body, served by the hostile Zenodo (tests/hostile.py) and run through the real CLI.

Whatever the mutation, the pipeline must: exit 0 or 1, print each failed record on one line
(stage, record, what to do), print no traceback and no "This is a bug", write nothing outside the
work folder, and stay under 600 MB. The cases come from a fixed seed (``MUTATION_SEED``) and
their number is bounded (``MUTATION_CASES`` archives and as many record bodies; default 60), so
the test takes seconds; raise them locally to search longer. The counts by kind are printed
(``pytest -s``) and quoted in the closing note of issue 13.
"""

from __future__ import annotations

import collections
import copy
import gzip
import io
import json
import lzma
import os
import random
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests import hostile as H

SEED = int(os.environ.get("MUTATION_SEED", "13"))
CASES = int(os.environ.get("MUTATION_CASES", "60"))
FORMATS = ("zip", "tar", "tar.gz", "tar.xz")
SOURCE = {
    "proj/src/main.py": b"import sys\n\n\ndef main():\n    print(sys.argv)\n" * 20,
    "proj/src/util.c": b"int add(int a, int b) { return a + b; }\n" * 30,
    "proj/README.md": "# caf\u00e9 \u2603\n".encode() * 10,
    "proj/tests/test_main.py": b"def test():\n    assert True\n",
}


def valid_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in SOURCE.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(fmt: str, tar: bytes) -> bytes:
    return {"tar": lambda b: b, "tar.gz": gzip.compress, "tar.xz": lzma.compress}[fmt](tar)


def mutate_archive(fmt: str, rng: random.Random) -> tuple[bytes, str]:
    """A zip mutated as bytes; a tar mutated either in its (compressed) bytes, or in the fields of
    one member header before compression, so the mutation reaches the tar parser."""
    if fmt == "zip":
        return mutate_bytes(H.zip_bytes(SOURCE), rng)
    tar = valid_tar()
    if rng.random() < 0.5:
        return mutate_bytes(compress(fmt, tar), rng)
    return compress(fmt, mutate_tar_header(tar, rng)), "tar-field"


def mutate_tar_header(tar: bytes, rng: random.Random) -> bytes:
    """Set one field of one member header to a hostile value, with a valid header checksum."""
    out = bytearray(tar)
    starts = [i for i in range(0, len(out) - 512, 512) if out[i + 257:i + 262] == b"ustar"]
    at = rng.choice(starts)
    field = rng.choice(["type", "size", "name", "link", "prefix"])
    if field == "type":
        out[at + 156] = rng.choice(b"0123456LKxgSDV\0z")
    elif field == "size":
        value = rng.choice([0, 1, 511, 513, 10**6, 8**11 - 1])
        out[at + 124:at + 136] = f"{value:011o}\0".encode()
    else:
        start, length = {"name": (0, 100), "link": (157, 100), "prefix": (345, 155)}[field]
        value = rng.choice([b"../../outside/x", b"/etc/passwd", b"a\\..\\..\\b", b"\xff\xfe",
                            b"x" * length, b"", b"a/./b//c"])
        out[at + start:at + start + length] = value[:length].ljust(length, b"\0")
    out[at + 148:at + 156] = b" " * 8
    out[at + 148:at + 156] = f"{sum(out[at:at + 512]):06o}\0 ".encode()
    return bytes(out)


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One to three random edits: flip, overwrite with 0x00/0xFF runs, insert, delete, truncate,
    duplicate a slice; the kind of the first names the case."""
    out = bytearray(data)
    kinds = []
    for _ in range(rng.randint(1, 3)):
        if not out:
            break
        kind = rng.choice(["flip", "zero", "ones", "insert", "delete", "truncate", "duplicate",
                           "header"])
        kinds.append(kind)
        at = rng.randrange(len(out)) if out else 0
        span = rng.randint(1, 64)
        if kind == "flip":
            out[at] ^= 1 << rng.randrange(8)
        elif kind in ("zero", "ones"):
            out[at:at + span] = (b"\0" if kind == "zero" else b"\xff") * len(out[at:at + span])
        elif kind == "insert":
            out[at:at] = rng.randbytes(span)
        elif kind == "delete":
            del out[at:at + span]
        elif kind == "truncate":
            del out[at:]
        elif kind == "duplicate":
            out[at:at] = out[max(0, at - span):at]
        else:  # a header field: the first 512 bytes (tar header, zip local header) or the end
            where = rng.randrange(min(512, len(out))) if rng.random() < 0.5 else \
                max(0, len(out) - 1 - rng.randrange(min(64, len(out))))
            out[where] = rng.randrange(256)
    return bytes(out), kinds[0]


_ATTACKS: list[Any] = [None, "", "../../outside/x", "/etc/passwd", "a\\b", "\0", "x" * 5000, -1,
                       0, 2**70, 3.5, True, [], {}, [1, 2], {"a": 1}, "md5:" + "g" * 32,
                       "caf\udce9" if False else "caf\u00e9", "file:///etc/passwd",
                       "http://127.0.0.1:1/x", "2026-13-45T99:00:00Z"]


def mutate_record(body: dict[str, Any], rng: random.Random) -> tuple[Any, str]:
    """Replace, delete or retype one to three fields anywhere in the record (files included)."""
    out = copy.deepcopy(body)
    kinds = []
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(out))
        path = rng.choice(paths)
        parent = out
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = rng.choice(["replace", "delete", "replace"])
        kinds.append(f"{op} {'.'.join(str(p) for p in path if not isinstance(p, int))}")
        if op == "delete" and isinstance(parent, dict):
            del parent[last]
        else:
            parent[last] = copy.deepcopy(rng.choice(_ATTACKS))
    return out, kinds[0]


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in items:
        if prefix == () and key == "id":
            continue  # the id stays valid here, so each record is tracked (ids are tested apart)
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def test_random_mutations_fail_records_alone_and_cleanly(hostile_server: H.Hostile,
                                                         tmp_path: Path) -> None:
    rng = random.Random(SEED)
    records: list[Any] = []
    archive_kind: dict[str, str] = {}
    json_kind: dict[str, str] = {}
    for i in range(CASES):
        fmt = FORMATS[i % len(FORMATS)]
        data, kind = mutate_archive(fmt, rng)
        rid = 10_000 + i
        records.append(H.record(hostile_server, rid, {f"proj-{i}.{fmt}": data}))
        archive_kind[str(rid)] = f"{fmt} {kind}"
    for i in range(CASES):
        rid = 20_000 + i
        data = H.zip_bytes({**SOURCE, "proj/n.txt": str(i).encode()})
        body, kind = mutate_record(H.record(hostile_server, rid, {f"proj-{i}.zip": data}), rng)
        records.append(body)
        json_kind[str(rid)] = kind
    hostile_server.serve_records(records)
    H.manifest(hostile_server.url, tmp_path, **{"source.max_records_per_run": 10_000})

    detect = H.cli(tmp_path, "detect")
    assert detect.code in (0, 1), detect.text
    assert "Traceback" not in detect.text and "This is a bug" not in detect.text, detect.text
    plan = json.loads((tmp_path / "work" / "plan.json").read_text())
    planned = {r["id"] for r in plan["records"]}
    skipped = set(plan["skipped"])  # e.g. a resource type that is no longer "software"
    run = H.cli(tmp_path, "process", "--jobs", "2", timeout=300)
    assert run.code in (0, 1), run.text
    assert "Traceback" not in run.text and "This is a bug" not in run.text, run.text
    assert run.max_rss_mb < 600 and detect.max_rss_mb < 600
    assert H.files_outside(tmp_path, ("work", "state", "data_manifest.yaml")) == []

    version = H.cli(tmp_path, "version", timeout=300)  # the records' metadata goes into the card
    assert version.code in (0, 1), version.text
    assert "Traceback" not in version.text and "This is a bug" not in version.text, version.text
    assert H.files_outside(tmp_path, ("work", "state", "data_manifest.yaml")) == []

    summary = [line for line in run.out.splitlines() if line.startswith("  failed ")]
    failed = {}
    for line in summary:
        m = re.match(r"  failed (\d+): \[(\w+)\] record \1: (.+)$", line)
        assert m, line  # one line: the stage and the record, then what happened
        assert ". " in m.group(3), line  # ... and what to do
        failed[m.group(1)] = (m.group(2), m.group(3))
    assert len(failed) == len(summary)

    refused = {m.group(1) for m in re.finditer(r"\[detect\] record (\d+): .*\. ", detect.err)}
    counts: collections.Counter[str] = collections.Counter()
    for rid in archive_kind:
        assert rid in planned  # archives are only judged in process
        counts["archive cases: " + ("failed " + _kind(failed[rid]) if rid in failed
                                    else "processed")] += 1
    for rid in json_kind:
        if rid in skipped:
            counts["record-body cases: skipped by detect (" + plan["skipped"][rid][:30] + ")"] += 1
        elif rid not in planned:
            assert rid in refused, (rid, detect.err)  # one line naming the record
            counts["record-body cases: refused by detect " + _kind(
                ("detect", detect.err.split(f"record {rid}: ")[1].splitlines()[0]))] += 1
        else:
            counts["record-body cases: " + ("failed " + _kind(failed[rid]) if rid in failed
                                            else "processed")] += 1
    assert len(refused) == sum(v for k, v in counts.items() if "refused" in k)
    assert len(detect.err.splitlines()) == len(refused)  # nothing else on stderr
    print(f"\nmutation test (seed {SEED}, {2 * CASES} cases, process {run.seconds:.1f} s, "
          f"peak {max(run.max_rss_mb, detect.max_rss_mb):.0f} MB):")
    for key, n in sorted(counts.items()):
        print(f"  {n:4d}  {key}")


def _kind(failure: tuple[str, str]) -> str:
    """A failure's stage and the start of its message, without the varying details."""
    stage, text = failure
    field = re.match(r"(file (?:download )?\w+|record revision|record update time|"
                     r"Zenodo record concept id)", text)
    if field:  # "file key '../x' is unusable": the field names the kind, not the value
        return f"[{stage}] {field.group(1)}"
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", text).split(";")[0].split(":")[0]
    return f"[{stage}] {text[:60]}"
