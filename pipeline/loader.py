"""Reading the code images back: the public API for people who use the dataset.

Why this is a re-export: the loader has to travel with the data (every version folder ships
``code_images.py``, readable with numpy and h5py alone), and it must be the same code users of
this repository run. So the one implementation is :mod:`pipeline.code_images`, copied verbatim
into each version folder, and this module is its name inside the package.

The 2018 dataset shipped ``load_all`` / ``load_by_extension`` / ``load_by_regexp`` over pickles
(ZENODO_ML_2018.md, "The loader the dataset shipped with"); the same three ways of selecting data
are here (:func:`load_all`, :func:`load_by_extension`, :func:`load_by_pattern`), plus
:func:`iter_files` (``(labels, pages)`` per file, the fixed interface), :func:`iter_images` and
:func:`iter_entries` (the file tables only), :func:`load_split`, :func:`page_to_text`,
:func:`save_png` and :func:`export_png`.
"""

from pipeline.code_images import (
    DEFAULT_SPLITS,
    FileEntry,
    Images,
    Library,
    Source,
    dataset_parts,
    export_png,
    group_labels,
    iter_entries,
    iter_files,
    iter_images,
    load_all,
    load_by_extension,
    load_by_pattern,
    load_split,
    open_catalog,
    page_to_text,
    read_metadata,
    record_groups,
    save_png,
)

__all__ = [
    "DEFAULT_SPLITS", "FileEntry", "Images", "Library", "Source", "dataset_parts", "export_png",
    "group_labels", "iter_entries", "iter_files", "iter_images", "load_all", "load_by_extension",
    "load_by_pattern", "load_split", "open_catalog", "page_to_text", "read_metadata",
    "record_groups", "save_png",
]
