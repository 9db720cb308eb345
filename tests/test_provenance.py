"""Licence policy, provenance labels and splits: pure functions, plain asserts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.provenance import (
    REDISTRIBUTABLE,
    allowed_licences,
    licence_refusal,
    record_labels,
    spdx_id,
    split_of,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("name", ["record_current_2026.json", "record_legacy_2022.json",
                                  "record_transitional_oct2023.json"])
def test_labels_from_every_shape_zenodo_has_served(name: str) -> None:
    labels = record_labels(json.loads((FIXTURES / name).read_text()))
    assert labels == {
        "record": "18800123", "concept": "18800100", "licence": "MIT",
        "creators": labels["creators"], "publication_date": "2026-03-02",
        "version": "v2.1.0", "doi": "10.5281/zenodo.18800123",
        "repository": "https://github.com/astro-lab/skyfit", "split": split_of("18800100")}
    assert labels["creators"][0] == "Okafor, Ada"


def test_spdx_ids_from_zenodo_ids() -> None:
    assert spdx_id("mit") == "MIT" and spdx_id("gpl-3.0-or-later") == "GPL-3.0-or-later"
    assert spdx_id("CC-BY-4.0") == "CC-BY-4.0" and spdx_id("cc-by") == "CC-BY-4.0"
    assert spdx_id("bsd-3-clause") == "BSD-3-Clause" and spdx_id(None) == ""
    assert spdx_id("other-closed") == "other-closed"  # unknown ids pass through, unchanged


def test_licence_policy() -> None:
    assert licence_refusal("mit", "redistributable") is None
    assert licence_refusal("cc-by-sa-4.0", "redistributable") is None
    assert "CC-BY-NC-4.0 is not in the default" in licence_refusal("cc-by-nc-4.0",
                                                                     "redistributable")
    assert "no licence" in licence_refusal(None, "redistributable")
    assert licence_refusal(None, "any") is None and allowed_licences("any") is None
    assert licence_refusal("apache-2.0", ["Apache-2.0"]) is None
    assert "MIT is not in the list in source.licenses" in licence_refusal("mit", ["Apache-2.0"])
    assert not any("-NC" in s or "-ND" in s for s in REDISTRIBUTABLE)


def test_splits_are_stable_by_concept_and_follow_the_proportions() -> None:
    assert split_of("18800100") == split_of("18800100")
    counts = Counter(split_of(str(i)) for i in range(20_000))
    assert abs(counts["train"] / 20_000 - 0.8) < 0.02
    assert abs(counts["test"] / 20_000 - 0.1) < 0.02
    halves = Counter(split_of(str(i), (("a", 1), ("b", 1))) for i in range(10_000))
    assert set(halves) == {"a", "b"} and abs(halves["a"] - 5_000) < 300
