"""``pipeline demo``: the whole pipeline, three times, against the embedded sandbox.

Why: a newcomer (and the pull-request workflow) should see the continuous-data loop work offline
with one command, through exactly the production code paths: only the URLs in the manifest and
the credentials in the environment point at the sandbox. The three runs show the contract of
SPEC section 9: the first publishes version 1 to the sandbox's Zenodo and Kaggle and notifies;
the second finds nothing new and changes nothing; then the sandbox adds records ("tomorrow") and
the third run publishes version 2.

:func:`sandbox_manifest` and :func:`sandbox_environ` are also what the end-to-end tests use.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline import sandbox as sb

KAGGLE_DATASET = f"{sb.KAGGLE_USERNAME}/code-images-demo"


def sandbox_manifest_data(url: str, *, overrides: Mapping[str, Any] | None = None
                          ) -> dict[str, Any]:
    """A manifest (as data) whose every service URL is the sandbox at ``url``."""
    data: dict[str, Any] = {
        "source": {
            "zenodo": {"url": url, "token_env": "ZENODO_TOKEN",
                       "search_requests_per_minute": 30, "max_retries": 5},
            "since": "2026-11-01T00:00:00Z",
            "max_records_per_run": 500,
            "github": {"archive_url": url + "/{owner}/{repo}/tar.gz/{ref}"},
        },
        "dataset": {
            "name": "code-images-demo",
            "title": "Code Images Demo (sandbox)",
            "description": "Code images of the sandbox's software records, built by the demo.",
            "license": "CC-BY-4.0",
            "creators": [{"name": "Demo, Pipeline", "affiliation": "Embedded sandbox"}],
            "keywords": ["code images", "demo"],
        },
        "destinations": {
            "zenodo": {"url": url, "token_env": "ZENODO_PUBLISH_TOKEN"},
            "kaggle": {"dataset": KAGGLE_DATASET, "api_url": url,
                       "status_timeout_seconds": 60},
        },
        "notifications": {
            "feed": {"path": "feed/dataset.atom"},
            "webhooks": [{"url_env": "DEMO_WEBHOOK_URL", "secret_env": "DEMO_WEBHOOK_SECRET"}],
            "slack": {"url_env": "DEMO_SLACK_URL"},
            "github_dispatch": [{"repo": "demo-org/dataset-consumer",
                                 "event_type": "dataset-updated", "token_env": "DISPATCH_TOKEN",
                                 "api_url": url}],
        },
        "state": {"path": "state/state.json"},
    }
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


def sandbox_manifest_text(url: str, *, overrides: Mapping[str, Any] | None = None) -> str:
    """The YAML text of :func:`sandbox_manifest_data` (what ``pipeline sandbox`` prints)."""
    head = (f"# A manifest aimed at the embedded sandbox at {url} (written by `pipeline "
            "sandbox`).\n# Paths are relative to this file's folder; the credentials it names "
            "are the sandbox's.\n")
    return head + yaml.safe_dump(sandbox_manifest_data(url, overrides=overrides),
                                 sort_keys=False)


def sandbox_manifest(url: str, folder: Path, *, overrides: Mapping[str, Any] | None = None
                     ) -> Path:
    """Write ``folder/data_manifest.yaml`` aimed at the sandbox at ``url``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data_manifest.yaml"
    path.write_text(sandbox_manifest_text(url, overrides=overrides), encoding="utf-8")
    return path


def sandbox_environ(url: str) -> dict[str, str]:
    """The credentials and endpoints the sandbox accepts, as environment variables."""
    return {
        "ZENODO_TOKEN": sb.ZENODO_TOKEN,
        "ZENODO_PUBLISH_TOKEN": sb.ZENODO_TOKEN,
        "KAGGLE_USERNAME": sb.KAGGLE_USERNAME,
        "KAGGLE_KEY": sb.KAGGLE_KEY,
        "DEMO_WEBHOOK_URL": f"{url}/hooks/demo",
        "DEMO_WEBHOOK_SECRET": sb.WEBHOOK_SECRET,
        "DEMO_SLACK_URL": f"{url}/slack/demo",
        "DISPATCH_TOKEN": sb.GITHUB_TOKEN,
    }


def export_lines(url: str) -> str:
    """:func:`sandbox_environ` as shell ``export`` lines (what ``pipeline sandbox`` prints),
    plus ``SANDBOX_URL`` for the controls (``curl -X POST "$SANDBOX_URL/sandbox/records"``)."""
    values = {**sandbox_environ(url), "SANDBOX_URL": url}
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in values.items())


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_demo(workdir: Path | None = None, *, jobs: int = 2, new_records: int = 4) -> int:
    """Run the pipeline three times against a fresh sandbox; print a short report."""
    from pipeline.actions import show
    from pipeline.manifest import load
    from pipeline.orchestrate import Context, run_all
    from pipeline.state import State

    keep = workdir is not None
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="pipeline-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    box = sb.Sandbox(seed=0).start()
    try:
        manifest = load(sandbox_manifest(box.url, root))
        print(f"demo: sandbox at {box.url}; everything is written under {root}", flush=True)
        codes = []
        with patched_environ(sandbox_environ(box.url)):
            for label in ("first run", "second run (nothing new)", "third run"):
                if label == "third run":
                    added = box.zenodo.add_records(new_records)
                    print(f"\ndemo: the sandbox published {len(added)} new record(s) "
                          f"('tomorrow'): {', '.join(str(r['id']) for r in added)}", flush=True)
                print(f"\n=== demo: {label} ===", flush=True)
                ctx = Context(manifest=manifest, workdir=root / "work")
                codes.append(0 if run_all(ctx, on_stage=show, jobs=jobs) else 1)
        state = State.load(root / "state" / "state.json")
        print(report(state, root, box))
        return 0 if all(c == 0 for c in codes) else 1
    finally:
        box.stop()
        if not keep and os.environ.get("PIPELINE_DEMO_CLEANUP") == "1":
            shutil.rmtree(root, ignore_errors=True)


def report(state: Any, root: Path, box: sb.Sandbox) -> str:
    """What the demo did, in a dozen lines."""
    counts = state.counts()
    images = sum(int(r.get("images", 0)) for r in state.records.values())
    lines = ["", "=== demo: report ===",
             f"records: {counts['done']} processed, {counts['failed']} failed, "
             f"{counts['skipped']} skipped; {images} code images"]
    for v in state.versions:
        pub = v.get("published", {})
        zen = pub.get("zenodo", {})
        kag = pub.get("kaggle", {})
        lines.append(f"version {v['version']}: {v['counts'].get('records')} records, "
                     f"+{v['counts'].get('added', 0)} added; Zenodo DOI {zen.get('doi', '-')}; "
                     f"Kaggle {kag.get('url', '-')} v{kag.get('version_number', '-')}")
    deliveries = box.hooks.deliveries()
    kinds: dict[str, int] = {}
    for d in deliveries:
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
    lines += [
        f"outputs:  {root / 'work' / 'records'} (one HDF5 + JSON per record)",
        f"versions: {root / 'work' / 'versions'}",
        f"feed:     {root / 'feed' / 'dataset.atom'}",
        f"state:    {root / 'state' / 'state.json'}",
        "notifications received by the sandbox: "
        + (", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"),
        "load the data:  python -c \"from pipeline.loader import load_all; "
        f"print(load_all('{root / 'work' / 'records'}').shape)\"",
    ]
    return "\n".join(lines)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
