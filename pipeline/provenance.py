"""Which records may enter the dataset (``source.licenses``) and what the index says of each.

Why a module of its own: the licence decision is made once, where records are planned
(:func:`pipeline.detect.detect` skips a refused record with the reason in the state), and the
provenance labels (SPDX licence, creators, date, concept, version, DOI, repository, split) are
made once, when a record is stored, then read by the index and by the loader. The extraction
itself is :func:`pipeline.code_images.record_labels`: the loader that travels with the data
reads the same labels with the same code.

The default policy, ``redistributable``, is :data:`REDISTRIBUTABLE`: licences that allow
anyone to copy and redistribute the code (with or without changes), which a public dataset of
it does: the OSI-approved permissive and copyleft licences most common on Zenodo, CC0, CC-BY
and CC-BY-SA, and public-domain dedications. Left out: no licence (all rights reserved),
non-commercial (``-NC``) and no-derivatives (``-ND``) Creative Commons licences (a code image is
a derivative made for any use), and unknown ids. A record outside the policy is skipped before
anything is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.code_images import DEFAULT_SPLITS, record_labels, spdx_id, split_of

__all__ = ["DEFAULT_SPLITS", "REDISTRIBUTABLE", "allowed_licences", "licence_refusal",
           "record_labels", "spdx_id", "split_of", "splits"]

REDISTRIBUTABLE: tuple[str, ...] = (
    "0BSD", "AFL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-2.0", "Artistic-2.0",
    "BSD-1-Clause", "BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Clear", "BSL-1.0",
    "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC0-1.0", "CECILL-2.1",
    "CECILL-B", "CECILL-C", "ECL-2.0", "EPL-1.0", "EPL-2.0", "EUPL-1.1", "EUPL-1.2",
    "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "ISC",
    "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later", "MIT", "MIT-0",
    "MPL-2.0", "MS-PL", "NCSA", "PostgreSQL", "Python-2.0", "Unlicense", "UPL-1.0", "Zlib",
    "ZPL-2.1",
)


def allowed_licences(policy: str | Sequence[str]) -> frozenset[str] | None:
    """The SPDX ids a policy allows; None for ``any``."""
    if policy == "any":
        return None
    if policy == "redistributable":
        return frozenset(REDISTRIBUTABLE)
    return frozenset(spdx_id(p) for p in policy)


def licence_refusal(licence: str | None, policy: str | Sequence[str]) -> str | None:
    """Why a record under ``licence`` may not enter the dataset, or None when it may."""
    allowed = allowed_licences(policy)
    if allowed is None:
        return None
    spdx = spdx_id(licence)
    if not spdx:
        return ("licence: the record states no licence (all rights reserved); source.licenses "
                "allows only listed licences")
    if spdx not in allowed:
        what = "the default redistributable list" if policy == "redistributable" else \
            "the list in source.licenses"
        return f"licence {spdx} is not in {what}; add it to source.licenses to include it"
    return None


def splits(manifest: Any) -> tuple[tuple[str, float], ...]:
    """The split proportions of the manifest (``dataset.splits``), in a stable order."""
    return tuple(manifest.dataset.splits) or DEFAULT_SPLITS
