"""GitHub ``repository_dispatch``: start other repositories' workflows when a version is out.

Why: downstream projects (a container image that bundles the data, a benchmark, a paper's
figures) can rebuild on ``on: repository_dispatch: types: [dataset-updated]`` without polling.
The workflow reads ``github.event.client_payload.version``, ``.doi``, ``.urls.kaggle`` and so on.

The REST call (API version 2022-11-28)::

    POST {api_url}/repos/{owner}/{repo}/dispatches
    Authorization: Bearer <token>          Accept: application/vnd.github+json
    {"event_type": "...", "client_payload": {...}}

answers ``204 No Content`` on success. GitHub documents 422 (validation: ``event_type`` missing
or over 100 characters, ``client_payload`` not an object or with more than 10 top-level keys) and,
in practice, 401 for a bad or expired token and 404 both for a repository that does not exist
*and* for one the token may not see (github/docs#27534, 2023): GitHub hides private repositories
rather than answering 403. Each gets its own message saying what to fix. 5xx and 429 are retried
by :class:`pipeline.http.HttpClient`.

The token needs ``Contents: write`` on the target repository (fine-grained token) or the ``repo``
scope (classic token); the workflow's own ``GITHUB_TOKEN`` can not dispatch to other repositories.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import NotifyError, ServiceError, redact
from pipeline.http import HttpClient, Sleep
from pipeline.notify.announcement import Announcement

API_VERSION = "2022-11-28"
MAX_PAYLOAD_KEYS = 10  # GitHub: "The maximum number of top-level properties is 10."
TIMEOUT = (10.0, 30.0)
RETRIES = 3


def request_body(event_type: str, a: Announcement) -> dict[str, Any]:
    """The dispatch body for ``a``.

    ``event_type`` is sent as the manifest gives it, and GitHub's 422 says what is wrong with it;
    the payload is ours, and kept within GitHub's 10-key limit by :meth:`Announcement.payload`.
    """
    return {"event_type": event_type, "client_payload": a.payload()}


class DispatchNotifier:
    """Sends one ``repository_dispatch`` event to one repository."""

    def __init__(self, *, repo: str, event_type: str, token_env: str, token: str, api_url: str,
                 sleep: Sleep) -> None:
        self.channel = f"dispatch:{repo}:{event_type}"
        self.repo = repo
        self.event_type = event_type
        self.token_env = token_env
        self.token = token
        self.api_url = api_url
        self.sleep = sleep

    def send(self, announcement: Announcement) -> None:
        client = HttpClient(service="GitHub repository_dispatch", base_url=self.api_url,
                            token=self.token, timeout=TIMEOUT, retries=RETRIES, sleep=self.sleep)
        client.session.headers.update({"Accept": "application/vnd.github+json",
                                       "X-GitHub-Api-Version": API_VERSION})
        try:
            client.request("POST", f"/repos/{self.repo}/dispatches", stage="notify",
                           record=announcement.version, ok=(204,),
                           json=request_body(self.event_type, announcement))
        except ServiceError as exc:
            raise NotifyError(
                redact(f"repository_dispatch {self.event_type!r} to {self.repo} for version "
                       f"{announcement.version} failed: {self._problem(exc)}", [self.token]),
                stage="notify", record=announcement.version, url=exc.url,
                hint=self._hint(exc.status),
            ) from exc
        finally:
            client.close()

    def _problem(self, exc: ServiceError) -> str:
        status = exc.status
        if status == 401:
            return f"GitHub answered 401 Bad credentials for the token in ${self.token_env}"
        if status == 403:
            return f"GitHub answered 403: the token in ${self.token_env} lacks permission " \
                   f"on {self.repo}"
        if status == 404:
            return f"GitHub answered 404: repository {self.repo} does not exist or the token " \
                   f"in ${self.token_env} can not see it"
        if status == 422:
            return f"GitHub rejected the request (422): {exc.got}"
        return f"{exc.message}" + (f"; got {exc.got}" if exc.got else "")

    def _hint(self, status: int | None) -> str:
        if status == 401:
            return (f"the token in ${self.token_env} is invalid, expired or revoked: create a new "
                    "one and update the secret; retried on the next run")
        if status in (403, 404):
            return (f"check the repo {self.repo!r} in the manifest and give the token in "
                    f"${self.token_env} access to it (fine-grained: Contents write; classic: "
                    "repo scope); retried on the next run")
        if status == 422:
            return "check event_type in the manifest (1-100 characters); retried on the next run"
        return "retried on the next run; the published version is not affected"
