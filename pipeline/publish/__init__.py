"""Publishing a built dataset version to its destinations (SPEC section 8), one module each.

    zenodo   the Zenodo deposit API: create / newversion / reuse draft, upload, verify, publish
    kaggle   the real ``kaggle`` client: create (private) or new version, check files, poll status

Both implement :class:`Publisher` and are chosen by name from the manifest. The contract that
makes publishing crash-safe and idempotent is the :class:`Journal`: before and after every step
that changes something remote, the publisher records the step (and the ids it learnt) in the
state file, atomically. A rerun reads the journal and *finishes* the same version: it finds the
open draft or the version already published (by its version string and checksums) instead of
creating another. The journal entry is cleared only once the destination holds exactly the files
``version`` built, verified by reading them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.state import State


@dataclass(frozen=True)
class BuiltVersion:
    """A dataset version as ``version`` wrote it: an immutable, flat folder of files.

    Flat, because Kaggle's client skips sub-folders and Zenodo records have no folders.
    """

    version: str                 # unique, ordered, e.g. "3.20261121"
    folder: Path                 # <workdir>/versions/<version>/
    files: dict[str, str]        # name -> "sha256:<hex>" for every file in the folder
    md5: dict[str, str]          # name -> "md5:<hex>" (what Zenodo reports back)
    sizes: dict[str, int]        # name -> bytes
    notes: str                   # this version's CHANGELOG entry (Markdown)
    counts: dict[str, int] = field(default_factory=dict)  # records, images, added, ...


class Journal:
    """The publishing journal of one destination, persisted in the state on every step."""

    def __init__(self, state: State, destination: str) -> None:
        self.state = state
        self.destination = destination

    @property
    def entry(self) -> dict[str, Any]:
        """The journal entry in progress (``{}`` when nothing is in progress)."""
        return self.state.journal.get(self.destination, {})

    def begin(self, version: str) -> dict[str, Any]:
        """Start (or resume) publishing ``version``; returns the entry to resume from."""
        entry = self.entry
        if entry.get("version") != version:
            entry = {"version": version, "steps": []}
            self.state.journal[self.destination] = entry
            self.state.save()
        return entry

    def step(self, name: str, **data: Any) -> None:
        """Record that step ``name`` happened (with the ids it produced) and save the state now."""
        entry = self.state.journal.setdefault(self.destination, {"steps": []})
        entry.setdefault("steps", []).append(name)
        entry.update(data)
        self.state.save()

    def done(self, name: str) -> bool:
        return name in self.entry.get("steps", [])

    def finish(self) -> None:
        """Clear the entry: the destination holds the verified version."""
        self.state.journal.pop(self.destination, None)
        self.state.save()


class Publisher(Protocol):
    """A destination for dataset versions."""

    name: str

    def describe(self, built: BuiltVersion, known: dict[str, Any]) -> list[str]:
        """What :meth:`publish` would upload, delete and publish, and where (``--dry-run``)."""
        ...

    def publish(self, built: BuiltVersion, known: dict[str, Any], journal: Journal
                ) -> dict[str, Any]:
        """Publish ``built``; return the destination's updated ids (``known`` is the state's
        ``destinations[name]`` dict). Must be resumable from ``journal`` at any step."""
        ...
