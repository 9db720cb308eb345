"""Shared fixtures: no test may reach a real service, and the embedded sandbox on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pipeline.sandbox import Sandbox
from tests.hostile import Hostile

_SECRET_PREFIXES = ("ZENODO_", "KAGGLE_", "WEBHOOK", "SLACK")


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clear every credential-shaped variable so a test can only talk to the sandbox."""
    for name in list(os.environ):
        if name.startswith(_SECRET_PREFIXES) or name == "GITHUB_TOKEN":
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A started sandbox (seed 0, search rate limit off) on a free port, stopped afterwards."""
    box = Sandbox(seed=0, search_per_minute=None).start()
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture
def hostile_server() -> Iterator[Hostile]:
    """The hostile Zenodo of tests/hostile.py, started on a free port, stopped afterwards."""
    srv = Hostile().start()
    try:
        yield srv
    finally:
        srv.stop()
