"""GitHub's codeload archives in the sandbox: ``GET /{owner}/{repo}/tar.gz/{ref}`` and ``/zip/``.

Why: some Zenodo software records hold no archive at all (a ``paper.pdf`` or ``README.md`` only),
so the pipeline falls back to the GitHub release named in ``related_identifiers``
(ZENODO_API.md §2.1), through ``source.github.archive_url``
(default ``https://codeload.github.com/{owner}/{repo}/tar.gz/{ref}``). Tests point that template
at the sandbox: ``<sandbox url>/{owner}/{repo}/tar.gz/{ref}``.

Like codeload, the archive unpacks into ``<repo>-<tag>/`` with a leading ``v`` dropped from a
version tag, the ref may also be written ``refs/tags/<tag>``, and an unknown repository or ref is
a plain-text ``404: Not Found``. The releases served are those of the corpus records
(:meth:`ZenodoService.release`); the bytes come from :mod:`pipeline.sandbox.sourcetree`, so the
GitHub tarball and the Zenodo zip of the same release hold the same files. Paths starting with
``/api/`` never match, so the Zenodo, deposit and Kaggle routes stay unambiguous.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.sandbox.server import Request, Response, Router
from pipeline.sandbox.sourcetree import ArchiveFormat, ArchiveSpec

if TYPE_CHECKING:
    from pipeline.sandbox import Sandbox

_TYPES = {"tar.gz": "application/x-gzip", "zip": "application/zip"}


class GitHubService:
    """Serves the release archives of the repositories the corpus names."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def register(self, router: Router) -> None:
        for method in ("GET", "HEAD"):
            router.add(method, r"/(?!api/)(?P<owner>[^/]+)/(?P<repo>[^/]+)/(?P<fmt>tar\.gz|zip)"
                               r"/(?P<ref>.+)", self._archive)

    def archive(self, owner: str, repo: str, ref: str, fmt: ArchiveFormat = "tar.gz"
                ) -> bytes | None:
        """The codeload archive bytes, or None when GitHub would answer 404."""
        release = self.sandbox.zenodo.release(owner, repo, ref.removeprefix("refs/tags/"))
        if release is None:
            return None
        return ArchiveSpec(release, fmt, release.codeload_top).build()

    def _archive(self, request: Request) -> Response:
        p = request.params
        fmt: ArchiveFormat = "zip" if p["fmt"] == "zip" else "tar.gz"
        release = self.sandbox.zenodo.release(p["owner"], p["repo"],
                                              p["ref"].removeprefix("refs/tags/"))
        if release is None:
            return Response(404, b"404: Not Found", {"Content-Type": "text/plain; charset=utf-8"})
        data = ArchiveSpec(release, fmt, release.codeload_top).build()
        return Response(200, data, {
            "Content-Type": _TYPES[fmt], "ETag": f'"{release.sha}"',
            "Content-Disposition": f"attachment; filename={release.codeload_top}.{fmt}"})
