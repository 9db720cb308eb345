"""The loader that travels with the data: ``code_images.py`` in a version folder, run in a fresh
virtual environment that holds nothing but numpy and h5py, without this repository.

The environment is a real ``python -m venv`` whose site-packages gets exactly two packages (and
their bundled libraries), linked from the test's own environment so no network is needed; the
script runs with ``-I`` (isolated: no PYTHONPATH, no user site, no current directory).
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmarks.bench_dedup import pack_versions, store
from pipeline import code_images
from pipeline.research import LOADER, ship_loader
from pipeline.sandbox.corpus import Corpus

ONLY = ("numpy", "numpy.libs", "h5py", "h5py.libs")


def numpy_h5py_venv(where: Path) -> Path:
    """A fresh venv (no pip) whose site-packages holds only numpy and h5py."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True,
                   timeout=120)
    site = next(where.glob("lib/python3*/site-packages"))
    ours = Path(np.__file__).resolve().parent.parent
    for name in os.listdir(ours):
        if name in ONLY or (name.endswith(".dist-info") and name.split("-")[0] in ONLY):
            (site / name).symlink_to(ours / name)
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) == \
        sorted(n for n in ONLY if (ours / n).exists())
    return where / "bin" / "python"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("travel")
    out = tmp / "version"
    pack_versions(out, store(tmp, Corpus(seed=5).chains(4, 2))[0], dedup=True)
    ship_loader(out)
    return out


SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import code_images
    assert "pipeline" not in sys.modules
    try:
        import pipeline  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("this repository is importable: the test is not isolated")
    folder = sys.argv[1]
    report = {"modules": sorted({m.split(".")[0] for m in sys.modules}), "splits": {}}
    for labels, pages in code_images.iter_files(folder):
        report["splits"].setdefault(labels["split"], 0)
        report["splits"][labels["split"]] += 1
        assert {"record", "concept", "path", "extension", "licence", "split"} <= set(labels)
    split = sorted(report["splits"])[0]
    python = [(labels, pages) for labels, pages in code_images.iter_files(
        folder, split=split, extensions=["py"])]
    assert python and all(l["extension"] == "py" and l["split"] == split for l, _ in python)
    labels, pages = next((l, p) for l, p in python if len(p))
    report["split"] = split
    report["labels"] = {k: labels[k] for k in ("record", "concept", "path", "extension",
                                               "licence", "split", "shared")}
    report["shape"] = list(pages.shape)
    report["text"] = code_images.page_to_text(pages[0])
    report["python_files"] = len(python)
    code_images.save_png(pages[0], sys.argv[2])
    print(json.dumps(report))
""")


def test_the_folders_loader_runs_with_only_numpy_and_h5py(folder: Path, tmp_path: Path) -> None:
    assert filecmp.cmp(folder / LOADER, code_images.__file__, shallow=False)  # verbatim
    python = numpy_h5py_venv(tmp_path / "venv")
    png = tmp_path / "page.png"
    done = subprocess.run([str(python), "-I", "-c", SCRIPT, str(folder), str(png)],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert "pipeline" not in report["modules"]
    # the same answers as the project's own loader (the same code) in this process
    ours = [(labels, pages) for labels, pages in code_images.iter_files(
        folder, split=report["split"], extensions=["py"])]
    assert report["python_files"] == len(ours)
    wanted = (report["labels"]["record"], report["labels"]["path"])
    labels, pages = next((lab, p) for lab, p in ours if (lab["record"], lab["path"]) == wanted)
    assert report["labels"] == {k: labels[k] for k in report["labels"]}
    assert report["shape"] == [len(pages), 80, 80]
    text = report["text"]
    assert text == code_images.page_to_text(pages[0])
    assert text.splitlines()[0] == "".join(map(chr, pages[0][0])).rstrip()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_text_and_png_round_trip(tmp_path: Path) -> None:
    page = np.full((80, 80), 32, np.uint32)
    for row, line in enumerate(["def f(x):", "    return 'é€😀'"]):
        page[row, :len(line)] = [ord(c) for c in line]
    assert code_images.page_to_text(page) == "def f(x):\n    return 'é€😀'"
    path = code_images.save_png(page[:, :40], tmp_path / "p.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[24] == 16  # 16-bit: values above 255


def test_export_png_groups_pages_by_extension(folder: Path, tmp_path: Path) -> None:
    written = code_images.export_png(folder, tmp_path / "png", extensions=["py", "c"])
    files = list((tmp_path / "png").rglob("*.png"))
    assert written == len(files) > 0
    assert {p.parent.name for p in files} == {"py", "c"}


def test_record_groups_carry_attributes_on_every_dataset(folder: Path) -> None:
    part = sorted(folder.glob("part-*.h5"))[0]
    with h5py.File(part, "r") as h5:
        for group in h5["records"].values():
            for name, dataset in group.items():
                assert dataset.attrs.get("values"), (group.name, name)
            assert group["images"].attrs["padding_value"] == 32
            assert group["images"].attrs["dimensions"] == "page,row,column"
            assert len(group.attrs) <= 5  # per-record overhead: the rest is in metadata.json
            meta = code_images.read_metadata(group)
            assert meta["labels"]["licence"] and json.dumps(meta)
