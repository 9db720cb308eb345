"""The embedded sandbox: Zenodo, GitHub archives, Kaggle and a webhook receiver on 127.0.0.1.

SPEC section 9. The production code paths are the same as against the real services; only URLs
and credentials differ. ``python -m pipeline sandbox`` serves it until stopped; tests get it from
the ``sandbox`` fixture in ``tests/conftest.py``; ``python -m pipeline demo`` starts one in-process.

Each service is a module here with a class built from the :class:`Sandbox` and a
``register(router)`` method:

    server   the HTTP core (router, Range, request log, injected faults)
    corpus   the deterministic generator of records and their source archives
    zenodo   /api/records search, records, file downloads (+ rate-limit headers, 429s)
    github   codeload-style release archives  /{owner}/{repo}/tar.gz/{ref}
    deposit  /api/deposit/depositions and /api/files buckets (publishing)
    kaggle   the kagglesdk RPC protocol and blob uploads
    hooks    a webhook/Slack receiver that checks signatures, and repository_dispatch

Controls for driving a running sandbox by hand (README "Driving the sandbox by hand"):
``POST /sandbox/records?count=N`` publishes N new software records "now" (new versions of
existing concepts and new concepts, as :meth:`ZenodoService.add_records` makes them) and answers
``{"added": [ids]}``; ``GET /hooks`` lists the notifications received.
"""

from __future__ import annotations

import importlib
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pipeline.sandbox.server import Request, Response, SandboxServer, json_response

if TYPE_CHECKING:  # the services, set by Sandbox.__init__ from PARTS
    from pipeline.sandbox.deposit import DepositService
    from pipeline.sandbox.github import GitHubService
    from pipeline.sandbox.hooks import HooksService
    from pipeline.sandbox.kaggle import KaggleService
    from pipeline.sandbox.zenodo import ZenodoService

ZENODO_TOKEN = "sandbox-zenodo-token"
KAGGLE_USERNAME = "sandbox"
KAGGLE_KEY = "sandbox-kaggle-key"
GITHUB_TOKEN = "sandbox-github-token"
# A Standard Webhooks secret: "whsec_" + base64 of the key bytes.
WEBHOOK_SECRET = "whsec_ZW1iZWRkZWQtc2FuZGJveC13ZWJob29rLWtleSEh"

# (attribute, module, class): the services in the order their routes are registered.
PARTS = (
    ("zenodo", "pipeline.sandbox.zenodo", "ZenodoService"),
    ("github", "pipeline.sandbox.github", "GitHubService"),
    ("deposit", "pipeline.sandbox.deposit", "DepositService"),
    ("kaggle", "pipeline.sandbox.kaggle", "KaggleService"),
    ("hooks", "pipeline.sandbox.hooks", "HooksService"),
)


class Sandbox:
    """All sandbox services behind one server.

    ``options`` are passed to every service, which takes the ones it knows, e.g.
    ``seed`` (corpus), ``concepts`` (how many software concepts to start with),
    ``search_per_minute`` (Zenodo's search rate limit, 30 like zenodo.org).
    """

    zenodo: ZenodoService
    github: GitHubService
    deposit: DepositService
    kaggle: KaggleService
    hooks: HooksService

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self.server = SandboxServer(host, port)
        self.options = options
        self.tokens = {ZENODO_TOKEN}
        for attr, module_name, class_name in PARTS:
            module = importlib.import_module(module_name)
            service = getattr(module, class_name)(self)
            service.register(self.server.router)
            setattr(self, attr, service)
        self.server.router.add("POST", "/sandbox/records", self._add_records)

    MAX_ADD = 500

    def _add_records(self, request: Request) -> Response:
        """``POST /sandbox/records?count=N``: N new records, as "tomorrow" brings them."""
        text = request.arg("count", "3") or "3"
        if not text.isdigit() or not 1 <= int(text) <= self.MAX_ADD:
            return json_response(400, {"status": 400, "message": f"count must be a whole "
                                       f"number from 1 to {self.MAX_ADD}, got {text!r}"})
        added = self.zenodo.add_records(int(text))
        return json_response(201, {"added": [r["id"] for r in added]})

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Sandbox:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
