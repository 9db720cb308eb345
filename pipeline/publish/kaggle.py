"""Publish a built version to Kaggle through the real ``kaggle`` client (SPEC section 8).

Why the real client: it is what SPEC requires and what users run, so the sandbox tests exercise
the very code path production takes. Why so much care around it (reference/KAGGLE_PROTOCOL.md,
written against kaggle 2.2.4 / kagglesdk 0.1.37, 2026-11; we run 2.2.5 / 0.1.38, which raises on a
failed file upload and restarts an expired one, but keeps the other quirks):

* Importing ``kaggle`` authenticates at import time, creates its config folder, and with
  ``KAGGLE_API_TOKEN`` calls the server (§0.3). The import is lazy, inside :meth:`_client`, after
  ``KAGGLE_CONFIG_DIR`` and ``HOME`` point into the run folder and the endpoint is set, so even that
  first call of a sandbox run goes to the sandbox. ``HOME`` matters because the client reads
  ``~/.kaggle/access_token`` and ``~/.kaggle/kaggle.json`` whatever ``KAGGLE_CONFIG_DIR`` says (§1):
  credentials come from the environment only.
* ``KAGGLE_API_ENVIRONMENT=TEST`` is ignored (§0.1). ``api_url`` is reached by patching
  ``kagglesdk.kaggle_env._env_to_endpoint[LOCAL]`` and setting ``api.args = ["--local"]`` (way A);
  a production run sets ``api.args = []`` whatever the environment says. Before any request the
  RPC URL the client would use is compared with the expected one, both ways, and the patch is
  undone afterwards.
* Upload-resume state lives in ``$TMPDIR/.kaggle-uploads-<uid>`` (2.2.4: ``.kaggle/uploads``) for
  six days; in 2.2.4 a stale file made the client PUT to a dead URL and silently drop that file
  (§0.4, §3.4); 2.2.5 restarts such an upload, and the directory is still shared by every run of
  the user. Every run gets its own
  ``tempfile.tempdir``, emptied first, and restored afterwards.
* The client does not raise on ``status: "error"`` (§3.1), raises ``HTTPError`` on ``code >= 400``
  even inside an HTTP 200 (§2), and (2.2.4) left a file whose PUT failed out of the version
  without a word (§3.4; 2.2.5 raises ``ValueError("Upload unsuccessful: ...")``). So every reply
  is checked, every foreign error is translated here (one boundary,
  :meth:`_call`), and the new Kaggle version's file list is compared with what was staged.
* Real Kaggle refuses a new version while the previous one is still processing (403, SPEC §11),
  a brand-new dataset can 404 for a while (SPEC §11), and the client sets no HTTP timeouts (§0.5):
  we wait for "ready" before pushing, retry a refused push a bounded number of times, and every
  wait is bounded by ``status_timeout_seconds`` with an injectable sleep.

Crash safety (:class:`~pipeline.publish.Journal`): before pushing, the step ``uploading`` records
the Kaggle version number seen (``kaggle_before``); after the push, ``created`` records the new
number. A rerun that finds ``kaggle_version`` set, or GetDataset's ``currentVersionNumber`` beyond
``kaggle_before``, does not push again: it waits for ready, verifies the files and finishes. A
version found incomplete or failed is marked ``incomplete`` so the rerun pushes a fresh one.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import requests

from pipeline.errors import AuthError, PipelineError, PublishError, redact
from pipeline.fsutil import atomic_write_json
from pipeline.manifest import KaggleDestination
from pipeline.publish import BuiltVersion, Journal

log = logging.getLogger(__name__)
T = TypeVar("T")

PROD_URL = "https://api.kaggle.com"
WEB_URL = "https://www.kaggle.com/datasets/"
METADATA = "dataset-metadata.json"
# Files dataset_create_new/create_version never upload: the client reads them as metadata
# (§3.1 step 2). The version builder's datapackage.json is therefore not on Kaggle.
CLIENT_SKIPS = frozenset({
    METADATA, "datapackage.json", "kernel-metadata.json", "model-metadata.json",
    "model-instance-metadata.json",
    *(f"dataset-cover-image.{ext}" for ext in ("png", "jpg", "jpeg", "webp")),
})
PART_GLOB = "part-*"
KEEP_VERSIONS = 10   # dataset versions remembered -> Kaggle version (only the newest is asked)
READY = "ready"
TERMINAL = frozenset({"failed", "deleted"})
CREDENTIAL_ENV = ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN")
STATUS_RPC = ("datasets.DatasetApiService", "GetDatasetStatus")


# -- pure decisions ---------------------------------------------------------------------------
def select_files(built: BuiltVersion, mode: str, previous: Mapping[str, str]) -> list[str]:
    """The version's files that go into the Kaggle version, sorted.

    ``all``: every file. ``latest-parts``: every file except the part files that are unchanged
    (same name and checksum) since the version last published to Kaggle (``previous``: its part
    files, name -> checksum, kept as ``known["parts"]``); on a first publish that is every file.
    """
    names = sorted(built.files)
    if mode == "all":
        return names
    return [n for n in names
            if not fnmatch.fnmatch(n, PART_GLOB) or previous.get(n) != built.files[n]]


def uploaded_names(names: Collection[str]) -> list[str]:
    """Which staged files the client actually uploads (it skips metadata names, §3.1)."""
    return sorted(n for n in names if n not in CLIENT_SKIPS)


def dataset_ref_problem(dataset: str) -> str | None:
    """Why ``owner/slug`` cannot be created by the client, or None (slug 6-50 chars, §4)."""
    owner, _, slug = dataset.partition("/")
    if not owner or not slug or "/" in slug:
        return f"expected owner/slug, got {dataset!r}"
    if not 6 <= len(slug) <= 50:
        return f"the kaggle client needs a slug of 6-50 characters, got {len(slug)} ({slug!r})"
    return None


def _fit(text: str, high: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``high`` characters."""
    text = " ".join(text.split())
    if len(text) <= high:
        return text
    cut = text[:high + 1].rsplit(" ", 1)[0] if " " in text[:high + 1] else text[:high]
    return cut[:high].rstrip(" -:,;.")


def kaggle_title(title: str, slug: str) -> str:
    """A title the client accepts (6-50 characters, §4), from ours or else from the slug."""
    fitted = _fit(title, 50)
    return fitted if len(fitted) >= 6 else _fit(slug.replace("-", " ").title(), 50)


def kaggle_metadata(raw: Mapping[str, Any], dataset: str, uploads: Collection[str]
                    ) -> dict[str, Any]:
    """``dataset-metadata.json`` as the client validates it (§4), from the builder's.

    The id is always the manifest's ``dataset``; exactly one license; title 6-50 characters;
    a subtitle outside 20-80 characters is cut or dropped; ``resources`` only for files that
    are uploaded (the client raises on a resource whose file is missing); ``id_no`` removed so
    the version goes by owner/slug.
    """
    meta = {k: v for k, v in raw.items() if k not in ("id_no", "isPrivate")}
    meta["id"] = dataset
    meta["title"] = kaggle_title(str(raw.get("title") or ""), dataset.split("/", 1)[1])
    licenses = [lic for lic in raw.get("licenses") or [] if isinstance(lic, dict) and
                lic.get("name")]
    if not licenses:
        raise PublishError(f"{METADATA} names no license", stage="publish",
                           expected='"licenses": [{"name": "CC-BY-4.0"}]',
                           got=raw.get("licenses"),
                           hint="set dataset.license in the manifest and rebuild the version")
    meta["licenses"] = [{"name": str(licenses[0]["name"])}]
    subtitle = _fit(str(raw.get("subtitle") or ""), 80)
    if len(subtitle) >= 20:
        meta["subtitle"] = subtitle
    else:
        meta.pop("subtitle", None)
    keywords = [k for k in raw.get("keywords") or [] if isinstance(k, str) and k]
    if keywords:
        meta["keywords"] = keywords
    else:
        meta.pop("keywords", None)
    seen: set[str] = set()
    resources = []
    for res in raw.get("resources") or []:
        path = res.get("path") if isinstance(res, dict) else None
        if isinstance(path, str) and path in uploads and path not in seen:
            seen.add(path)
            resources.append(res)
    if resources:
        meta["resources"] = resources
    else:
        meta.pop("resources", None)
    return meta


def version_notes(built: BuiltVersion) -> str:
    """The Kaggle version notes: the changelog entry, always naming the version string."""
    notes = built.notes.strip()
    if built.version not in notes:
        notes = f"Version {built.version}" + (f"\n\n{notes}" if notes else "")
    return notes


def compare_files(expected: Mapping[str, int], listed: Mapping[str, int]) -> list[str]:
    """Differences between what was staged and what the Kaggle version holds (name -> bytes)."""
    problems = []
    missing = sorted(set(expected) - set(listed))
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    extra = sorted(set(listed) - set(expected))
    if extra:
        problems.append(f"unexpected {', '.join(extra)}")
    problems += [f"{n} has {listed[n]} bytes instead of {expected[n]}"
                 for n in sorted(set(expected) & set(listed)) if listed[n] != expected[n]]
    return problems


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _body_code(exc: requests.HTTPError) -> int | None:
    """The ``code`` of Kaggle's JSON error body, which may differ from the HTTP status (§2)."""
    try:
        code = exc.response.json().get("code")
    except (AttributeError, ValueError):
        return None
    return code if isinstance(code, int) else None


def _status_of(exc: requests.HTTPError) -> tuple[int | None, int | None]:
    http = exc.response.status_code if exc.response is not None else None
    return http, _body_code(exc) or http


def is_busy(exc: BaseException) -> bool:
    """Kaggle refusing a version because the previous one is still processing (SPEC §11)."""
    if not isinstance(exc, requests.HTTPError):
        return False
    _, code = _status_of(exc)
    return code in (403, 409, 429) and "processing" in str(exc).lower()


# -- the publisher ----------------------------------------------------------------------------
class KagglePublisher:
    """Creates (private) or versions ``dest.dataset`` on Kaggle, verified, resumable.

    ``tmp_root`` holds the per-run folder (staged files, the client's config dir, home and
    upload-resume state); ``sleep`` and ``clock`` are injectable so tests never wait on status
    polls; ``poll_interval`` is the pause between status polls; ``busy_attempts`` bounds the
    pushes refused because the previous version is still processing.
    """

    name = "kaggle"
    list_page_size = 100

    def __init__(self, dest: KaggleDestination, *, tmp_root: Path,
                 sleep: Callable[[float], None] = time.sleep, poll_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, busy_attempts: int = 5) -> None:
        self.dest = dest
        self.tmp_root = Path(tmp_root)
        self._sleep = sleep
        self._clock = clock
        self.poll_interval = poll_interval
        self.busy_attempts = busy_attempts
        self.endpoint = (dest.api_url or PROD_URL).rstrip("/")
        self.sandboxed = self.endpoint != PROD_URL
        # PROD RPCs have no /api prefix; LOCAL ones do (kagglesdk _get_request_url, §2).
        self.rpc_base = f"{self.endpoint}/api/v1/" if self.sandboxed else f"{PROD_URL}/v1/"
        self.web_url = (f"{self.endpoint}/datasets/{dest.dataset}" if self.sandboxed
                        else WEB_URL + dest.dataset)
        self._secrets: list[str] = []

    # -- dry run ------------------------------------------------------------------------------
    def describe(self, built: BuiltVersion, known: dict[str, Any]) -> list[str]:
        """What :meth:`publish` would do, one line each, without network or credentials."""
        where = f"{self.dest.dataset} at {self.endpoint}"
        done = (known.get("versions") or {}).get(built.version)
        if done is not None:
            return [f"kaggle: {built.version} is already Kaggle version {done} of {where}; "
                    "nothing to do"]
        lines = []
        if known.get("version_number"):
            lines.append(f"kaggle: new version of {where} (after Kaggle version "
                         f"{known['version_number']}), notes from the changelog of "
                         f"{built.version}")
        else:
            lines.append(f"kaggle: create {'public' if self.dest.public else 'private'} dataset "
                         f"{where} (a new version instead if it already exists)")
        problem = dataset_ref_problem(self.dest.dataset)
        if problem:
            lines.append(f"kaggle: WILL FAIL: {problem}")
        names = select_files(built, self.dest.files, known.get("parts") or {})
        uploads = uploaded_names(names)
        total = sum(built.sizes.get(n, 0) for n in uploads)
        lines.append(f"kaggle: upload {len(uploads)} file(s), {human_size(total)} "
                     f"(files: {self.dest.files}):")
        lines += [f"  {n}  {human_size(built.sizes.get(n, 0))}" for n in uploads]
        try:
            raw = json.loads((built.folder / METADATA).read_text(encoding="utf-8"))
            meta = kaggle_metadata(raw, self.dest.dataset, uploads)
            lines.append(f"kaggle: {METADATA}: title {meta['title']!r}, license "
                         f"{meta['licenses'][0]['name']}")
        except (OSError, ValueError, PipelineError) as exc:
            lines.append(f"kaggle: WILL FAIL: {METADATA} unusable: {exc}")
        left_out = sorted(set(built.files) - set(uploads) - {METADATA})
        if left_out:
            why = {n: "read as metadata by the client" if n in CLIENT_SKIPS else
                   "part unchanged since the last Kaggle version" for n in left_out}
            lines.append("kaggle: not uploaded: " + ", ".join(f"{n} ({why[n]})" for n in left_out))
        lines.append("kaggle: then check the version's file list and wait up to "
                     f"{self.dest.status_timeout_seconds:g} s for status ready")
        return lines

    # -- publish ------------------------------------------------------------------------------
    def publish(self, built: BuiltVersion, known: dict[str, Any], journal: Journal
                ) -> dict[str, Any]:
        """Publish ``built``; return ``known`` updated with the Kaggle version number."""
        self._secrets = self._credentials()
        problem = dataset_ref_problem(self.dest.dataset)
        if problem:
            raise PublishError(f"cannot publish to Kaggle dataset {self.dest.dataset}",
                               stage="publish", url=self.web_url, got=problem,
                               hint="change destinations.kaggle.dataset in the manifest")
        entry = journal.begin(built.version)
        done = (known.get("versions") or {}).get(built.version)
        if done is not None and not entry.get("steps"):
            log.info("kaggle: %s is already Kaggle version %s", built.version, done)
            journal.finish()
            return dict(known)
        names = select_files(built, self.dest.files, known.get("parts") or {})
        expected = {n: built.sizes[n] for n in uploaded_names(names)}
        run_dir = self.run_dir(built)
        shutil.rmtree(run_dir, ignore_errors=True)  # a crashed run's leftovers, §0.4
        try:
            stage = self._stage(built, names, run_dir / "stage")
            with self._client(run_dir) as api:
                number, url = self._push_or_resume(api, built, stage, journal)
                status, number = self._wait_ready(api, at_least=number)
                if status != READY:
                    journal.step("incomplete", kaggle_version=None, kaggle_before=number)
                    raise PublishError(
                        f"Kaggle could not process version {number} of {self.dest.dataset}",
                        stage="publish", url=self.web_url, expected=f"status {READY}",
                        got=f"status {status}",
                        hint="rerun publish: the next run pushes a new version")
                journal.step("ready", kaggle_version=number)
                self._verify(api, number, expected, journal)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        updated = {**known, "dataset": self.dest.dataset, "url": url or self.web_url,
                   "version_number": number,
                   "versions": dict(list({**(known.get("versions") or {}),
                                          built.version: number}.items())[-KEEP_VERSIONS:]),
                   "parts": {n: c for n, c in built.files.items()
                             if fnmatch.fnmatch(n, PART_GLOB)}}
        # The ids land in the state in the same atomic save that clears the journal: a crash
        # between the two would otherwise leave neither, and the rerun would push again.
        journal.state.destinations.setdefault(journal.destination, {}).update(updated)
        journal.finish()
        log.debug("kaggle: %s published as Kaggle version %d of %s", built.version, number,
                  self.dest.dataset)
        return updated

    def run_dir(self, built: BuiltVersion) -> Path:
        """This version's run folder: ``stage/`` (the flat upload folder), ``config/``,
        ``home/`` and ``tmp/`` (the client's upload-resume state); removed after the run."""
        return self.tmp_root / ("kaggle-" + re.sub(r"[^A-Za-z0-9._-]", "_", built.version))

    def _credentials(self) -> list[str]:
        """Check the environment holds credentials; return the values to mask in messages."""
        env = {name: os.environ.get(name) or "" for name in CREDENTIAL_ENV}
        token = env["KAGGLE_API_TOKEN"]
        if not token and not (env["KAGGLE_USERNAME"] and env["KAGGLE_KEY"]):
            present = [n for n, v in env.items() if v]
            raise AuthError(
                "no Kaggle credentials in the environment", stage="publish", url=self.endpoint,
                expected="KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN",
                got="only " + ", ".join(present) if present else "none of them set",
                hint="export them (in GitHub Actions map repository secrets to env); they are "
                "never read from the manifest or from ~/.kaggle")
        secrets = [v for v in (env["KAGGLE_KEY"], token) if v]
        with contextlib.suppress(OSError, ValueError):
            if token and Path(token).is_file():  # KAGGLE_API_TOKEN may name a file (§1)
                secrets.append(Path(token).read_text(encoding="utf-8").strip())
        return secrets

    def _stage(self, built: BuiltVersion, names: list[str], stage: Path) -> Path:
        """Hard-link (or copy) the selected files into a flat folder with Kaggle's metadata."""
        stage.mkdir(parents=True)
        for name in uploaded_names(names):
            src, dst = built.folder / name, stage / name
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            size = dst.stat().st_size
            if size != built.sizes.get(name):
                raise PublishError(f"{src} changed since version {built.version} was built",
                                   stage="publish", expected=f"{built.sizes.get(name)} bytes",
                                   got=f"{size} bytes", hint="rebuild the version")
        try:
            raw = json.loads((built.folder / METADATA).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PublishError(f"cannot read {built.folder / METADATA}: {exc}", stage="publish",
                               hint="the version builder writes it; rebuild the version") from exc
        atomic_write_json(stage / METADATA,
                          kaggle_metadata(raw, self.dest.dataset, uploaded_names(names)))
        return stage

    @contextlib.contextmanager
    def _client(self, run_dir: Path) -> Iterator[Any]:
        """An authenticated ``KaggleApi`` aimed at ``self.endpoint`` only, isolated in
        ``run_dir`` (see the module docstring); everything is restored on exit."""
        import kagglesdk.kaggle_env as kenv  # kagglesdk has no import-time side effects

        folders = {"KAGGLE_CONFIG_DIR": run_dir / "config", "HOME": run_dir / "home",
                   "TMPDIR": run_dir / "tmp"}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        saved_env = {k: os.environ.get(k) for k in (*folders, "KAGGLE_API_ENVIRONMENT")}
        saved_tempdir = tempfile.tempdir
        saved_local = kenv._env_to_endpoint[kenv.KaggleEnv.LOCAL]
        try:
            os.environ.update({k: str(v) for k, v in folders.items()})
            tempfile.tempdir = str(folders["TMPDIR"])
            if self.sandboxed:
                kenv._env_to_endpoint[kenv.KaggleEnv.LOCAL] = self.endpoint
                os.environ["KAGGLE_API_ENVIRONMENT"] = "LOCALHOST"  # import-time args, §0.1
            else:
                os.environ.pop("KAGGLE_API_ENVIRONMENT", None)
            yield self._call("authenticate", self._new_api, folders["KAGGLE_CONFIG_DIR"])
        finally:
            kenv._env_to_endpoint[kenv.KaggleEnv.LOCAL] = saved_local
            tempfile.tempdir = saved_tempdir
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _new_api(self, config_dir: Path) -> Any:
        from kaggle.api.kaggle_api_extended import KaggleApi  # authenticates once (§0.3)

        api = KaggleApi()
        api.args = ["--local"] if self.sandboxed else []
        api.config_dir = str(config_dir)
        api.config = str(config_dir / "kaggle.json")
        target = api.build_kaggle_client().http_client()._get_request_url(*STATUS_RPC)
        if not target.startswith(self.rpc_base):
            raise PublishError("refusing to publish: the kaggle client is aimed elsewhere",
                               stage="publish", url=self.endpoint, expected=self.rpc_base,
                               got=target, hint="check destinations.kaggle.api_url")
        api.authenticate()
        return api

    # -- steps --------------------------------------------------------------------------------
    def _push_or_resume(self, api: Any, built: BuiltVersion, stage: Path, journal: Journal
                        ) -> tuple[int, str | None]:
        entry = journal.entry
        if entry.get("kaggle_version"):
            log.info("kaggle: resuming: Kaggle version %s was pushed before; not pushing again",
                     entry["kaggle_version"])
            return int(entry["kaggle_version"]), entry.get("url")
        remote = self._remote(api)
        before = entry.get("kaggle_before")
        current = remote[1] if remote else None
        if before is not None and current is not None and current > before:
            log.info("kaggle: resuming: Kaggle holds version %d, %d before the push; not "
                     "pushing again", current, before)
            journal.step("created", kaggle_version=current)
            return current, None
        if remote is None:
            return self._create(api, stage, journal)
        return self._new_version(api, built, stage, journal, remote)

    def _create(self, api: Any, stage: Path, journal: Journal) -> tuple[int, str | None]:
        tried_before = journal.entry.get("kaggle_before") == 0
        journal.step("uploading", kaggle_before=0, kaggle_version=None)
        log.info("kaggle: creating %s dataset %s", "public" if self.dest.public else "private",
                 self.dest.dataset)
        result = self._call("CreateDataset", api.dataset_create_new, str(stage),
                            public=self.dest.public, quiet=True, dir_mode="skip")
        if tried_before and "already in use" in str(getattr(result, "error", "") or ""):
            # Our own earlier create went through but the new dataset still 404s (SPEC §11).
            log.info("kaggle: the dataset created by the interrupted run exists; not again")
        else:
            self._check_result(result, "CreateDataset")
        url = getattr(result, "url", None) or None
        journal.step("created", kaggle_version=1, url=url)
        return 1, url

    def _new_version(self, api: Any, built: BuiltVersion, stage: Path, journal: Journal,
                     remote: tuple[str, int | None]) -> tuple[int, str | None]:
        for attempt in range(1, self.busy_attempts + 1):
            status, current = remote
            if status != READY and status not in TERMINAL:
                status, current = self._wait_ready(api, at_least=None)
            before = current or 0
            journal.step("uploading", kaggle_before=before, kaggle_version=None)
            log.info("kaggle: pushing version %s as Kaggle version %d of %s", built.version,
                     before + 1, self.dest.dataset)
            try:
                result = self._call("CreateDatasetVersion", api.dataset_create_version,
                                    str(stage), version_notes(built), quiet=True,
                                    dir_mode="skip", passthrough=is_busy)
            except requests.HTTPError as exc:
                if attempt == self.busy_attempts:
                    raise self._translate("CreateDatasetVersion", exc,
                                          hint=f"{self.busy_attempts} pushes were refused "
                                          "while the previous version was processing; rerun "
                                          "publish later") from exc
                log.info("kaggle: the previous version is still processing; waiting")
                self._wait_ready(api, at_least=None)
                remote = self._remote(api) or ("missing", None)
                continue
            self._check_result(result, "CreateDatasetVersion")
            url = getattr(result, "url", None) or None
            journal.step("created", kaggle_version=before + 1, url=url)
            return before + 1, url
        raise AssertionError("unreachable")  # pragma: no cover

    def _remote(self, api: Any) -> tuple[str, int | None] | None:
        """``(status, currentVersionNumber)`` of the dataset, or None if Kaggle says 404."""
        try:
            raw = self._call("GetDatasetStatus", api.dataset_status, self.dest.dataset,
                             format="json", passthrough=lambda e: _status_of(e)[1] == 404)
        except requests.HTTPError:
            return None
        info = json.loads(raw)
        return str(info.get("status") or ""), info.get("current_version_number")

    def _wait_ready(self, api: Any, *, at_least: int | None) -> tuple[str, int]:
        """Poll until the dataset is ready (or failed), holding at least version ``at_least``.

        Bounded by ``status_timeout_seconds`` of slept time or of the clock, whichever is
        larger, so a test's no-op sleep still ends the loop. A 404 counts as "not yet" (a new
        dataset can 404 for a while, SPEC §11).
        """
        timeout = self.dest.status_timeout_seconds
        start, slept, polls = self._clock(), 0.0, 0
        while True:
            remote = self._remote(api)
            polls += 1
            status, number = remote if remote else ("404 not found", None)
            if remote and (status == READY or status in TERMINAL):
                if at_least is None or (number or 0) >= at_least:
                    return status, int(number or 0)
                status = f"{status} but at version {number}"
            elapsed = max(slept, self._clock() - start)
            if elapsed >= timeout:
                raise PublishError(
                    f"Kaggle dataset {self.dest.dataset} is not ready after {elapsed:.0f} s "
                    f"({polls} status polls)", stage="publish", url=self.web_url,
                    expected=f"status {READY}" + (f" at version {at_least}" if at_least else ""),
                    got=status, hint="rerun publish later: it resumes waiting and does not push "
                    "again; or raise destinations.kaggle.status_timeout_seconds")
            pause = min(self.poll_interval, timeout - elapsed)  # never past the bound
            self._sleep(pause)
            slept += pause

    def _verify(self, api: Any, number: int, expected: Mapping[str, int], journal: Journal
                ) -> None:
        """Compare the Kaggle version's file list with what was staged (§3.4: drops)."""
        listed: dict[str, int] = {}
        token: str | None = None
        for _ in range(10000):  # bounded paging
            page = self._call("ListDatasetFiles", api.dataset_list_files,
                              f"{self.dest.dataset}/{number}", page_token=token,
                              page_size=self.list_page_size)
            if page.error_message:
                raise PublishError(f"Kaggle could not list the files of version {number}",
                                   stage="publish", url=self.web_url, got=page.error_message,
                                   hint="rerun publish; it verifies again without pushing")
            listed.update({f.name: int(f.total_bytes or 0) for f in page.files})
            token = page.next_page_token or None
            if not token:
                break
        problems = compare_files(expected, listed)
        if problems:
            journal.step("incomplete", kaggle_version=None, kaggle_before=number)
            raise PublishError(
                f"Kaggle version {number} of {self.dest.dataset} differs from the staged files: "
                + "; ".join(problems), stage="publish", url=self.web_url,
                expected=f"{len(expected)} file(s)", got=f"{len(listed)} file(s)",
                hint="the kaggle client leaves a file out without an error when its upload "
                "fails (KAGGLE_PROTOCOL.md §3.4); rerun publish to push a complete new version")

    # -- the one boundary for foreign errors --------------------------------------------------
    def _call(self, action: str, fn: Callable[..., T], *args: Any,
              passthrough: Callable[[requests.HTTPError], bool] | None = None,
              **kwargs: Any) -> T:
        """Run a client call; translate what it raises (``passthrough`` picks HTTP errors the
        caller handles itself)."""
        try:
            return fn(*args, **kwargs)
        except requests.HTTPError as exc:
            if passthrough is not None and passthrough(exc):
                raise
            raise self._translate(action, exc) from exc
        except (requests.RequestException, ValueError, OSError, SystemExit) as exc:
            raise self._translate(action, exc) from exc

    def _translate(self, action: str, exc: BaseException, *, hint: str | None = None
                   ) -> PipelineError:
        message = redact(str(exc), self._secrets)
        url = self.rpc_base + action
        if isinstance(exc, requests.HTTPError):
            http, code = _status_of(exc)
            if exc.response is not None and exc.response.url:
                url = exc.response.url
            got = f"HTTP {http}" + (f" with error code {code} in its JSON body"
                                    if code != http else "") + f": {message!r}"
            if code == 401:
                return AuthError(f"Kaggle refused the credentials for {action}", stage="publish",
                                 url=url, expected="an accepted KAGGLE_USERNAME/KAGGLE_KEY or "
                                 "KAGGLE_API_TOKEN", got=got, status=code,
                                 hint=hint or "check the secrets; a new token can be created "
                                 "at https://www.kaggle.com/settings")
            if code == 403 and not is_busy(exc):
                return AuthError(f"Kaggle does not let this account do {action}",
                                 stage="publish", url=url, expected="permission to publish to "
                                 f"{self.dest.dataset}", got=got, status=code,
                                 hint=hint or "check that KAGGLE_USERNAME owns (or may edit) "
                                 "destinations.kaggle.dataset")
            return PublishError(f"Kaggle {action} failed", stage="publish", url=url,
                                expected="a successful reply", got=got,
                                hint=hint or ("rerun publish; it resumes from the journal"
                                              if code in (429, 500, 502, 503, 504) else
                                              "see the message; fix the dataset or manifest"))
        if isinstance(exc, SystemExit):
            return AuthError(f"the kaggle client found no usable credentials for {action}",
                             stage="publish", url=self.endpoint,
                             expected="KAGGLE_USERNAME and KAGGLE_KEY, or an active "
                             "KAGGLE_API_TOKEN", got="none accepted",
                             hint=hint or "an expired or revoked KAGGLE_API_TOKEN is ignored by "
                             "the client; set a valid one")
        if isinstance(exc, requests.RequestException):
            return PublishError(f"Kaggle {action} did not answer usably", stage="publish",
                                url=url, got=f"{type(exc).__name__}: {message}",
                                hint=hint or "check destinations.kaggle.api_url and the network; "
                                "rerun publish, it resumes from the journal")
        if isinstance(exc, ValueError) and message.startswith("Upload unsuccessful: "):
            # Since kaggle 2.2.5 a failed file upload raises before the version is created
            # (2.2.4 dropped the file silently, §3.4), so nothing was pushed.
            name = message.removeprefix("Upload unsuccessful: ").strip()
            return PublishError(f"uploading {name} to Kaggle failed; no Kaggle version was "
                                "created", stage="publish", url=url, got=message,
                                hint=hint or "rerun publish; it resumes from the journal")
        return PublishError(f"the kaggle client refused {action}", stage="publish", url=url,
                            got=f"{type(exc).__name__}: {message}",
                            hint=hint or f"check {METADATA} and the staged files")

    def _check_result(self, result: Any, action: str) -> None:
        """Create* answer HTTP 200 with ``status: "error"`` and the client returns it (§3.1)."""
        status = str(getattr(result, "status", "") or "")
        if status.lower() != "ok":
            error = redact(str(getattr(result, "error", "") or "no reason given"), self._secrets)
            raise PublishError(f"Kaggle refused {action}: {error}", stage="publish",
                               url=self.rpc_base + action, expected='status "ok"',
                               got=f"status {status!r}",
                               hint="check that the dataset owner is the KAGGLE_USERNAME account "
                               "(or an organisation it may publish to) and the metadata")
        invalid = list(getattr(result, "invalid_tags", None) or [])
        if invalid:
            log.warning("kaggle: keywords that are not Kaggle tags were left out: %s",
                        ", ".join(invalid))
