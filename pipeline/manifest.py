"""``data_manifest.yaml``: load, validate (JSON Schema), fill defaults, and expose typed sections.

Why a schema: a scheduled job that runs unattended must refuse a bad manifest *before* it touches
Zenodo, with one line per problem naming the key, its line in the file, and what was expected
(SPEC section 4). ``jsonschema`` does the checking; this module only turns its errors into those
lines and the validated dict into frozen dataclasses, so the rest of the code reads
``manifest.processing.max_file_bytes`` instead of nested ``dict.get`` calls.

Secrets are never in the manifest: it names environment variables (``*_env`` keys), read at the
moment a client is built. Relative paths are resolved against the manifest's folder.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import jsonschema
import yaml

from pipeline.errors import ManifestError

_STR = {"type": "string"}
_NESTR = {"type": "string", "minLength": 1}
_ENV = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_POSINT = {"type": "integer", "minimum": 1}
_STRLIST = {"type": "array", "items": _NESTR}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": list(required)}


def _d(schema: dict[str, Any], default: Any) -> dict[str, Any]:
    return {**schema, "default": default}


SCHEMA: dict[str, Any] = _obj({
    "source": _d(_obj({
        "zenodo": _d(_obj({
            "url": _d({"type": "string", "pattern": "^https?://"}, "https://zenodo.org"),
            "token_env": _d(_ENV, "ZENODO_TOKEN"),
            "search_requests_per_minute": _d({"type": "number", "exclusiveMinimum": 0}, 30),
            "timeout_seconds": _d({"type": "number", "exclusiveMinimum": 0}, 120),
            "max_retries": _d({"type": "integer", "minimum": 0, "maximum": 20}, 5),
        }), {}),
        "query": _d(_obj({
            "resource_type": _d(_NESTR, "software"),
            "communities": _d(_STRLIST, []),
            "extra": _d(_STR, ""),
        }), {}),
        "versions": _d({"enum": ["all", "latest"]}, "all"),
        "since": _d({"type": "string", "format": "date-time"}, "2026-11-01T00:00:00Z"),
        "overlap_minutes": _d({"type": "number", "minimum": 0}, 10),
        "exclusions": _d(_obj({
            "records": _d(_STRLIST, []),
            "concepts": _d(_STRLIST, []),
        }), {}),
        "max_records_per_run": _d(_POSINT, 500),
        "licenses": _d({"oneOf": [{"enum": ["any", "redistributable"]},
                                  {"type": "array", "items": _NESTR, "minItems": 1}]},
                       "redistributable"),
        "retry_limit": _d(_POSINT, 3),
        "github": _d(_obj({
            "archive_url": _d(
                {"type": "string", "pattern": "^https?://.*\\{owner\\}.*\\{repo\\}.*\\{ref\\}"},
                "https://codeload.github.com/{owner}/{repo}/tar.gz/{ref}"),
            "token_env": _d(_ENV, "GITHUB_TOKEN"),
        }), {}),
    }), {}),
    "processing": _d(_obj({
        "image_width": _d(_POSINT, 80),
        "image_height": _d(_POSINT, 80),
        "max_file_bytes": _d(_POSINT, 100000),
        "binary_policy": _d({"enum": ["skip", "include"]}, "skip"),
        "exclude_dirs": _d(_STRLIST, [".git", ".hg", ".svn"]),
        "tab_width": _d(_POSINT, 4),
        "mode": _d({"enum": ["default", "zenodo-ml-2018"]}, "default"),
        "max_download_bytes": _d(_POSINT, 2 * 1024**3),
        "max_members": _d(_POSINT, 200000),
        "max_uncompressed_bytes": _d(_POSINT, 8 * 1024**3),
        "max_compression_ratio": _d({"type": "number", "exclusiveMinimum": 1}, 200),
        "download_retries": _d({"type": "integer", "minimum": 0, "maximum": 20}, 3),
        "download_grace_seconds": _d({"type": "number", "minimum": 1}, 60),
        "download_min_bytes_per_second": _d(_POSINT, 65536),
        "compression_level": _d({"type": "integer", "minimum": 0, "maximum": 9}, 4),
        "redact": _d({"enum": ["secrets", "secrets+emails", "none"]}, "secrets"),
    }), {}),
    "dataset": _obj({
        "name": _d({"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{2,60}$"}, "code-images"),
        "title": _NESTR,
        "description": _NESTR,
        "license": _d(_NESTR, "CC-BY-4.0"),
        "creators": {"type": "array", "minItems": 1, "items": _obj({
            "name": _NESTR, "affiliation": _STR, "orcid": _STR}, ("name",))},
        "keywords": _d(_STRLIST, []),
        "max_parts": _d({"type": "integer", "minimum": 2, "maximum": 99}, 90),
        "splits": _d({"type": "object", "minProperties": 1,
                      "additionalProperties": {"type": "number", "exclusiveMinimum": 0}},
                     {"train": 0.8, "validation": 0.1, "test": 0.1}),
    }, ("title", "description", "creators")),
    "destinations": _d(_obj({
        "zenodo": _obj({
            "enabled": _d({"type": "boolean"}, True),
            "url": _d({"type": "string", "pattern": "^https?://"}, "https://sandbox.zenodo.org"),
            "token_env": _d(_ENV, "ZENODO_PUBLISH_TOKEN"),
            "deposition_id": _d({"type": ["string", "null"]}, None),
            "mode": _d({"enum": ["publish", "draft"]}, "publish"),
            "community": _d({"type": ["string", "null"]}, None),
            "volume_max_bytes": _d({"type": "integer", "minimum": 1}, 45_000_000_000),
        }),
        "kaggle": _obj({
            "enabled": _d({"type": "boolean"}, True),
            "dataset": {"type": "string", "pattern": "^[^/\\s]+/[a-z0-9][a-z0-9-]{5,49}$"},
            "public": _d({"type": "boolean"}, False),
            "api_url": _d({"type": ["string", "null"], "pattern": "^https?://"}, None),
            "files": _d({"enum": ["all", "latest-parts"]}, "all"),
            "status_timeout_seconds": _d({"type": "number", "exclusiveMinimum": 0}, 600),
            "max_bytes": _d({"type": "integer", "minimum": 1}, 20_000_000_000),
        }, ("dataset",)),
    }), {}),
    "notifications": _d(_obj({
        "feed": _d(_obj({
            "path": _d(_NESTR, "feed.atom"),
            "url": _d({"type": ["string", "null"]}, None),
        }), {}),
        "webhooks": _d({"type": "array", "items": _obj({
            "url_env": _ENV,
            "secret_env": _ENV,
            "format": _d({"enum": ["cloudevents"]}, "cloudevents"),
            "signature": _d({"enum": ["standard-webhooks", "github"]}, "standard-webhooks"),
        }, ("url_env", "secret_env"))}, []),
        "slack": _d({"type": ["object", "null"], "properties": {"url_env": _ENV},
                     "required": ["url_env"], "additionalProperties": False}, None),
        "github_dispatch": _d({"type": "array", "items": _obj({
            "repo": {"type": "string", "pattern": "^[^/\\s]+/[^/\\s]+$"},
            "event_type": _d({"type": "string", "minLength": 1, "maxLength": 100},
                             "dataset-updated"),
            "token_env": _d(_ENV, "DISPATCH_TOKEN"),
            "api_url": _d({"type": "string", "pattern": "^https?://"},
                          "https://api.github.com"),
        }, ("repo",))}, []),
    }), {}),
    "state": _d(_obj({
        "path": _d(_NESTR, "state/state.json"),
    }), {}),
}, ("dataset",))


@dataclass(frozen=True)
class ZenodoSource:
    url: str
    token_env: str
    search_requests_per_minute: float
    timeout_seconds: float
    max_retries: int

    @property
    def token(self) -> str | None:
        """The token from the environment (read late, never stored or logged)."""
        return os.environ.get(self.token_env) or None


@dataclass(frozen=True)
class Query:
    resource_type: str
    communities: tuple[str, ...]
    extra: str


@dataclass(frozen=True)
class Exclusions:
    records: tuple[str, ...]
    concepts: tuple[str, ...]


@dataclass(frozen=True)
class GitHubSource:
    archive_url: str
    token_env: str


@dataclass(frozen=True)
class Source:
    zenodo: ZenodoSource
    query: Query
    versions: Literal["all", "latest"]
    since: str
    overlap_minutes: float
    exclusions: Exclusions
    max_records_per_run: int
    retry_limit: int
    github: GitHubSource
    licenses: str | tuple[str, ...] = "redistributable"


@dataclass(frozen=True)
class Processing:
    image_width: int
    image_height: int
    max_file_bytes: int
    binary_policy: Literal["skip", "include"]
    exclude_dirs: tuple[str, ...]
    tab_width: int
    mode: Literal["default", "zenodo-ml-2018"]
    max_download_bytes: int
    max_members: int
    max_uncompressed_bytes: int
    max_compression_ratio: float
    download_retries: int
    download_grace_seconds: float
    download_min_bytes_per_second: int
    compression_level: int
    redact: Literal["secrets", "secrets+emails", "none"] = "secrets"


@dataclass(frozen=True)
class Creator:
    name: str
    affiliation: str = ""
    orcid: str = ""


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    description: str
    license: str
    creators: tuple[Creator, ...]
    keywords: tuple[str, ...]
    max_parts: int
    splits: tuple[tuple[str, float], ...] = (("train", 0.8), ("validation", 0.1), ("test", 0.1))


@dataclass(frozen=True)
class ZenodoDestination:
    enabled: bool
    url: str
    token_env: str
    deposition_id: str | None
    mode: Literal["publish", "draft"]
    community: str | None
    volume_max_bytes: int = 45_000_000_000

    @property
    def token(self) -> str | None:
        return os.environ.get(self.token_env) or None


@dataclass(frozen=True)
class KaggleDestination:
    enabled: bool
    dataset: str
    public: bool
    api_url: str | None
    files: Literal["all", "latest-parts"]
    status_timeout_seconds: float
    max_bytes: int = 20_000_000_000


@dataclass(frozen=True)
class Destinations:
    zenodo: ZenodoDestination | None
    kaggle: KaggleDestination | None


@dataclass(frozen=True)
class Webhook:
    url_env: str
    secret_env: str
    format: str
    signature: str = "standard-webhooks"


@dataclass(frozen=True)
class Dispatch:
    repo: str
    event_type: str
    token_env: str
    api_url: str


@dataclass(frozen=True)
class Notifications:
    feed_path: Path
    feed_url: str | None
    webhooks: tuple[Webhook, ...]
    slack_url_env: str | None
    github_dispatch: tuple[Dispatch, ...]


@dataclass(frozen=True)
class Manifest:
    path: Path
    source: Source
    processing: Processing
    dataset: Dataset
    destinations: Destinations
    notifications: Notifications
    state_path: Path
    raw: dict[str, Any] = field(repr=False, compare=False)


def default_processing(**changes: Any) -> Processing:
    """The ``processing`` section as a manifest without one would have it (plus ``changes``).

    For tests, benchmarks and library users who convert files without a manifest; the values
    come from the schema, so they cannot drift from what ``validate`` fills in.
    """
    values = _fill_defaults(SCHEMA["properties"]["processing"], {})
    values["exclude_dirs"] = tuple(values["exclude_dirs"])
    return Processing(**{**values, **changes})


def _fill_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Insert schema defaults into ``value`` (objects only), recursively."""
    if schema.get("type") == "object" and isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _fill_defaults(sub, value[key])
    elif schema.get("type") == "array" and isinstance(value, list) and "items" in schema:
        value = [_fill_defaults(schema["items"], item) for item in value]
    return value


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in the YAML text to its 1-based line (for line-accurate errors)."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = (*path, str(key_node.value))
                lines[sub] = key_node.start_mark.line + 1
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, str(i)))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _describe(error: jsonschema.ValidationError) -> tuple[tuple[str, ...], str]:
    path = tuple(str(p) for p in error.absolute_path)
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(cast(Mapping[str, Any], error.schema).get("properties", {}))
        extra = sorted(set(cast(Iterable[Any], error.instance)) - set(allowed))
        return (*path, extra[0]) if len(extra) == 1 else path, (
            f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(extra)}; "
            f"expected one of: {', '.join(allowed)}")
    if v == "required":
        missing = error.message.split("'")[1]
        return (*path, missing), "is missing (required)"
    if v == "type":
        return path, f"expected {error.validator_value}, got {type(error.instance).__name__} " \
                     f"{error.instance!r}"
    if v == "enum":
        choices = cast(Iterable[Any], error.validator_value)
        return path, f"expected one of {', '.join(map(str, choices))}, " \
                     f"got {error.instance!r}"
    if v == "pattern":
        return path, f"expected a value matching {error.validator_value}, got {error.instance!r}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength", "minItems"):
        return path, f"expected {v} {error.validator_value}, got {error.instance!r}"
    if v == "format":
        return path, f"expected an ISO 8601 {error.validator_value} such as " \
                     f"2026-01-01T00:00:00Z, got {error.instance!r}"
    return path, error.message


def validate(data: Any, *, text: str = "", path: str = "data_manifest.yaml") -> dict[str, Any]:
    """Validate and default-fill manifest data; raise :class:`ManifestError` with every problem."""
    if not isinstance(data, dict):
        raise ManifestError([f"{path}:1: the manifest must be a mapping of keys, "
                             f"got {type(data).__name__}"], path=path)
    data = _fill_defaults(SCHEMA, copy.deepcopy(data))
    checker = jsonschema.Draft202012Validator(SCHEMA, format_checker=_FORMATS)
    lines = _line_index(text)
    problems = []
    for error in sorted(checker.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        key_path, what = _describe(error)
        line = next((lines[key_path[:i]] for i in range(len(key_path), -1, -1)
                     if key_path[:i] in lines), 1)
        problems.append(f"{path}:{line}: {'.'.join(key_path) or '(top level)'}: {what}")
    if problems:
        raise ManifestError(problems, path=path)
    return data


def _date_time_ok(value: str) -> bool:
    from datetime import datetime
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _check_date_time(value: object) -> bool:  # jsonschema's own needs rfc3339-validator
    return not isinstance(value, str) or _date_time_ok(value)


def load(path: str | os.PathLike[str]) -> Manifest:
    """Read, validate and type the manifest at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError([f"{path}: cannot read the manifest ({exc.strerror}); pass "
                             "--manifest PATH or create data_manifest.yaml"],
                            path=str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ManifestError([f"{path}:{line}: not valid YAML: "
                             f"{getattr(exc, 'problem', exc)}"], path=str(path)) from exc
    return from_dict(validate(data, text=text, path=str(path)), path=path)


def from_dict(d: dict[str, Any], *, path: Path) -> Manifest:
    """Build the typed manifest from validated, default-filled data."""
    base = path.resolve().parent
    s, p, ds = d["source"], d["processing"], d["dataset"]
    dst, n = d["destinations"], d["notifications"]
    source = Source(
        zenodo=ZenodoSource(**s["zenodo"]),
        query=Query(s["query"]["resource_type"], tuple(s["query"]["communities"]),
                    s["query"]["extra"]),
        versions=s["versions"], since=s["since"], overlap_minutes=s["overlap_minutes"],
        exclusions=Exclusions(tuple(s["exclusions"]["records"]),
                              tuple(s["exclusions"]["concepts"])),
        max_records_per_run=s["max_records_per_run"], retry_limit=s["retry_limit"],
        github=GitHubSource(**s["github"]),
        licenses=s["licenses"] if isinstance(s["licenses"], str) else tuple(s["licenses"]),
    )
    processing = Processing(**{**p, "exclude_dirs": tuple(p["exclude_dirs"])})
    dataset = Dataset(
        name=ds["name"], title=ds["title"], description=ds["description"],
        license=ds["license"], creators=tuple(Creator(**c) for c in ds["creators"]),
        keywords=tuple(ds["keywords"]), max_parts=ds["max_parts"],
        splits=tuple((name, float(share)) for name, share in ds["splits"].items()),
    )
    zen = dst.get("zenodo")
    kag = dst.get("kaggle")
    destinations = Destinations(
        zenodo=ZenodoDestination(**zen) if zen else None,
        kaggle=KaggleDestination(**kag) if kag else None,
    )
    feed_path = Path(n["feed"]["path"])
    notifications = Notifications(
        feed_path=feed_path if feed_path.is_absolute() else base / feed_path,
        feed_url=n["feed"]["url"],
        webhooks=tuple(Webhook(**w) for w in n["webhooks"]),
        slack_url_env=(n["slack"] or {}).get("url_env"),
        github_dispatch=tuple(Dispatch(**g) for g in n["github_dispatch"]),
    )
    state_path = Path(d["state"]["path"])
    return Manifest(
        path=path, source=source, processing=processing, dataset=dataset,
        destinations=destinations, notifications=notifications,
        state_path=state_path if state_path.is_absolute() else base / state_path, raw=d,
    )
