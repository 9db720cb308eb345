"""The pipeline's exception tree, in one place.

Every error the pipeline raises on purpose is a :class:`PipelineError`. It carries the *stage*
(detect, fetch, extract, convert, store, process, version, publish, notify, state, manifest,
sandbox), the *record* id when one is involved, the *url* when a service was involved, what was
*expected* and what was *got*, and a *hint* saying what to do. ``str(error)`` renders all of that as
one line, which is what the CLI prints and what the state file stores as a failure reason.

    PipelineError                  exit code 1 unless said otherwise
    ├── UsageError                 bad command-line usage (exit 2)
    ├── ManifestError              invalid data_manifest.yaml; carries every problem (exit 2)
    ├── StateError                 the state file is unreadable or from a newer schema
    ├── ServiceError               an HTTP service answered with an error or not at all
    │   ├── RateLimitedError       429 after the retry budget was spent
    │   ├── AuthError              401/403: the token is missing, wrong or lacks a scope
    │   └── ForeignDataError       a 2xx whose body is not what was expected (bad JSON, an
    │                              error body, a record field of the wrong shape)
    ├── ChecksumError              downloaded bytes do not match Zenodo's md5 (or the size)
    ├── ArchiveError               corrupt or hostile archive (traversal, links, bombs, limits)
    ├── LocalError                 this machine's disk or work folder failed, not the record
    ├── ConvertError               a file could not be turned into images
    ├── PublishError               a destination refused or garbled a version
    └── NotifyError                a notification channel failed

Foreign exceptions (requests, h5py, zipfile, tarfile, kaggle) are translated into these at one
boundary per module with ``raise ... from exc`` so the original traceback is kept.
"""

from __future__ import annotations

import re

# Anything that looks like a credential is masked before an error is printed or stored.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(authorization:\s*)(bearer|basic)\s+\S+"),
    re.compile(r"(?i)((?:access_token|token|key|secret|password)=)[^&\s]+"),
]


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Mask known secret values and credential-shaped substrings in ``text``.

    Why: error messages end up in logs, the committed state file and job summaries; a token echoed
    back by a server (or put in a URL by a user) must never reach them.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class PipelineError(Exception):
    """Base of every deliberate pipeline failure; renders as one actionable line."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        record: str | None = None,
        url: str | None = None,
        expected: object = None,
        got: object = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage
        self.record = record
        self.url = url
        self.expected = expected
        self.got = got
        self.hint = hint

    def __str__(self) -> str:
        parts = [f"[{self.stage}]"]
        if self.record is not None:
            parts.append(f"record {self.record}:")
        parts.append(self.message)
        line = " ".join(parts)
        if self.expected is not None or self.got is not None:
            line += f"; expected {self.expected}, got {self.got}"
        if self.url:
            line += f" ({self.url})"
        if self.hint:
            line += f". {self.hint}"
        return redact(line)


class UsageError(PipelineError):
    """The command line asked for something impossible (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, stage="cli", hint=hint)


class ManifestError(PipelineError):
    """The manifest is invalid; ``problems`` holds one line per bad key (exit code 2)."""

    exit_code = 2

    def __init__(self, problems: list[str], *, path: str) -> None:
        super().__init__(f"{path}: {len(problems)} problem(s)", stage="manifest")
        self.problems = problems
        self.path = path

    def __str__(self) -> str:
        return "\n".join(self.problems)


class StateError(PipelineError):
    """The state file cannot be used as it is."""


class ServiceError(PipelineError):
    """A remote service (Zenodo, GitHub, Kaggle, a webhook) failed or answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.status = status


class RateLimitedError(ServiceError):
    """The service kept answering 429 after every retry allowed."""


class AuthError(ServiceError):
    """401/403: missing, wrong or under-scoped credentials."""


class ForeignDataError(ServiceError):
    """A service answered, but with data the pipeline cannot use as it is.

    Why its own class: a 200 holding invalid JSON, an error document, or a record whose id or
    checksum would make a path outside the work folder is the service's fault (or an attack),
    not a bug of ours; the record fails alone and is retried on later runs.
    """


class ChecksumError(PipelineError):
    """Downloaded bytes differ from the published checksum or size."""


class ArchiveError(PipelineError):
    """An archive is corrupt, unsupported or hostile; only its record fails."""

    def __init__(self, message: str, **kwargs: object) -> None:
        kwargs["hint"] = kwargs.get("hint") or (
            "the archive is corrupt or hostile; only this record failed and it is retried on "
            "later runs (list it in source.exclusions.records to stop)")
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class LocalError(PipelineError):
    """A local disk or work-folder error (EIO, EACCES, ENOSPC...) while handling a record.

    Why its own class: it is not the record's fault, so it does not count as one of the
    record's attempts (``source.retry_limit``), and it is never called a corrupt archive.
    """


class ConvertError(PipelineError):
    """A source file could not be converted."""


class PublishError(PipelineError):
    """A destination refused a version, or what it holds differs from what was built."""


class NotifyError(PipelineError):
    """A notification channel failed; the publish it announces stands."""
