"""A deterministic corpus of realistic Zenodo records, and the record JSON shape they share.

Why: the pipeline is tested against records that look like what zenodo.org serves today, in the
current legacy-compatible JSON (ZENODO_API.md §2.1, fixtures 4 and 7): ``id`` an int and
``recid``/``conceptrecid`` strings, ``created``/``updated``/``modified`` with microseconds and
``+00:00``, files ``{id, key, size, checksum "md5:<hex>", links.self ".../content"}`` with keys that
may hold a slash (``<owner>/<repo>-<tag>.zip``, url-quoted in links), GitHub releases named in
``related_identifiers`` (``isSupplementTo``), and ``relations.version``.

The corpus is a pure function of its seed (``random.Random(seed)``, no clock): the same seed gives
the same ids, titles, timestamps, archives and md5s. It deliberately contains what a harvester and
fetcher must cope with:

* concepts with one to three versions, ids allocated in creation order with gaps (other users'
  records), older versions whose ``updated`` lies before the window and some that were edited;
* every 7th software record holds only a non-archive file (``paper.pdf`` or ``README.md``), so
  the pipeline has to fall back to the GitHub release archive;
* one record with two archives, some ``.tar.gz`` instead of ``.zip``, some archive + PDF;
* a computational-notebook subtype (``type=software`` includes it), and non-software records
  (a dataset built from a GitHub release, a dataset of CSVs, a journal article).

:func:`record_json` builds the shape; the deposit service uses it too when it publishes.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from pipeline.sandbox.sourcetree import ArchiveSpec, Flavour, Release, pdf_bytes, source_files

Blob = bytes | ArchiveSpec

# The initial corpus is published/updated in this window (after the production manifest's
# default `since`, before the day the sandbox was written): a first harvest finds all of it.
WINDOW_START = datetime(2026, 11, 2, tzinfo=UTC)
WINDOW_END = datetime(2026, 11, 14, tzinfo=UTC)
FIRST_ID = 17_400_000

_OWNERS = ("astro-lab", "kowalski-group", "inria-sed", "climate-dyn", "bio-kernels", "tanaka-lab",
           "ljubljana-hpc", "mlopez", "neuro-tools", "seismo-py", "ocean-mixing", "glaciology-uio",
           "pangeo-data", "qmc-devs", "dlr-ts", "cdl-sci", "hydro-ufz", "epfl-lts")
_REPOS = ("stellarfit", "genome-kit", "fluxcal", "tidepool", "meshmorph", "sparse-lab",
          "photonpipe", "cohortr", "orbitsim", "lattice-tools", "plasma-ext", "deltaflow",
          "spectra.jl", "graphwalk", "cellcount", "rainfall-rs", "vortex", "ice-sheet-model",
          "quakefind", "tensor-net")
_CREATORS = (("Müller, Anna", "ETH Zürich"), ("Nguyễn, Thị Hoa", "Vietnam National University"),
             ("O'Brien, Seán", "Trinity College Dublin"), ("García López, José", "CSIC"),
             ("Tanaka, Hiroshi", "Nagoya University"), ("Smith, Jane", None),
             ("Kowalski, Piotr", "AGH Kraków"), ("Øvergård, Ingrid", "University of Oslo"),
             ("Dubois, Élodie", "Inria"), ("Okafor, Chinedu", "University of Lagos"))
_KEYWORDS = ("astronomy", "bioinformatics", "climate", "hpc", "machine learning", "python",
             "julia", "rust", "simulation", "data analysis", "reproducibility", "geophysics")
_LICENSES = ("mit", "bsd-3-clause", "apache-2.0", "gpl-3.0-or-later", "mit", "bsd-3-clause")
_COMMUNITIES = ("astronomy", "bioinformatics", "open-science")
_NAME_DRAWS = 64   # random draws of a free (owner, repo) before taking the first free one
_RESOURCE_TITLES = {"software": "Software", "dataset": "Dataset", "publication": "Journal article"}


def stamp(dt: datetime) -> str:
    """Zenodo's timestamp form: ISO 8601, always with microseconds and ``+00:00``."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def record_links(base: str, recid: int, concept: str, doi: str) -> dict[str, str]:
    """The RDM links of a record (no ``html``/``bucket``/``latest_draft`` since 2023, §2.1)."""
    api, ui = f"{base}/api/records/{recid}", f"{base}/records/{recid}"
    resolver = "https://handle.test.datacite.org" if doi.startswith("10.5072/") else "https://doi.org"
    prefix = doi.split("/", 1)[0]
    return {
        "self": api, "self_html": ui, "self_doi": f"{base}/doi/{doi}", "doi": f"{resolver}/{doi}",
        "parent": f"{base}/api/records/{concept}", "parent_html": f"{base}/records/{concept}",
        "parent_doi": f"{base}/doi/{prefix}/zenodo.{concept}",
        "files": f"{api}/files", "media_files": f"{api}/media-files",
        "archive": f"{api}/files-archive", "archive_media": f"{api}/media-files-archive",
        "latest": f"{api}/versions/latest", "latest_html": f"{ui}/latest",
        "versions": f"{api}/versions", "draft": f"{api}/draft",
        "reserve_doi": f"{api}/draft/pids/doi", "access_links": f"{api}/access/links",
        "access_users": f"{api}/access/users", "access_request": f"{api}/access/request",
        "access": f"{api}/access", "communities": f"{api}/communities",
        "communities-suggestions": f"{api}/communities-suggestions", "requests": f"{api}/requests",
    }


def file_entry(base: str, recid: int, key: str, size: int, md5: str, file_id: str) -> dict:
    """One ``files[]`` entry; the key is url-quoted in the link (zenodo-rdm 1c7d550, §2.1)."""
    return {"id": file_id, "key": key, "size": size, "checksum": f"md5:{md5}",
            "links": {"self": f"{base}/api/records/{recid}/files/{quote(key, safe='')}/content"}}


def record_json(base: str, *, recid: int, concept: str, doi_prefix: str, created: datetime,
                updated: datetime, revision: int, metadata: dict, files: list[dict],
                owner: str, stats: dict | None = None) -> dict:
    """A published record in the current legacy-compatible shape (ZENODO_API.md §2.1)."""
    doi, conceptdoi = f"{doi_prefix}/zenodo.{recid}", f"{doi_prefix}/zenodo.{concept}"
    metadata = {"title": metadata["title"], "doi": doi, **metadata}
    metadata["relations"] = {"version": [{"index": 0, "is_last": True, "parent": {
        "pid_type": "recid", "pid_value": concept}}]}
    return {
        "created": stamp(created), "modified": stamp(updated), "id": recid,
        "conceptrecid": concept, "doi": doi, "conceptdoi": conceptdoi,
        "doi_url": f"https://doi.org/{doi}", "metadata": metadata, "title": metadata["title"],
        "links": record_links(base, recid, concept, doi), "updated": stamp(updated),
        "recid": str(recid), "revision": revision, "files": files, "swh": {},
        "owners": [{"id": owner}], "status": "published",
        "stats": stats or {k: 0 for k in ("downloads", "unique_downloads", "views", "unique_views",
                                          "version_downloads", "version_unique_downloads",
                                          "version_unique_views", "version_views")},
        "state": "done", "submitted": True,
    }


@dataclass
class CorpusRecord:
    """A record's JSON, the bytes behind each file key, and the GitHub release it came from."""

    record: dict
    blobs: dict[str, Blob]
    release: Release | None = None

    def write_archives(self, folder: Path) -> list[tuple[str, Path]]:
        """The record's archives written into ``folder`` as ``(key, path)``, the GitHub
        release archive when it has none (what ``fetch`` would download), for benchmarks and
        tests that convert corpus records without a server."""
        rid = str(self.record["id"])
        blobs = {k: b for k, b in self.blobs.items() if k.endswith((".zip", ".tar.gz"))}
        if not blobs and self.release is not None:
            r = self.release
            blobs = {f"github:{r.owner}/{r.repo}@{r.tag}": ArchiveSpec(r, "tar.gz",
                                                                      r.codeload_top)}
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for i, (key, blob) in enumerate(sorted(blobs.items())):
            path = folder / f"{rid}-{i}{'.zip' if key.endswith('.zip') else '.tar.gz'}"
            path.write_bytes(blob.build() if isinstance(blob, ArchiveSpec) else blob)
            out.append((key, path))
        return out


@dataclass
class _Concept:
    owner: str
    repo: str
    style: int
    rtype: str = "software"
    subtype: str | None = None  # "computationalnotebook"; "csv" marks the dataset of CSV files
    creators: list[dict] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    license: str = "mit"
    communities: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    concept_id: str = ""


def _tag(style: int, n: int, rng: random.Random) -> str:
    major, minor = 1 + n // 3, n % 3
    return (f"v{major}.{minor}.{rng.randint(0, 4)}", f"{major}.{minor}.{rng.randint(0, 9)}",
            f"{2024 + n}.{rng.randint(1, 12):02d}", f"v{major}.{minor}")[style]


class Corpus:
    """The record generator. One instance per sandbox; all methods are deterministic in order."""

    def __init__(self, seed: int = 0, base_url: str = "https://zenodo.org") -> None:
        self.seed = seed
        self.base_url = base_url.rstrip("/")
        self.rng = random.Random(seed)
        self._next_id = FIRST_ID + self.rng.randrange(1000)
        self._concepts: list[_Concept] = []
        self._names: set[tuple[str, str]] = set()
        self._software_made = 0

    def allocate_id(self) -> int:
        """A new record id; ids grow with time and skip some (records of other users)."""
        self._next_id += self.rng.randint(1, 40)
        return self._next_id

    def new_uuid(self) -> str:
        """A random-looking (seeded) UUID4 for file and bucket ids."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _new_name(self) -> tuple[str, str]:
        """An ``(owner, repo)`` no concept has yet, in a bounded number of steps.

        Why: there are only ``len(_OWNERS) * len(_REPOS)`` (360) pairs and a day of
        :meth:`new_records` makes a new concept, so a long simulation (``bench_year``: 15 initial
        concepts + one a day) takes them all on day 346; drawing until a free pair turns up then
        spins forever. Once every pair of a generation is taken, the next generation suffixes
        the repo (``tidepool-2``, then ``-3``...). Within a generation the pair is drawn at
        random (the same draws as before, so a seed's corpus is unchanged), and after
        ``_NAME_DRAWS`` misses the first free pair in order is taken, so the search never spins.
        """
        rng = self.rng
        generation = len(self._names) // (len(_OWNERS) * len(_REPOS))  # full generations
        suffix = f"-{generation + 1}" if generation else ""
        for _ in range(_NAME_DRAWS):
            name = (rng.choice(_OWNERS), rng.choice(_REPOS) + suffix)
            if name not in self._names:
                break
        else:
            name = next((owner, repo + suffix) for owner in _OWNERS for repo in _REPOS
                        if (owner, repo + suffix) not in self._names)
        self._names.add(name)
        return name

    def _new_concept(self, rtype: str = "software", subtype: str | None = None) -> _Concept:
        rng = self.rng
        owner, repo = self._new_name()
        creators = []
        for name, affiliation in rng.sample(_CREATORS, rng.randint(1, 3)):
            person = {"name": name, "affiliation": affiliation}
            if rng.random() < 0.5:
                digits = (rng.randint(1, 3), rng.randrange(10_000), rng.randrange(10_000))
                person["orcid"] = "0000-000{}-{:04d}-{:04d}".format(*digits)
            creators.append(person)
        concept = _Concept(owner, repo, rng.randrange(4), rtype, subtype, creators,
                           rng.sample(_KEYWORDS, rng.randint(1, 4)), rng.choice(_LICENSES),
                           [rng.choice(_COMMUNITIES)] if rng.random() < 0.4 else [])
        self._concepts.append(concept)
        return concept

    def _files(self, concept: _Concept, release: Release, recid: int, kind: str
               ) -> tuple[list[dict], dict[str, Blob]]:
        owner, repo, tag = release.owner, release.repo, release.tag
        blobs: dict[str, Blob] = {}
        if kind in ("zip", "zip+pdf", "two"):
            blobs[f"{owner}/{repo}-{tag}.zip"] = ArchiveSpec(release, "zip", release.zipball_top)
        if kind == "tar.gz":
            blobs[f"{owner}/{repo}-{tag}.tar.gz"] = ArchiveSpec(release, "tar.gz",
                                                                release.zipball_top)
        if kind == "two":
            blobs[f"{repo}-{tag}-examples.tar.gz"] = ArchiveSpec(
                release, "tar.gz", f"{repo}-{tag}-examples", "examples")
        if kind in ("pdf", "zip+pdf"):
            blobs["paper.pdf"] = pdf_bytes(f"{repo} {tag}: a software paper", self.rng)
        if kind == "readme":
            blobs["README.md"] = source_files(release)["README.md"]
        if kind == "csv":
            blobs["measurements.csv"] = source_files(release)["data/measurements.csv"]
            blobs["README.md"] = f"# {repo} measurements\n\nCC-BY-4.0 — ©\n".encode()
        entries = []
        for key, blob in blobs.items():
            size, md5 = blob.digest() if isinstance(blob, ArchiveSpec) else (
                len(blob), hashlib.md5(blob).hexdigest())
            entries.append(file_entry(self.base_url, recid, key, size, md5, self.new_uuid()))
        return entries, blobs

    def _file_kind(self, concept: _Concept) -> str:
        if concept.rtype == "publication":
            return "pdf"
        if concept.rtype == "dataset":
            return "csv" if concept.subtype == "csv" else "zip"
        k = self._software_made
        self._software_made += 1
        if k % 7 == 6:
            return ("pdf", "readme")[(k // 7) % 2]
        if k == 2:
            return "two"
        if k % 5 == 3:
            return "tar.gz"
        return "zip+pdf" if k % 9 == 4 else "zip"

    def _record(self, concept: _Concept, tag: str, created: datetime, updated: datetime,
                flavour: Flavour = "full") -> CorpusRecord:
        rng = self.rng
        if not concept.concept_id:
            concept.concept_id = str(self.allocate_id())
        recid = self.allocate_id()
        release = Release(concept.owner, concept.repo, tag, flavour)
        files, blobs = self._files(concept, release, recid, self._file_kind(concept))
        rtype = {"title": _RESOURCE_TITLES[concept.rtype], "type": concept.rtype}
        if concept.subtype == "computationalnotebook":
            rtype = {"title": "Computational notebook", "type": "software",
                     "subtype": "computationalnotebook"}
        elif concept.rtype == "publication":
            rtype["subtype"] = "article"
        github = f"https://github.com/{concept.owner}/{concept.repo}/tree/{tag}"
        related = [{"identifier": github, "relation": "isSupplementTo", "scheme": "url"}]
        if concept.rtype == "publication" or (concept.rtype == "dataset"
                                              and concept.subtype == "csv"):
            related = []
        metadata = {
            "title": f"{concept.owner}/{concept.repo}: {tag}",
            "publication_date": created.date().isoformat(),
            "description": (f"<p>{concept.repo} {tag} — {rng.choice(('résumé', 'naïve', 'fast'))} "
                            f"release.</p>\n<ul>\n<li>Fixes {rng.randint(2, 40)} issues</li>\n"
                            f"<li>Costs €{rng.randint(0, 9)} per run</li>\n</ul>"),
            "access_right": "open", "creators": concept.creators, "keywords": concept.keywords,
            "related_identifiers": related, "version": tag,
            "license": {"id": "cc-by-4.0" if concept.rtype != "software" else concept.license},
            "resource_type": rtype,
        }
        if concept.communities:
            metadata["communities"] = [{"id": c} for c in concept.communities]
        views = rng.randint(5, 3000)
        downloads = rng.randint(0, views)
        stats = {"downloads": downloads, "unique_downloads": downloads, "views": views,
                 "unique_views": views, "version_downloads": downloads // 2,
                 "version_unique_downloads": downloads // 2, "version_unique_views": views // 2,
                 "version_views": views // 2}
        record = record_json(self.base_url, recid=recid, concept=concept.concept_id,
                             doi_prefix="10.5281", created=created, updated=updated,
                             revision=rng.randint(2, 7), metadata=metadata, files=files,
                             owner=str(rng.randint(10_000, 999_999)), stats=stats)
        concept.tags.append(tag)
        gh = release if related else None
        return CorpusRecord(record, blobs, gh)

    def initial(self, concepts: int = 12) -> list[CorpusRecord]:
        """The starting corpus: ``concepts`` software concepts and four non-software records."""
        rng = self.rng
        plans: list[tuple[datetime, datetime, _Concept, int]] = []
        span = (WINDOW_END - WINDOW_START).total_seconds()
        kinds = [("software", "computationalnotebook" if i == 5 else None) for i in range(concepts)]
        kinds += [("dataset", None), ("dataset", "csv"), ("publication", None)]
        for rtype, subtype in kinds:
            concept = self._new_concept(rtype, subtype)
            if rtype == "dataset" and subtype is None:
                concept.communities = ["lexibank"]
            n_versions = rng.choice((1, 1, 2, 2, 3)) if rtype == "software" else 1
            created = WINDOW_START + timedelta(seconds=rng.uniform(0, span * 0.9))
            for n in reversed(range(n_versions)):
                if n == n_versions - 1:
                    updated = min(created + timedelta(seconds=rng.uniform(0, 86_400)),
                                  WINDOW_END - timedelta(seconds=1))
                elif rng.random() < 0.3:  # an older version whose metadata was edited lately
                    updated = WINDOW_START + timedelta(seconds=rng.uniform(0, span * 0.9))
                else:
                    updated = created + timedelta(seconds=rng.uniform(1, 3_600))
                plans.append((created, updated, concept, n))
                created -= timedelta(days=rng.uniform(20, 200), seconds=rng.uniform(0, 86_400))
        plans.sort(key=lambda p: p[0])  # ids are handed out in creation order, as on Zenodo
        out = []
        for created, updated, concept, n in plans:
            tag = _tag(concept.style, n, rng) if concept.rtype == "software" else f"v{n + 1}.0"
            out.append(self._record(concept, tag, created, updated))
        return out

    def new_records(self, n: int, when: datetime) -> list[CorpusRecord]:
        """``n`` records published at ``when`` (+1 µs each): new versions and new concepts."""
        out = []
        software = [c for c in self._concepts if c.rtype == "software"]
        for i in range(n):
            at = when + timedelta(microseconds=i)
            if i % 2 == 0 and software:
                concept = self.rng.choice(software)
                tag = _tag(concept.style, len(concept.tags) + self.rng.randint(0, 1), self.rng)
                while tag in concept.tags:
                    tag += ".post1"
            else:
                concept = self._new_concept()
                tag = _tag(concept.style, 0, self.rng)
            out.append(self._record(concept, tag, at, at))
        return out

    def chains(self, concepts: int, versions: int, *, start: datetime = WINDOW_START,
               flavour: Flavour = "full") -> list[list[CorpusRecord]]:
        """``concepts`` software concepts with ``versions`` versions each, as real release
        chains (a version edits a few files of the one before, :mod:`.sourcetree`); one list
        of records per concept, oldest version first, a month apart."""
        out = []
        for _ in range(concepts):
            concept = self._new_concept()
            chain = []
            for n in range(versions):
                at = start + timedelta(days=30 * n, seconds=self.rng.uniform(0, 86_400))
                chain.append(self._record(concept, _tag(concept.style, n, self.rng), at, at,
                                          flavour))
            out.append(chain)
        return out

    def planted_secrets(self, when: datetime) -> CorpusRecord:
        """A new software record whose archive plants a fake secret of every kind
        (:mod:`pipeline.sandbox.secrets`); ``planted_secrets(record.release)`` lists them."""
        concept = self._new_concept()
        record = self._record(concept, _tag(concept.style, 0, self.rng), when, when)
        release = Release(concept.owner, concept.repo, concept.tags[-1])
        key = f"{concept.owner}/{concept.repo}-{release.tag}.zip"
        spec = ArchiveSpec(release, "zip", release.zipball_top, "secrets")
        size, md5 = spec.digest()
        record.record["files"] = [file_entry(self.base_url, record.record["id"], key, size, md5,
                                             self.new_uuid())]
        return CorpusRecord(record.record, {key: spec}, record.release)

    def bulk(self, n: int, day: date) -> Iterator[CorpusRecord]:
        """``n`` software records (small archives) and ``n // 50`` datasets, updated on ``day``.

        A few records share their ``updated`` timestamp exactly (ties, ZENODO_API.md §1.4).
        """
        rng = random.Random(f"{self.seed}:bulk:{day.isoformat()}:{n}")
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        total = n + n // 50
        offsets = sorted(rng.randrange(86_400_000_000) for _ in range(total))
        for i in range(250, total, 250):
            offsets[i] = offsets[i - 1]
        datasets = set(rng.sample(range(total), n // 50))
        for position, offset in enumerate(offsets):
            updated = start + timedelta(microseconds=offset)
            created = updated - timedelta(seconds=rng.uniform(0, min(600, offset / 1e6)))
            rtype = "dataset" if position in datasets else "software"
            creator = {"name": _CREATORS[position % len(_CREATORS)][0], "affiliation": None}
            concept = _Concept(f"bulk-{rng.choice(_OWNERS)}", f"{rng.choice(_REPOS)}-{position}",
                               rng.randrange(4), rtype, None, [creator], [rng.choice(_KEYWORDS)])
            tag = _tag(concept.style, rng.randrange(6), rng)
            yield self._record(concept, tag, created, updated, "small")


def reissue(blobs: dict[str, Blob], edition: int) -> dict[str, Blob]:
    """The same file keys with new contents (a record whose files were replaced)."""
    out: dict[str, Blob] = {}
    for key, blob in blobs.items():
        if isinstance(blob, ArchiveSpec):
            out[key] = replace(blob, release=replace(blob.release, edition=edition))
        else:
            out[key] = blob + f"\n% revised, edition {edition}\n".encode()
    return out
