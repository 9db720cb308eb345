"""The PNG figures each version publishes and its card embeds.

Why these three: the 2018 dataset published extension-count plots and its Kaggle subset was PNG
images of code, so users expect (1) how many images each extension has, (2) how the dataset
grows from version to version, and (3) what a code image looks like.

Cost follows new data: the inputs are running totals the version builder keeps (images per
extension of the whole dataset, updated by the records added and removed; counts per version
from the state) and pages sampled from the records this version adds, never a pass over every
part. Drawn with matplotlib's object API (``Figure``: no pyplot state, no display); the PNG
metadata carries no software version or date, so the same inputs give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from pipeline.code_images import SPACE

EXTENSIONS_PNG = "figure-extensions.png"
GROWTH_PNG = "figure-growth.png"
MOSAIC_PNG = "figure-mosaic.png"
FIGURES = (EXTENSIONS_PNG, GROWTH_PNG, MOSAIC_PNG)
_PNG_METADATA = {"Software": None}
_DPI = 80


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    return path


def extensions_figure(images_per_extension: Mapping[str, int], path: str | os.PathLike[str],
                      *, top: int = 20) -> Path:
    """Horizontal bars: images per file extension, the ``top`` largest."""
    ranked = sorted(images_per_extension.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    labels = [f".{ext}" if ext else "(none)" for ext, _ in ranked][::-1]
    values = [n for _, n in ranked][::-1]
    figure = Figure(figsize=(7, 0.3 * max(len(ranked), 4) + 1.2))
    axes = figure.subplots()
    axes.barh(labels, values, color="#3b6ea5")
    axes.set_xlabel("code images (80 x 80 pages)")
    axes.set_title(f"Images per file extension (top {min(top, len(ranked))})")
    for y, value in enumerate(values):
        axes.annotate(f"{value:,}", (value, y), xytext=(3, 0), textcoords="offset points",
                      va="center", fontsize=8)
    axes.margins(x=0.15)
    figure.subplots_adjust(left=0.16, right=0.97, top=0.93, bottom=0.1)
    return _save(figure, Path(path))


def growth_figure(versions: Sequence[tuple[str, int, int]],
                  path: str | os.PathLike[str]) -> Path:
    """Records and images per version ``(version, records, images)``, oldest first."""
    names = [v for v, _, _ in versions]
    x = np.arange(len(names))
    figure = Figure(figsize=(7, 3.6))
    records_axes = figure.subplots()
    records_axes.plot(x, [r for _, r, _ in versions], marker="o", color="#3b6ea5",
                      label="records")
    records_axes.set_ylabel("records", color="#3b6ea5")
    images_axes = records_axes.twinx()
    images_axes.plot(x, [i for _, _, i in versions], marker="s", color="#c0504d",
                     label="images")
    images_axes.set_ylabel("code images", color="#c0504d")
    step = max(1, len(names) // 12)
    records_axes.set_xticks(x[::step], names[::step], rotation=30, ha="right", fontsize=8)
    records_axes.set_title("Growth per dataset version")
    records_axes.set_ylim(bottom=0)
    images_axes.set_ylim(bottom=0)
    figure.subplots_adjust(left=0.1, right=0.88, top=0.9, bottom=0.25)
    return _save(figure, Path(path))


def mosaic_figure(samples: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike[str],
                  *, columns: int = 4) -> Path:
    """Sample pages ``(caption, (80, 80) code points)``: spaces white, ASCII letters and
    symbols in shades of blue, anything beyond ASCII in orange, so the shape of code shows.
    The pages are tiled into one image (one axes: drawing stays cheap)."""
    samples = list(samples) or [("(no pages in this version)", np.full((80, 80), SPACE))]
    rows = -(-len(samples) // columns)
    height, width = np.asarray(samples[0][1]).shape
    gap = 6
    tiled = np.full((rows * (height + gap), columns * (width + gap)), -1, np.int64)
    figure = Figure(figsize=(2.2 * columns, 2.4 * rows + 0.4))
    axes = figure.add_axes((0.01, 0.01, 0.98, 0.9 - 0.1 / rows))
    for i, (caption, page) in enumerate(samples):
        r, c = divmod(i, columns)
        y, x = r * (height + gap), c * (width + gap)
        tiled[y + gap:y + gap + height, x:x + width] = np.asarray(page, dtype=np.int64)
        axes.text(x + width / 2, y + gap - 1, caption, ha="center", va="bottom", fontsize=7)
    shade = np.select([tiled < 0, tiled == SPACE, tiled < 48, tiled < 91, tiled < 128],
                      [0, 1, 2, 3, 4], default=5)
    colours = ListedColormap(["white", "#efefef", "#c6dbef", "#2171b5", "#08306b", "#e6550d"])
    axes.imshow(shade, cmap=colours, vmin=0, vmax=5, interpolation="nearest")
    axes.set_axis_off()
    figure.suptitle("Sample code images (80 x 80 code points)")
    return _save(figure, Path(path))


def write_figures(folder: str | os.PathLike[str], *, images_per_extension: Mapping[str, int],
                  versions: Sequence[tuple[str, int, int]],
                  samples: Sequence[tuple[str, np.ndarray]]) -> dict[str, Path]:
    """All three figures into ``folder``; returns ``{file name: path}``."""
    folder = Path(folder)
    return {EXTENSIONS_PNG: extensions_figure(images_per_extension, folder / EXTENSIONS_PNG),
            GROWTH_PNG: growth_figure(versions, folder / GROWTH_PNG),
            MOSAIC_PNG: mosaic_figure(samples, folder / MOSAIC_PNG)}


def card_section(names: Sequence[str] = FIGURES) -> str:
    """The card's Markdown embedding the figures (relative links: beside the card)."""
    alt = {EXTENSIONS_PNG: "Images per file extension", GROWTH_PNG: "Growth per version",
           MOSAIC_PNG: "Sample code images"}
    return "\n\n".join(f"![{alt.get(n, n)}]({n})" for n in names) + "\n"
