"""Publish a built dataset version to Zenodo through the legacy deposit API (ZENODO_API.md §5).

Why the deposit API: it is the documented path for "a new version of my own dataset", it is
what sandbox.zenodo.org and zenodo.org both serve today (zenodo-rdm ``legacy/resources.py``),
and its newversion *inherits the previous version's files* (§5.3), which is what lets a version
upload only its new part: inherited files with the same name and md5 stay, the rest are deleted.

The lifecycle, one small method each (after cthoyt/zenodo-client ``api.py``)::

    locate      the open draft (journal, state, or the account's depositions), else the latest
                published deposition of our concept, else nothing (first publish)
    open        newversion on the latest published deposition (201), or create one (201)
    sync        DELETE changed/obsolete files, PUT new ones to ``links.bucket/<name>`` and check
                the md5 and size Zenodo computed; then re-read the draft and compare every file
    metadata    PUT the *full* metadata: newversion drops ``version`` and ``publication_date``
                (§5.3, invenio-rdm-records ``new_version_skip_fields``), and the PUT replaces
    publish     POST actions/publish (202), unless ``mode: draft`` (a verified draft is left)
    verify      GET /api/records/{id}: version string, file names, sizes and md5 must equal the
                built version's, or the publish is reported as failed

Quirks handled (dated): a second newversion while a draft exists answers 400 "Please remove all
files first." (§5.3, observed 2026-02 and 2026-04): the draft is located by listing the
account's depositions and reused. Deposit file entries carry a *bare* md5 while records carry
``md5:<hex>`` (§2.1); both are normalised. The bucket DELETE answered 500 until mid-2026 (§5.2),
so files are deleted through ``/api/deposit/depositions/{id}/files/{file_id}``. Zenodo rejects
empty files (§5.5); ``version`` never builds one.

Crash safety: every remote step is recorded in the :class:`~pipeline.publish.Journal` before
and after it happens, and every step is idempotent on resume: the file plan is recomputed from
what the draft holds; a "create" or "newversion" whose answer was lost is recovered by listing
the account's depositions (our concept's open draft, or a draft titled like ours) instead of
being repeated; a publish whose answer was lost is recognised because the draft reads back as
submitted. Before opening a new version, the latest published version of the concept is
compared with the built one by version string and checksums, so a state that lost its last
publish never produces a second copy of it.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from pipeline.dataset import BuiltVersion, version_key
from pipeline.errors import PublishError, ServiceError
from pipeline.http import HttpClient, Sleep
from pipeline.manifest import ZenodoDestination
from pipeline.publish import Journal
from pipeline.records import normalise_md5

DEPOSITIONS = "/api/deposit/depositions"
LIST_PAGE_SIZE = 100      # the deposit list's maximum page size (§5.2)
LIST_MAX_PAGES = 50
STAGE = "publish"
ID_NOTE = "code-images dataset id: {}"   # in the deposition's notes: who may adopt it
_ID_RE = re.compile(r"code-images dataset id: ([0-9a-f-]{36})")
log = logging.getLogger(__name__)


def volume_title(title: str, volume: int) -> str:
    """Volume 1 keeps the dataset's title (existing records stay as they are); later volumes
    say their number, so a person browsing Zenodo tells them apart."""
    return title if volume <= 1 else f"{title} (volume {volume})"


def dataset_id_of(dep: Mapping[str, Any]) -> str | None:
    """The dataset id a deposition's notes carry (see :data:`ID_NOTE`), or None."""
    m = _ID_RE.search(str((dep.get("metadata") or {}).get("notes") or ""))
    return m.group(1) if m else None


VOLUME_KEYS = ("deposition_id", "concept_id", "concept_doi", "files", "draft_id", "draft_version",
               "record_id", "doi")


def volume_known(known: dict[str, Any], volume: int) -> dict[str, Any]:
    """The state's ids of one volume (``known["volumes"]["<n>"]``), created on first use.

    A state from before volumes keeps volume 1's ids at the top level; they are copied in.
    """
    volumes = known.setdefault("volumes", {})
    if str(volume) not in volumes:
        legacy = {k: known[k] for k in VOLUME_KEYS if volume == 1 and known.get(k)}
        volumes[str(volume)] = legacy
    return volumes[str(volume)]


@dataclass(frozen=True)
class FilePlan:
    """What to do with a draft's files to make them equal to the built version's."""

    keep: tuple[str, ...]
    delete: tuple[tuple[str, str], ...]   # (name, deposit file id)
    upload: tuple[str, ...]


def plan_files(remote: Mapping[str, tuple[str, str]], built_md5: Mapping[str, str]) -> FilePlan:
    """``remote`` ``{name: (file id, "md5:..")}`` against the built ``{name: "md5:.."}``.

    Same name and md5: keep (Zenodo keeps the bytes, nothing is sent). A name whose md5 differs
    is deleted and uploaded again; a name the built version lacks is deleted.
    """
    keep = tuple(sorted(n for n, (_, md5) in remote.items() if built_md5.get(n) == md5))
    delete = tuple(sorted((n, fid) for n, (fid, _) in remote.items() if n not in keep))
    upload = tuple(sorted(n for n in built_md5 if n not in keep))
    return FilePlan(keep=keep, delete=delete, upload=upload)


def diff_files(expected: Mapping[str, tuple[int, str]], got: Mapping[str, tuple[int, str]]
               ) -> list[str]:
    """Human-readable differences between two ``{name: (size, "md5:..")}`` listings."""
    out = [f"missing {n}" for n in sorted(set(expected) - set(got))]
    out += [f"unexpected {n}" for n in sorted(set(got) - set(expected))]
    out += [f"{n}: expected {expected[n][0]} bytes {expected[n][1]}, got {got[n][0]} bytes "
            f"{got[n][1]}" for n in sorted(set(expected) & set(got)) if expected[n] != got[n]]
    return out


def deposit_metadata(package: Mapping[str, Any], built: BuiltVersion, *, today: date,
                     community: str | None = None, source_url: str | None = None,
                     dataset_id: str | None = None, earlier_volumes: Mapping[int, str] = {}
                     ) -> dict[str, Any]:
    """The full deposit metadata (§5.4) from the version's own ``datapackage.json``.

    Read from the built folder, not the manifest, so what Zenodo shows is what the version's
    card says even if the manifest changed in between. License ids are lower-case on Zenodo
    (``cc-by-4.0``, §2.1).
    """
    creators = []
    for person in package.get("contributors", []):
        creator = {"name": person["title"]}
        if person.get("organization"):
            creator["affiliation"] = person["organization"]
        if str(person.get("path", "")).startswith("https://orcid.org/"):
            creator["orcid"] = person["path"].rsplit("/", 1)[1]
        creators.append(creator)
    counts = built.counts
    summary = (f"Version {built.version}: {counts.get('records', 0):,} records, "
               f"{counts.get('images', 0):,} code images ({counts.get('added', 0)} added, "
               f"{counts.get('updated', 0)} updated, {counts.get('removed', 0)} removed).")
    description = (f"<p>{html.escape(package.get('description', ''))}</p>"
                   f"<p>{html.escape(summary)} README.md describes the files and how to load "
                   "them; CHANGELOG.md lists the records added, updated and removed in every "
                   "version; SHA256SUMS holds the checksums.</p>")
    if dataset_id:
        summary += " " + ID_NOTE.format(dataset_id)
    meta: dict[str, Any] = {
        "upload_type": "dataset", "title": volume_title(package["title"], built.volume),
        "creators": creators,
        "description": description, "access_right": "open",
        "license": package["licenses"][0]["name"].lower(),
        "keywords": list(package.get("keywords", [])), "version": built.version,
        "publication_date": today.isoformat(), "notes": summary,
    }
    related = [{"identifier": doi, "relation": "continues", "scheme": "doi"}
               for _, doi in sorted(earlier_volumes.items())]
    if source_url:
        related.append({"identifier": source_url, "relation": "isCompiledBy", "scheme": "url"})
    if related:
        meta["related_identifiers"] = related
    if community:
        meta["communities"] = [{"identifier": community}]
    return meta


class FileBody:
    """A request body that re-opens its file on every iteration, so a retried PUT (HttpClient
    retries 429/5xx) sends the whole file again; ``len`` gives requests its Content-Length."""

    def __init__(self, path: os.PathLike[str] | str, size: int) -> None:
        self.path, self.size = path, size

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as fh:
            while block := fh.read(1 << 20):
                yield block


def _listing(files: list[dict[str, Any]], *, name: str, size: str) -> dict[str, tuple[int, str]]:
    return {str(f[name]): (int(f[size]), normalise_md5(f.get("checksum"))) for f in files}


def _built_listing(built: BuiltVersion) -> dict[str, tuple[int, str]]:
    return {n: (built.sizes[n], built.md5[n]) for n in built.md5}


def _version_of(dep: Mapping[str, Any]) -> str:
    return str((dep.get("metadata") or {}).get("version") or "")


def _submitted(dep: Mapping[str, Any]) -> bool:
    return bool(dep.get("submitted")) or dep.get("state") == "done"


class ZenodoPublisher:
    """:class:`~pipeline.publish.Publisher` for Zenodo (``destinations.zenodo``)."""

    name = "zenodo"

    def __init__(self, dest: ZenodoDestination, *, sleep: Sleep = time.sleep,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 verify_attempts: int = 5) -> None:
        self.dest = dest
        self.sleep = sleep
        self.now = now
        self.verify_attempts = verify_attempts
        self._client: HttpClient | None = None

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def client(self) -> HttpClient:
        """The deposit API session, built on first use so ``describe`` needs no token."""
        if self._client is None:
            token = self.dest.token
            if not token:
                raise PublishError(
                    f"no Zenodo token: the environment variable {self.dest.token_env} "
                    "(destinations.zenodo.token_env) is not set", stage=STAGE, url=self.dest.url,
                    hint="create a token with the deposit:write and deposit:actions scopes and "
                    "export it (a repository secret in CI)")
            self._client = HttpClient(service="Zenodo deposit", base_url=self.dest.url,
                                      token=token, sleep=self.sleep)
        return self._client

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,),
              hint: str | None = None, **kwargs: Any) -> Any:
        response = self.client.request(method, path, stage=STAGE, ok=ok, hint=hint, **kwargs)
        try:
            return response.json() if response.content else {}
        except ValueError as exc:
            raise PublishError(f"Zenodo answered {method} with something that is not JSON",
                               stage=STAGE, url=response.url, got=response.text[:200],
                               hint="check destinations.zenodo.url") from exc

    def _get(self, dep_id: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"{DEPOSITIONS}/{dep_id}")
        except ServiceError as exc:
            if exc.status in (404, 410):
                return None
            raise

    def _newest_published(self, concept: str) -> list[dict[str, Any]]:
        """The newest published deposition of ``concept`` (a list of at most one)."""
        return list(self._call("GET", DEPOSITIONS, params={
            "size": 1, "page": 1, "all_versions": "true", "sort": "mostrecent",
            "status": "published", "q": f"conceptrecid:{concept}"}))[:1]

    def _list(self, **filters: str) -> list[dict[str, Any]]:
        """Every deposition of the token's account (drafts and all versions included), or
        those matching ``filters`` (``status``, ``q``: the deposit listing's parameters)."""
        found: list[dict[str, Any]] = []
        for page in range(1, LIST_MAX_PAGES + 1):
            batch = self._call("GET", DEPOSITIONS, params={
                "size": LIST_PAGE_SIZE, "page": page, "all_versions": "true",
                "sort": "mostrecent", **filters})
            found += batch
            if len(batch) < LIST_PAGE_SIZE:
                break
        return found

    # -- dry run --------------------------------------------------------------------------------
    def describe(self, built: BuiltVersion, known: dict[str, Any]) -> list[str]:
        """Offline plan: a new version's draft inherits the files of the latest published one,
        which the state records in ``known["files"]``."""
        known = volume_known(json.loads(json.dumps(known)), built.volume)
        base = known.get("deposition_id") or (self.dest.deposition_id
                                              if built.volume == 1 else None)
        if known.get("draft_id"):
            where = f"reuse the open draft {known['draft_id']}"
        elif base:
            where = f"open a new version of deposition {base}" + (
                f" (concept {known['concept_id']})" if known.get("concept_id") else "")
        else:
            where = (f"create volume {built.volume} (a new concept record)" if built.volume > 1
                     else "create a new deposition (first publish)")
        inherited = {n: ("", md5) for n, md5 in (known.get("files") or {}).items()}
        plan = plan_files(inherited, built.md5)
        total = sum(built.sizes[n] for n in plan.upload)
        lines = [f"zenodo: {self.dest.url}: {where} for version {built.version}",
                 f"zenodo: upload {len(plan.upload)} file(s), {total:,} bytes; delete "
                 f"{len(plan.delete)}; keep {len(plan.keep)}"]
        lines += [f"  upload {n} ({built.sizes[n]:,} bytes)" for n in plan.upload]
        lines += [f"  delete {n}" for n, _ in plan.delete]
        lines += [f"  keep   {n} ({built.sizes[n]:,} bytes)" for n in plan.keep]
        lines.append("zenodo: then publish it (new DOI)" if self.dest.mode == "publish" else
                     "zenodo: then leave it as a verified draft (mode: draft), not published")
        return lines

    # -- publish --------------------------------------------------------------------------------
    def publish(self, built: BuiltVersion, known: dict[str, Any], journal: Journal
                ) -> dict[str, Any]:
        """Publish ``built`` as the next version of its volume (a new concept record for a new
        volume); ``known`` is the state's ``destinations.zenodo``, per volume under
        ``volumes``, with the current volume's ids also at the top level."""
        vk = volume_known(known, built.volume)
        try:
            return self._publish(built, known, vk, journal)
        finally:   # the top level mirrors the volume being published (status, notify, compat)
            for key in VOLUME_KEYS:
                if key in vk:
                    known[key] = vk[key]
                else:
                    known.pop(key, None)
            known["volume"] = built.volume

    def _publish(self, built: BuiltVersion, known: dict[str, Any], vk: dict[str, Any],
                 journal: Journal) -> dict[str, Any]:
        prior = dict(journal.entry)
        dataset_id = known.setdefault("dataset_id", str(uuid.uuid4()))
        entry = journal.begin(built.version)
        package = json.loads((built.folder / "datapackage.json").read_text(encoding="utf-8"))
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
        repo = os.environ.get("GITHUB_REPOSITORY")
        earlier = {int(v): str(k["concept_doi"]) for v, k in known["volumes"].items()
                   if int(v) < built.volume and k.get("concept_doi")}
        metadata = deposit_metadata(package, built, today=self.now().date(),
                                    community=self.dest.community,
                                    source_url=f"{server}/{repo}" if repo else None,
                                    dataset_id=dataset_id, earlier_volumes=earlier)
        dep = self._resume(built, vk, entry, prior)
        if dep is None:
            dep = self._locate(built, vk, journal, metadata, dataset_id)
        if _submitted(dep):
            return self._adopt(dep, built, vk, journal)
        if entry.get("draft_id") != str(dep["id"]):
            journal.step("draft", draft_id=str(dep["id"]),
                         concept_id=str(dep.get("conceptrecid") or ""))
        dep = self._sync(dep, built, journal)
        self._call("PUT", f"{DEPOSITIONS}/{dep['id']}", json={"metadata": metadata},
                   hint="the dataset section of the manifest (title, creators, license) is "
                   "what Zenodo validates; fix it and run `version` and `publish` again")
        journal.step("metadata")
        if self.dest.mode == "draft":
            return self._leave_draft(dep, built, vk, journal)
        journal.step("publish-requested")
        done = self._call("POST", f"{DEPOSITIONS}/{dep['id']}/actions/publish", ok=(202,),
                          hint="the draft is kept; run `publish` again to retry")
        journal.step("published", record_id=str(done.get("record_id") or done["id"]),
                     doi=done.get("doi"))
        return self._adopt(done, built, vk, journal)

    def _resume(self, built: BuiltVersion, known: dict[str, Any], entry: Mapping[str, Any],
                prior: Mapping[str, Any]) -> dict[str, Any] | None:
        """The deposition this version was (or an earlier attempt was) working on, if any."""
        for draft_id in (entry.get("draft_id"), prior.get("draft_id"), known.get("draft_id")):
            if not draft_id:
                continue
            dep = self._get(str(draft_id))
            if dep is None:
                continue
            if not _submitted(dep) or _version_of(dep) == built.version:
                return dep
            # an older draft that has since been published (by us or a person): the new base
            known.update(deposition_id=str(dep.get("record_id") or dep["id"]),
                         concept_id=str(dep.get("conceptrecid") or known.get("concept_id")),
                         files={n: md5 for n, (_, md5) in _listing(
                             dep.get("files") or [], name="filename", size="filesize").items()})
            known.pop("draft_id", None)
        return None

    def _locate(self, built: BuiltVersion, known: dict[str, Any], journal: Journal,
                metadata: Mapping[str, Any], dataset_id: str) -> dict[str, Any]:
        """Find our open draft or the version already published; else open a new draft."""
        base_id = known.get("deposition_id") or (self.dest.deposition_id
                                                 if built.volume == 1 else None)
        concept = known.get("concept_id")
        # Open drafts only, plus the concept's newest published deposition: two small answers
        # whatever the history. Every deposition of the account is listed only when the concept
        # is unknown (a volume's first publish), to find a create whose answer was lost.
        deps = {str(d["id"]): d for d in self._list(status="draft")}
        if concept:
            deps.update((str(d["id"]), d) for d in self._newest_published(str(concept)))
        else:
            deps.update((str(d["id"]), d) for d in self._list())
        if base_id:
            base = self._get(str(base_id))
            if base is None:
                raise PublishError(f"deposition {base_id} does not exist on {self.dest.url}",
                                   stage=STAGE, url=self.dest.url,
                                   hint="fix destinations.zenodo.deposition_id (null creates a "
                                   "new one)")
            concept = concept or base.get("conceptrecid")
            deps.setdefault(str(base["id"]), base)
        if not concept:   # a create whose answer was lost: our id is in the draft's notes
            concept = self._adoptable(deps.values(), metadata["title"], dataset_id,
                                      journal.state.path)
        family = [d for d in deps.values()
                  if concept and str(d.get("conceptrecid")) == str(concept)]
        drafts = [d for d in family if not _submitted(d)]
        published = [d for d in family if _submitted(d)]
        latest = max(published, key=lambda d: int(d["id"])) if published else None
        if latest is not None:
            have = _version_of(latest)
            if have == built.version:
                return self._fresh(latest)
            if have and version_key(have)[0] >= version_key(built.version)[0]:
                raise PublishError(
                    f"Zenodo's latest version of concept {concept} is {have}, not older than "
                    f"the built {built.version}", stage=STAGE, url=self.dest.url,
                    hint="the state file is behind Zenodo (a publish was not committed?); "
                    "restore it from git or rebuild it from the published catalog and part indexes")
        if drafts:
            return self._fresh(max(drafts, key=lambda d: int(d["id"])))
        if latest is not None:
            return self._new_version(str(latest["id"]), str(concept), journal)
        if base_id:
            raise PublishError(f"concept {concept} has no published version to extend",
                               stage=STAGE, url=self.dest.url,
                               hint="publish its draft on Zenodo or set deposition_id to null")
        journal.step("create-requested", requested_at=self.now().isoformat())
        return self._call("POST", DEPOSITIONS, ok=(201,), json={"metadata": metadata},
                          hint="check the token's deposit:write scope")

    def _adoptable(self, deps: Any, title: str, dataset_id: str, state_path: Any) -> str | None:
        """The concept of a deposition this dataset may continue without being told, or None.

        Strict on purpose: only a deposition whose notes carry this dataset's id (kept in the
        state since its first publish) is adopted, never one that merely has the same title,
        which may belong to another work folder publishing the same manifest. Both cases say
        which deposition and why, and how to change it.
        """
        titled = [d for d in deps if (d.get("metadata") or {}).get("title", d.get("title"))
                  == title]
        ours = [d for d in titled if dataset_id_of(d) == dataset_id]
        strangers = [str(d["id"]) for d in titled if d not in ours]
        if strangers:
            log.warning("zenodo: deposition(s) %s are titled %r but do not carry this dataset's "
                        "id %s (destinations.zenodo.dataset_id in the state file %s); not "
                        "adopted. To continue one of them instead, set "
                        "destinations.zenodo.deposition_id in the manifest", ", ".join(strangers),
                        title, dataset_id, state_path)
        if not ours:
            return None
        dep = max(ours, key=lambda d: int(d["id"]))
        log.warning("zenodo: adopting deposition %s (concept %s): its notes carry this "
                    "dataset's id %s, recorded in the state file %s by an earlier publish whose "
                    "answer was lost. To stop this, discard that deposition on Zenodo or remove "
                    "destinations.zenodo.dataset_id from the state", dep["id"],
                    dep.get("conceptrecid"), dataset_id, state_path)
        return str(dep.get("conceptrecid") or "") or None

    def _fresh(self, dep: Mapping[str, Any]) -> dict[str, Any]:
        got = self._get(str(dep["id"]))
        if got is None:
            raise PublishError(f"deposition {dep['id']} vanished while publishing",
                               stage=STAGE, url=self.dest.url, hint="run `publish` again")
        return got

    def _new_version(self, base_id: str, concept: str, journal: Journal) -> dict[str, Any]:
        journal.step("newversion-requested", base_id=base_id)
        try:
            answer = self._call("POST", f"{DEPOSITIONS}/{base_id}/actions/newversion", ok=(201,),
                                hint="check the token's deposit:actions scope")
        except ServiceError as exc:
            if exc.status != 400 or "remove all files" not in str(exc.got).lower():
                raise
            # §5.3: a draft of this concept already exists; find it and carry on with it
            drafts = [d for d in self._list(status="draft")
                      if str(d.get("conceptrecid")) == concept
                      and not _submitted(d)]
            if not drafts:
                raise PublishError("newversion says a draft exists but none is listed",
                                   stage=STAGE, url=self.dest.url, hint="discard the stray "
                                   "draft on Zenodo and run `publish` again") from exc
            return self._fresh(max(drafts, key=lambda d: int(d["id"])))
        # current servers answer with the new draft, older ones with the original; the
        # latest_draft link names the draft in both (§5.3)
        return self._call("GET", answer["links"]["latest_draft"])

    def _sync(self, dep: dict[str, Any], built: BuiltVersion, journal: Journal
              ) -> dict[str, Any]:
        """Make the draft's files equal the built version's; return the re-read draft."""
        files = dep.get("files")
        if files is None:
            files = self._call("GET", f"{DEPOSITIONS}/{dep['id']}/files")
        remote = {str(f["filename"]): (str(f["id"]), normalise_md5(f.get("checksum")))
                  for f in files}
        plan = plan_files(remote, built.md5)
        missing = [n for n in plan.upload if built.local(n) is None]
        if missing:
            raise PublishError(
                f"draft {dep['id']} lacks {len(missing)} carried file(s) of version "
                f"{built.version} ({', '.join(missing[:5])}), which this run does not have",
                stage=STAGE, url=self.dest.url,
                expected="the draft to inherit them from the volume's previous version",
                got=f"{len(remote)} file(s) in the draft",
                hint="a person changed the record's files on Zenodo? Publish the missing files "
                "by hand, or restore the state file from git and run `version` again")
        for _name, file_id in plan.delete:
            self._call("DELETE", f"{DEPOSITIONS}/{dep['id']}/files/{file_id}", ok=(204, 404))
        bucket = dep["links"]["bucket"]
        for name in plan.upload:
            self._upload(dep, bucket, name, built)
        if plan.upload or plan.delete:
            journal.step("files", uploaded=len(plan.upload), deleted=len(plan.delete))
        dep = self._fresh(dep)
        problems = diff_files(_built_listing(built), _listing(dep.get("files") or [],
                                                              name="filename", size="filesize"))
        if problems:
            raise PublishError(f"draft {dep['id']} does not hold the built files: "
                               + "; ".join(problems[:5]), stage=STAGE, url=self.dest.url,
                               hint="nothing was published; run `publish` again")
        return dep

    def _upload(self, dep: Mapping[str, Any], bucket: str, name: str, built: BuiltVersion
                ) -> None:
        size, md5 = built.sizes[name], built.md5[name]
        url = f"{bucket}/{quote(name)}"
        got = self._call("PUT", url, ok=(200, 201), data=FileBody(built.folder / name, size),
                         headers={"Content-Type": "application/octet-stream"})
        got_md5, got_size = normalise_md5(got.get("checksum")), int(got.get("size", -1))
        if (got_md5, got_size) != (md5, size):
            fresh = self._fresh(dep)
            for f in fresh.get("files") or []:
                if f.get("filename") == name:
                    self._call("DELETE", f"{DEPOSITIONS}/{dep['id']}/files/{f['id']}",
                               ok=(204, 404))
            raise PublishError(f"upload of {name} was garbled", stage=STAGE, url=url,
                               expected=f"{size} bytes {md5}", got=f"{got_size} bytes {got_md5}",
                               hint="the bad copy was deleted from the draft; nothing was "
                               "published; run `publish` again")

    def _leave_draft(self, dep: Mapping[str, Any], built: BuiltVersion, known: dict[str, Any],
                     journal: Journal) -> dict[str, Any]:
        url = (dep.get("links") or {}).get("html") or f"{self.dest.url}/deposit/{dep['id']}"
        known.update(draft_id=str(dep["id"]), draft_version=built.version,
                     concept_id=str(dep.get("conceptrecid") or known.get("concept_id") or ""))
        journal.finish()
        return {"status": "draft", "deposition_id": str(dep["id"]), "url": url,
                "version": built.version, "at": self.now().strftime("%Y-%m-%dT%H:%M:%SZ")}

    def _adopt(self, dep: Mapping[str, Any], built: BuiltVersion, known: dict[str, Any],
               journal: Journal) -> dict[str, Any]:
        """Verify the published record against the built version; record and return its ids."""
        record_id = str(dep.get("record_id") or dep["id"])
        record = self._read_record(record_id)
        version = _version_of(record)
        problems = [] if version == built.version else [
            f"version: expected {built.version}, got {version or 'none'}"]
        problems += diff_files(_built_listing(built),
                               _listing(record.get("files") or [], name="key", size="size"))
        if problems:
            raise PublishError(f"published record {record_id} differs from the built version: "
                               + "; ".join(problems[:5]), stage=STAGE,
                               url=f"{self.dest.url}/api/records/{record_id}",
                               hint="inspect the record; a fixed version needs a new `version`")
        links = record.get("links") or {}
        result = {
            "doi": record.get("doi"), "record_id": record_id, "deposition_id": record_id,
            "url": links.get("self_html") or links.get("html") or
            f"{self.dest.url}/records/{record_id}",
            "concept_doi": record.get("conceptdoi"),
            "concept_id": str(record.get("conceptrecid") or dep.get("conceptrecid") or ""),
            "version": built.version,
            "at": record.get("created") or self.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        known.update(result, files=dict(sorted(built.md5.items())))
        for stale in ("draft_id", "draft_version"):
            known.pop(stale, None)
        journal.finish()
        return result

    def _read_record(self, record_id: str) -> dict[str, Any]:
        """GET /api/records/{id}, waiting briefly if the new record is not readable yet."""
        for attempt in range(self.verify_attempts):
            try:
                return self._call("GET", f"/api/records/{record_id}")
            except ServiceError as exc:
                if exc.status not in (404, 410) or attempt == self.verify_attempts - 1:
                    raise
                self.sleep(2.0 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover
