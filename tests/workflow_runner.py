"""A local runner for this repository's GitHub Actions workflows, used by the tests.

Why: a workflow is code that only ever runs on GitHub, on a schedule, with secrets. Without this,
the first place a renamed CLI flag, a misspelt ``needs.*.outputs`` name, an artifact that lands
one folder too deep, a job skipped by an upstream skip, or a push race shows up is a failed 05:17
run that nobody watches. This runner executes the workflow files themselves, locally and offline,
close enough to GitHub's semantics that those mistakes fail a test instead:

* jobs in ``needs`` order; ``if:`` conditions in GitHub's expression language (the small
  evaluator below), with the implicit ``success()`` of a job covering *every* ancestor and a
  skipped ancestor counting as unsuccessful (the transitive skip of actions/runner#2205);
  matrices with include/exclude, also one computed by ``fromJSON`` from an earlier job's output;
  ``fail-fast``; job ``outputs``; ``environment`` and its secrets;
* every ``run:`` step in a subprocess as GitHub runs it (``bash -e {0}``, or
  ``bash --noprofile --norc -eo pipefail {0}`` for ``shell: bash``), with env from the workflow,
  the job and the step, and the files ``GITHUB_OUTPUT``, ``GITHUB_ENV``, ``GITHUB_PATH`` and
  ``GITHUB_STEP_SUMMARY`` honoured per step; ``continue-on-error``, ``timeout-minutes``,
  ``steps.<id>.outcome/conclusion/outputs``; ``::error::``/``::warning::`` annotations;
* the actions the workflows use, emulated: ``actions/checkout`` fetches the run's commit from a
  local bare repository playing GitHub (so ``git push`` really races, and a push from a checkout
  with ``persist-credentials: false`` really fails); ``actions/setup-python`` stands the current
  interpreter in; ``upload-artifact``/``download-artifact`` v4 keep artifacts per run with the
  real root rule (the least common ancestor of the search paths), ``name``, ``pattern``,
  ``merge-multiple``, ``overwrite`` and hidden files left out; ``actions/cache/restore|save``
  keep caches across runs (exact key first, then the newest key with a ``restore-keys`` prefix).

Honesty: whatever the runner cannot do as GitHub would raises :class:`WorkflowError` and fails
the test; nothing is skipped silently. That covers an expression that does not parse, an unknown
function, context or action, an action input that is not emulated, a key of a declared structure
that does not exist (``needs.plna``, ``matrix.shrad``, ``steps.typo``, ``inputs.typo``, an
undeclared job output) and a ``${{ }}`` mixed into text in an ``if:`` (always true on GitHub).
Missing *values* behave as on GitHub: an unset step output or secret is empty.

Two deliberate differences, both so that a test cannot change the machine it runs on:
``python`` is the current interpreter (a wrapper script first on PATH: a plain symlink would lose
the virtualenv, whose ``pyvenv.cfg`` CPython looks for beside the invoked path), and pip runs with
``PIP_NO_INDEX=1 PIP_DRY_RUN=1``, so ``pip install -r requirements.txt`` checks offline that the
interpreter already satisfies every pin (and fails if not) instead of installing into it.

Not emulated (and rejected if used): containers, services, reusable workflows, composite and
Docker actions. ``concurrency`` and ``permissions`` are not enforced (runs are sequential; the
tests check permissions statically), and secrets are not masked in logs.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class WorkflowError(Exception):
    """The workflow cannot run as written, or uses something this runner does not emulate."""


class ExpressionError(WorkflowError):
    """An expression that does not parse or cannot be evaluated."""


class ActionFailed(Exception):
    """An emulated action failed the way the real one would (its step fails, the run goes on)."""


# -- values: GitHub's loose typing ---------------------------------------------------------------

class Strict(dict):
    """A context object whose keys the workflow declares (jobs, step ids, matrix keys, inputs,
    job outputs): a missing key is a typo and fails, where a plain dict gives null as on GitHub."""

    def __init__(self, data: Mapping[str, Any], label: str) -> None:
        super().__init__(data)
        self.label = label


class Filtered(list):
    """The array an object filter makes (``needs.*.result``): a property applies to each item."""


_JS_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Infinity")


def to_number(value: Any) -> float:
    """JavaScript's ``Number()``, which GitHub applies when the operands' types differ."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
            return float(int(text, 16))
        if _JS_NUMBER.fullmatch(text):
            return float(text.replace("Infinity", "inf"))
    return math.nan


def truthy(value: Any) -> bool:
    """Falsy: null, false, 0, NaN and the empty string; objects and arrays are truthy."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def to_str(value: Any) -> str:
    """How a value reads when interpolated into a string (``${{ }}`` in a script, env, with)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return "NaN"
        if isinstance(value, float) and math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def loose_equal(a: Any, b: Any) -> bool:
    """``==``: strings case-insensitively; different types compared as numbers (NaN never
    equal); objects only when they are the same instance."""
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return to_number(a) == to_number(b)
    if ka == "string":
        return a.casefold() == b.casefold()
    if ka == "number":
        return float(a) == float(b)
    if ka == "object":
        return a is b
    return a == b


def _compare(op: str, a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.casefold()
        y: Any = b.casefold()
    else:
        x, y = to_number(a), to_number(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


# -- expressions: tokenizer, parser, evaluator ----------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>0[xX][0-9a-fA-F]+|-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,*])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
""", re.VERBOSE)

Node = tuple[Any, ...]


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExpressionError(f"unexpected {text[pos]!r} at {pos} in expression {text!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group()))
        pos = m.end()
    return tokens


class _Parser:
    """Recursive descent, GitHub's precedence: ``()`` ``[]`` ``.``, ``!``, ``< <= > >=``,
    ``== !=``, ``&&``, ``||``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self) -> Node:
        if not self.tokens:
            raise ExpressionError("empty expression")
        node = self._binary(0)
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.pos][1]!r} in {self.text!r}")
        return node

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ExpressionError(f"unexpected end of expression {self.text!r}")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r}, got {token[1]!r} in {self.text!r}")
        self.pos += 1
        return token

    _LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="))

    def _binary(self, level: int) -> Node:
        if level == len(self._LEVELS):
            return self._unary()
        node = self._binary(level + 1)
        while self._peek() in self._LEVELS[level]:
            op = self._take()[1]
            node = ("op", op, node, self._binary(level + 1))
        return node

    def _unary(self) -> Node:
        if self._peek() == "!":
            self._take()
            return ("not", self._unary())
        return self._postfix(self._primary())

    def _postfix(self, node: Node) -> Node:
        while self._peek() in (".", "["):
            if self._take()[1] == ".":
                kind, value = self._take()
                if value == "*":
                    node = ("star", node)
                elif kind == "ident":
                    node = ("prop", node, value)
                else:
                    raise ExpressionError(f"expected a property name after '.', got {value!r} "
                                          f"in {self.text!r}")
            else:
                if self._peek() == "*":
                    self._take()
                    node = ("star", node)
                else:
                    node = ("index", node, self._binary(0))
                self._take("]")
        return node

    def _primary(self) -> Node:
        kind, value = self._take()
        if kind == "num":
            return ("lit", float(int(value, 16)) if value[:2].lower() == "0x" else float(value))
        if kind == "str":
            return ("lit", value[1:-1].replace("''", "'"))
        if value == "(":
            node = self._binary(0)
            self._take(")")
            return node
        if kind == "ident":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "null":
                return ("lit", None)
            if self._peek() == "(":
                self._take()
                args: list[Node] = []
                while self._peek() != ")":
                    args.append(self._binary(0))
                    if self._peek() == ",":
                        self._take()
                    elif self._peek() != ")":
                        raise ExpressionError(f"expected ',' or ')' in {self.text!r}")
                self._take(")")
                return ("call", value, args)
            return ("ctx", value)
        raise ExpressionError(f"unexpected {value!r} in {self.text!r}")


@dataclass
class Scope:
    """What an expression may see: the contexts available where it is written (GitHub allows
    different ones in a job ``if`` than in a step ``env``) and, where status functions are
    allowed, the status of the job or of its ancestors."""

    contexts: Mapping[str, Any]
    status: str | None = None


def _prop(obj: Any, name: str, text: str) -> Any:
    if isinstance(obj, Filtered):
        return Filtered(_prop(item, name, text) for item in obj)
    if isinstance(obj, Mapping):
        if name in obj:
            return obj[name]
        for key, value in obj.items():
            if key.casefold() == name.casefold():
                return value
        if isinstance(obj, Strict):
            raise ExpressionError(f"{obj.label} has no {name!r} (it has: "
                                  f"{', '.join(sorted(obj)) or 'nothing'}) in {text!r}")
    return None


def _format(text: str, args: Sequence[Any], expression: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("{{", i) or text.startswith("}}", i):
            out.append(text[i])
            i += 2
        elif text[i] == "{":
            end = text.find("}", i)
            index = text[i + 1:end] if end > 0 else ""
            if not index.isdigit() or int(index) >= len(args):
                raise ExpressionError(f"format(): bad placeholder in {text!r} ({expression!r})")
            out.append(to_str(args[int(index)]))
            i = end + 1
        elif text[i] == "}":
            raise ExpressionError(f"format(): unbalanced '}}' in {text!r} ({expression!r})")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


_STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")


def _call(name: str, args: list[Any], scope: Scope, text: str) -> Any:
    fn = name.lower()

    def arity(low: int, high: int | None = None) -> None:
        if not low <= len(args) <= (low if high is None else high):
            raise ExpressionError(f"{name}() takes {low}" + (f" to {high}" if high else "")
                                  + f" argument(s), got {len(args)} in {text!r}")

    if fn in _STATUS_FUNCTIONS:
        arity(0)
        if scope.status is None:
            raise ExpressionError(f"{name}() is not allowed here ({text!r})")
        return {"always": True, "cancelled": scope.status == "cancelled",
                "success": scope.status == "success",
                "failure": scope.status == "failure"}[fn]
    if fn == "contains":
        arity(2)
        haystack, needle = args
        if isinstance(haystack, list):
            return any(loose_equal(item, needle) for item in haystack)
        return to_str(needle).casefold() in to_str(haystack).casefold()
    if fn in ("startswith", "endswith"):
        arity(2)
        a, b = to_str(args[0]).casefold(), to_str(args[1]).casefold()
        return a.startswith(b) if fn == "startswith" else a.endswith(b)
    if fn == "format":
        if not args:
            raise ExpressionError(f"format() needs a format string in {text!r}")
        return _format(to_str(args[0]), args[1:], text)
    if fn == "join":
        arity(1, 2)
        sep = to_str(args[1]) if len(args) > 1 else ","
        return sep.join(map(to_str, args[0])) if isinstance(args[0], list) else to_str(args[0])
    if fn == "tojson":
        arity(1)
        return json.dumps(args[0], indent=2)
    if fn == "fromjson":
        arity(1)
        try:
            return json.loads(to_str(args[0]))
        except ValueError as exc:
            raise ExpressionError(f"fromJSON(): {to_str(args[0])!r} is not JSON ({exc}) "
                                  f"in {text!r}") from exc
    raise ExpressionError(f"function {name}() is not emulated ({text!r})")


def _eval(node: Node, scope: Scope, text: str) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ctx":
        name = node[1]
        for key, value in scope.contexts.items():
            if key.casefold() == name.casefold():
                return value
        raise ExpressionError(f"context {name!r} is not available here (available: "
                              f"{', '.join(sorted(scope.contexts))}) in {text!r}")
    if kind == "prop":
        return _prop(_eval(node[1], scope, text), node[2], text)
    if kind == "index":
        obj, key = _eval(node[1], scope, text), _eval(node[2], scope, text)
        if isinstance(obj, list) and isinstance(key, int | float) and not isinstance(key, bool):
            return obj[int(key)] if 0 <= int(key) < len(obj) else None
        return _prop(obj, to_str(key), text)
    if kind == "star":
        obj = _eval(node[1], scope, text)
        if isinstance(obj, Mapping):
            return Filtered(obj.values())
        return Filtered(obj) if isinstance(obj, list) else Filtered()
    if kind == "not":
        return not truthy(_eval(node[1], scope, text))
    if kind == "call":
        return _call(node[1], [_eval(a, scope, text) for a in node[2]], scope, text)
    op, left = node[1], _eval(node[2], scope, text)
    if op == "&&":
        return _eval(node[3], scope, text) if truthy(left) else left
    if op == "||":
        return left if truthy(left) else _eval(node[3], scope, text)
    right = _eval(node[3], scope, text)
    if op == "==":
        return loose_equal(left, right)
    if op == "!=":
        return not loose_equal(left, right)
    return _compare(op, left, right)


def evaluate(expression: str, scope: Scope) -> Any:
    """Evaluate one expression (the text inside ``${{ }}``)."""
    return _eval(_Parser(expression).parse(), scope, expression.strip())


_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def _whole(text: str) -> str | None:
    """The expression when ``text`` is exactly one ``${{ }}``, else None."""
    m = _TEMPLATE.fullmatch(text.strip())
    return m.group(1) if m and "${{" not in m.group(1) else None


def interpolate(text: str, scope: Scope) -> str:
    """Replace every ``${{ expr }}`` in ``text`` with its string value."""
    return _TEMPLATE.sub(lambda m: to_str(evaluate(m.group(1), scope)), text)


def evaluate_value(value: Any, scope: Scope) -> Any:
    """A YAML value with expressions: a string that is one whole ``${{ }}`` keeps the value's
    type (``matrix: ${{ fromJSON(...) }}`` is an object); other strings are interpolated."""
    if isinstance(value, str):
        whole = _whole(value)
        return evaluate(whole, scope) if whole is not None else interpolate(value, scope)
    if isinstance(value, Mapping):
        return {k: evaluate_value(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate_value(v, scope) for v in value]
    return value


def condition(value: Any, scope: Scope) -> bool:
    """An ``if:``: an expression with or without ``${{ }}``; without a status function it
    means ``success() && (...)``."""
    if value is None:
        value = "success()"
    if isinstance(value, bool | int | float):
        return truthy(value) and scope.status == "success"
    text = str(value).strip()
    whole = _whole(text)
    if whole is not None:
        text = whole.strip()
    elif "${{" in text:
        raise WorkflowError(f"if: {value!r} mixes ${{{{ }}}} with text, which GitHub reads "
                            "as a non-empty string: always true")
    if not re.search(r"\b(success|failure|always|cancelled)\s*\(", text, re.IGNORECASE):
        text = f"success() && ({text})"
    return truthy(evaluate(text, scope))


# -- matrices ------------------------------------------------------------------------------------

def expand_matrix(matrix: Any) -> list[dict[str, Any]]:
    """The combinations of ``strategy.matrix`` (GitHub's rules for include and exclude)."""
    if not isinstance(matrix, Mapping):
        raise WorkflowError(f"strategy.matrix must be a mapping, got {matrix!r}")
    include = matrix.get("include") or []
    exclude = matrix.get("exclude") or []
    vectors = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    for key, values in vectors.items():
        if not isinstance(values, list):
            raise WorkflowError(f"matrix vector {key!r} must be a list, got {values!r}")
        if not values:
            raise WorkflowError(f"matrix vector {key!r} does not contain any values")
    combos = [dict(zip(vectors, values, strict=True))
              for values in itertools.product(*vectors.values())] if vectors else []
    combos = [c for c in combos
              if not any(all(loose_equal(c.get(k), v) for k, v in e.items()) for e in exclude)]
    originals = set(vectors)
    base = list(combos)
    for entry in include:
        matched = False
        for combo in base:
            if all(loose_equal(combo[k], v) for k, v in entry.items() if k in originals):
                combo.update({k: v for k, v in entry.items() if k not in originals})
                matched = True
        if not matched:
            combos.append(dict(entry))
    if not combos:
        raise WorkflowError("the matrix has no combinations")
    return combos


# -- GITHUB_OUTPUT and GITHUB_ENV files ----------------------------------------------------------

def read_command_file(path: Path, what: str) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIMITER`` heredocs, as the runner reads them."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    values: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        heredoc = "<<" in line and ("=" not in line or line.index("<<") < line.index("="))
        if heredoc:
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            while True:
                if i >= len(lines):
                    raise WorkflowError(f"{what}: heredoc {delimiter!r} of {name!r} not closed")
                i += 1
                if lines[i - 1] == delimiter:
                    break
                body.append(lines[i - 1])
            values[name] = "\n".join(body)
        elif "=" in line and line.split("=", 1)[0]:
            name, value = line.split("=", 1)
            values[name] = value
        else:
            raise WorkflowError(f"{what}: invalid line {line!r} (expected name=value or "
                                "name<<DELIMITER)")
    return values


# -- artifacts and caches ------------------------------------------------------------------------

_GLOB_CHARS = re.compile(r"[*?\[]")


def _search_path(pattern: str, workspace: Path) -> Path:
    """The part of a pattern before its first wildcard segment (@actions/glob's search path)."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if _GLOB_CHARS.search(part):
            break
        parts.append(part)
    return (workspace / Path(*parts)) if parts else workspace


def _glob_files(pattern: str, workspace: Path) -> set[Path]:
    found: set[Path] = set()
    for match in glob.glob(str(workspace / pattern), recursive=True, include_hidden=True):
        path = Path(match)
        if path.is_dir():
            found.update(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            found.add(path)
    return found


def upload_set(spec: str, workspace: Path, *, include_hidden: bool = False
               ) -> tuple[list[Path], Path]:
    """The files upload-artifact v4 uploads for ``path: spec``, and the artifact's root.

    As actions/upload-artifact ``src/shared/search.ts``: several search paths root the artifact
    at their least common ancestor (whatever files exist); one search path that is exactly the
    one file found roots it at the file's folder; otherwise the search path is the root.
    """
    lines = [line.strip() for line in spec.splitlines() if line.strip()]
    includes = [line for line in lines if not line.startswith("!")]
    if not includes:
        raise ActionFailed("upload-artifact: `path` names no files")
    files: set[Path] = set()
    for pattern in includes:
        files |= _glob_files(pattern, workspace)
    for pattern in (line[1:] for line in lines if line.startswith("!")):
        files -= _glob_files(pattern, workspace)
    if not include_hidden:
        files = {f for f in files
                 if not any(part.startswith(".") for part in f.relative_to(workspace).parts)}
    searches = sorted({_search_path(p.rstrip("/"), workspace) for p in includes},
                      key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in searches:  # @actions/glob drops duplicates and paths under another one
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    if len(kept) > 1:
        common = Path(os.path.commonpath([str(p) for p in kept]))
        return sorted(files), common
    if len(files) == 1 and next(iter(files)) == kept[0]:
        return sorted(files), kept[0].parent
    return sorted(files), kept[0]


class ArtifactStore:
    """The artifacts of one workflow run: immutable once uploaded, unless ``overwrite``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def upload(self, name: str, files: Sequence[Path], base: Path, *, overwrite: bool) -> None:
        target = self.root / name
        if target.exists():
            if not overwrite:
                raise ActionFailed(f"upload-artifact: an artifact named {name!r} already exists "
                                   "in this run (v4 artifacts are immutable; use overwrite)")
            shutil.rmtree(target)
        for source in files:
            dest = target / source.relative_to(base)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
        target.mkdir(parents=True, exist_ok=True)

    def files(self, name: str) -> list[str]:
        folder = self.root / name
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    def download(self, name: str, destination: Path) -> None:
        source = self.root / name
        if not source.is_dir():
            raise ActionFailed(f"download-artifact: Artifact {name!r} not found "
                               f"(this run has: {', '.join(self.names()) or 'none'})")
        shutil.copytree(source, destination, dirs_exist_ok=True)


class CacheStore:
    """The Actions cache of the repository: it outlives runs, keys are immutable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys: list[str] = []   # in the order they were saved
        root.mkdir(parents=True, exist_ok=True)

    def _folder(self, key: str) -> Path:
        return self.root / str(self.keys.index(key))

    def save(self, key: str, paths: Sequence[str], workspace: Path) -> str:
        if key in self.keys:
            return f"cache {key!r} already exists: not saved (keys are immutable)"
        existing = [(i, workspace / p) for i, p in enumerate(paths) if (workspace / p).exists()]
        if not existing:
            return "none of the paths exist: no cache saved"
        self.keys.append(key)
        for i, path in existing:
            dest = self._folder(key) / str(i)
            if path.is_dir():
                shutil.copytree(path, dest, symlinks=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
        return f"saved cache {key!r}"

    def restore(self, key: str, restore_keys: Sequence[str], paths: Sequence[str],
                workspace: Path) -> str | None:
        matched = key if key in self.keys else next(
            (k for prefix in restore_keys for k in reversed(self.keys) if k.startswith(prefix)),
            None)
        if matched is None:
            return None
        for i, path in enumerate(paths):
            source = self._folder(matched) / str(i)
            if source.is_dir():
                shutil.copytree(source, workspace / path, dirs_exist_ok=True, symlinks=True)
            elif source.is_file():
                (workspace / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, workspace / path)
        return matched


# -- the repository on "GitHub": a local bare repository -----------------------------------------

def git(*args: str | os.PathLike[str], cwd: Path | None = None) -> str:
    """Run git isolated from the user's and the system's configuration; return its stdout."""
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(["git", "-c", "user.name=Workflow Test", "-c",
                           "user.email=workflow-test@example.invalid", "-c",
                           "init.defaultBranch=main", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(map(str, args))} failed: {done.stderr.strip()}")
    return done.stdout


def working_tree_files(repo: Path) -> list[str]:
    """The files of a working tree as git sees them: tracked plus untracked-but-not-ignored.

    Why not a clone: the workflows must be tested with the code as it is on disk (uncommitted
    work included), and without ``work/``, caches or virtualenvs.
    """
    out = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=repo)
    return sorted(name for name in out.split("\0") if name and (repo / name).is_file())


class GitRemote:
    """A bare repository that plays the GitHub repository: checkouts fetch the run's commit
    from it, the workflow pushes to it, and tests push "concurrent" commits to it."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self.branch = branch
        path.mkdir(parents=True, exist_ok=True)
        git("init", "--quiet", "--bare", "--initial-branch", branch, path)
        git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=path)  # fetch by SHA

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    def head(self) -> str:
        return git("rev-parse", self.branch, cwd=self.path).strip()

    def commit(self, files: Mapping[str, str | bytes | Path | None], message: str, *,
               scratch: Path) -> str:
        """Commit ``files`` (path -> text, bytes, a file to copy, or None to delete) on top
        of the branch, as another pusher would; returns the new commit."""
        if scratch.exists():
            shutil.rmtree(scratch)
        if git("branch", "--list", self.branch, cwd=self.path).strip():
            git("clone", "--quiet", "--branch", self.branch, self.url, scratch)
        else:
            git("init", "--quiet", "--initial-branch", self.branch, scratch)
            git("remote", "add", "origin", self.url, cwd=scratch)
        for name, content in files.items():
            target = scratch / name
            if content is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copy2(content, target)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")
        git("add", "--all", ".", cwd=scratch)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=scratch)
        git("push", "--quiet", "origin", f"HEAD:{self.branch}", cwd=scratch)
        shutil.rmtree(scratch)
        return self.head()

    def read(self, path: str, ref: str | None = None) -> str | None:
        try:
            return git("show", f"{ref or self.branch}:{path}", cwd=self.path)
        except RuntimeError:
            return None

    def subjects(self, count: int = 20) -> list[str]:
        return git("log", f"-{count}", "--format=%s", self.branch, cwd=self.path).splitlines()

    def checkout(self, dest: Path, sha: str, *, ref_branch: str | None, depth: int,
                 persist_credentials: bool) -> None:
        """What actions/checkout does: fetch exactly the run's commit (not the branch's newest),
        check it out as the branch (detached for a pull request's merge ref)."""
        git("init", "--quiet", dest)
        git("remote", "add", "origin", self.url, cwd=dest)
        target = f"refs/remotes/origin/{ref_branch}" if ref_branch else "refs/pr/merge"
        fetch = ["fetch", "--quiet", "--no-tags", "origin", f"+{sha}:{target}"]
        git(*fetch[:2], *([f"--depth={depth}"] if depth > 0 else []), *fetch[2:], cwd=dest)
        if ref_branch:
            git("checkout", "--quiet", "-B", ref_branch, target, cwd=dest)
        else:
            git("checkout", "--quiet", "--detach", target, cwd=dest)
        if not persist_credentials:
            # No token in .git/config, as on GitHub: a push from this checkout cannot work.
            git("config", "remote.origin.pushurl",
                "/nonexistent/persist-credentials-is-false", cwd=dest)


# -- results -------------------------------------------------------------------------------------

@dataclass
class StepResult:
    name: str
    id: str | None
    outcome: str        # success | failure | skipped
    conclusion: str     # the outcome after continue-on-error
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""
    note: str = ""


@dataclass
class JobResult:
    job_id: str
    name: str
    result: str         # success | failure | cancelled | skipped
    matrix: dict[str, Any] | None = None
    environment: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    annotations: list[str] = field(default_factory=list)

    def step(self, name_or_id: str) -> StepResult:
        for step in self.steps:
            if name_or_id in (step.id, step.name):
                return step
        raise KeyError(f"job {self.name} has no step {name_or_id!r}: "
                       f"{[s.id or s.name for s in self.steps]}")


@dataclass
class RunResult:
    workflow: str
    event: str
    sha: str
    jobs: dict[str, list[JobResult]]        # job id -> one result per matrix leg
    results: dict[str, str]                 # job id -> needs.<id>.result
    artifacts: ArtifactStore
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # needs.<id>.outputs

    @property
    def ok(self) -> bool:
        return all(r in ("success", "skipped") for r in self.results.values())

    def job(self, job_id: str, leg: int = 0) -> JobResult:
        return self.jobs[job_id][leg]

    def report(self, log_tail: int = 4000) -> str:
        """Every job and step with its outcome; the log tails of failed steps."""
        lines = [f"{self.workflow} on {self.event} at {self.sha[:10]}"]
        for legs in self.jobs.values():
            for job in legs:
                lines.append(f"job {job.name}: {job.result}"
                             + (f" (environment {job.environment})" if job.environment else ""))
                for step in job.steps:
                    lines.append(f"  {step.outcome:<8} {step.name}"
                                 + (f"  [{step.note}]" if step.note else ""))
                    if step.outcome == "failure":
                        lines += ["    | " + line for line in step.log[-log_tail:].splitlines()]
        return "\n".join(lines)


# -- the runner ----------------------------------------------------------------------------------

_WORKFLOW_KEYS = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency",
                  "jobs"}
_JOB_KEYS = {"name", "needs", "if", "runs-on", "environment", "permissions", "timeout-minutes",
             "strategy", "outputs", "env", "defaults", "steps", "concurrency"}
_STEP_KEYS = {"id", "name", "if", "run", "uses", "with", "env", "shell", "working-directory",
              "continue-on-error", "timeout-minutes"}
_ACTION_INPUTS = {
    "actions/checkout": {"ref", "fetch-depth", "persist-credentials"},
    "actions/setup-python": {"python-version", "cache", "cache-dependency-path"},
    "actions/upload-artifact": {"name", "path", "if-no-files-found", "retention-days",
                                "compression-level", "overwrite", "include-hidden-files"},
    "actions/download-artifact": {"name", "path", "pattern", "merge-multiple"},
    "actions/cache/restore": {"path", "key", "restore-keys", "fail-on-cache-miss"},
    "actions/cache/save": {"path", "key"},
}
_ANNOTATION = re.compile(r"^::(error|warning|notice)(?: [^:]*)?::(.*)$")
_RUN_IDS = itertools.count(4000)


def _triggers(doc: Mapping[Any, Any]) -> dict[str, Any]:
    on = doc.get("on", doc.get(True))   # YAML 1.1 reads a bare `on` key as the boolean true
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    if isinstance(on, Mapping):
        return dict(on)
    raise WorkflowError(f"the workflow has no valid `on`: {on!r}")


def _flag(value: Any, default: bool) -> bool:
    text = to_str(value).strip().lower()
    if text == "":
        return default
    if text not in ("true", "false"):
        raise WorkflowError(f"expected true or false, got {value!r}")
    return text == "true"


def _lines(value: Any) -> list[str]:
    return [line.strip() for line in to_str(value).splitlines() if line.strip()]


class WorkflowRunner:
    """Runs workflow files of a :class:`GitRemote` locally, one run at a time.

    ``secrets`` are repository secrets; ``environments`` maps an environment name to the
    secrets only a job in that environment sees. ``skip_steps`` maps step names to the reason a
    test skips them (reported as skipped; every name must exist, so a rename cannot turn the skip
    into a no-op). ``before_job(job_id)`` runs before each job (a test pushes a concurrent commit
    there). Caches persist across the runs of one runner, artifacts belong to one run.
    """

    def __init__(self, remote: GitRemote, root: Path, *,
                 secrets: Mapping[str, str] | None = None,
                 environments: Mapping[str, Mapping[str, str]] | None = None,
                 variables: Mapping[str, str] | None = None,
                 skip_steps: Mapping[str, str] | None = None,
                 before_job: Callable[[str], None] | None = None,
                 repository: str = "example-org/code-images") -> None:
        self.remote = remote
        self.root = root
        self.secrets = dict(secrets or {})
        self.environments = {k: dict(v) for k, v in (environments or {}).items()}
        self.variables = dict(variables or {})
        self.skip_steps = dict(skip_steps or {})
        self.before_job = before_job
        self.repository = repository
        self.caches = CacheStore(root / "caches")
        self.bin = root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        for name in ("python", "python3"):
            wrapper = self.bin / name
            wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} \"$@\"\n",
                               encoding="utf-8")
            wrapper.chmod(0o755)

    # -- a run ---------------------------------------------------------------------------------
    def run(self, workflow: str, *, event: str, inputs: Mapping[str, Any] | None = None,
            sha: str | None = None) -> RunResult:
        """Run ``workflow`` (a path in the repository, read at ``sha``, default the branch's
        head) for ``event`` with workflow_dispatch ``inputs``."""
        sha = sha or self.remote.head()
        text = self.remote.read(workflow, sha)
        if text is None:
            raise WorkflowError(f"{workflow} does not exist at {sha}")
        doc = yaml.safe_load(text)
        self._check_keys(doc, workflow)
        run_id = next(_RUN_IDS)
        inputs_ctx = self._inputs(doc, event, inputs)
        github = self._github(event, sha, run_id, workflow, inputs_ctx)
        base = {"github": github, "inputs": inputs_ctx, "vars": dict(self.variables)}
        secrets = {**self.secrets, "GITHUB_TOKEN": "ghs_local-runner-token"}
        workflow_env = {k: to_str(v) for k, v in evaluate_value(
            doc.get("env") or {}, Scope({**base, "secrets": secrets})).items()}
        jobs: dict[str, Any] = doc["jobs"]
        names = {to_str(step.get("name")) for _, step in iter_run_steps(doc)}
        if set(self.skip_steps) - names:
            raise WorkflowError(f"skip_steps names steps that {workflow} does not have: "
                                f"{sorted(set(self.skip_steps) - names)}")
        artifacts = ArtifactStore(self.root / "artifacts" / str(run_id))
        run = RunResult(workflow, event, sha, {}, {}, artifacts)
        for job_id in self._order(jobs):
            if self.before_job:
                self.before_job(job_id)
            legs = self._job(doc, job_id, jobs, run, base, secrets, workflow_env)
            run.jobs[job_id] = legs
            run.results[job_id] = self._combined(legs)
            # A matrix job's outputs: each leg's non-empty values, the last leg winning.
            run.outputs[job_id] = {k: v for leg in legs for k, v in leg.outputs.items() if v}
        return run

    def _check_keys(self, doc: Any, workflow: str) -> None:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("jobs"), Mapping):
            raise WorkflowError(f"{workflow}: not a workflow (no jobs)")
        unknown = {k for k in doc if k is not True} - _WORKFLOW_KEYS
        if unknown:
            raise WorkflowError(f"{workflow}: keys not emulated: {sorted(unknown)}")
        for job_id, job in doc["jobs"].items():
            if set(job) - _JOB_KEYS:
                raise WorkflowError(f"{workflow}: job {job_id}: keys not emulated: "
                                    f"{sorted(set(job) - _JOB_KEYS)}")
            for step in job.get("steps") or []:
                if set(step) - _STEP_KEYS or ("run" in step) == ("uses" in step):
                    raise WorkflowError(f"{workflow}: job {job_id}: step {step} needs exactly "
                                        f"one of run/uses and only keys {sorted(_STEP_KEYS)}")

    def _github(self, event: str, sha: str, run_id: int, workflow: str,
                inputs: Mapping[str, Any]) -> Strict:
        pull = event == "pull_request"
        ref = "refs/pull/1/merge" if pull else f"refs/heads/{self.remote.branch}"
        payload: dict[str, Any] = {}
        if event == "workflow_dispatch":
            payload = {"inputs": {k: to_str(v) for k, v in inputs.items()}}  # all strings
        elif pull:
            payload = {"number": 1, "pull_request": {"number": 1, "head": {"ref": "feature"},
                                                     "base": {"ref": self.remote.branch}}}
        owner = self.repository.split("/")[0]
        return Strict({
            "event_name": event, "event": payload, "ref": ref,
            "ref_name": "1/merge" if pull else self.remote.branch, "ref_type": "branch",
            "sha": sha, "repository": self.repository, "repository_owner": owner,
            "run_id": str(run_id), "run_number": str(run_id - 3999), "run_attempt": "1",
            "server_url": "https://github.com", "api_url": "https://api.github.com",
            "actor": "workflow-test", "triggering_actor": "workflow-test",
            "workflow": workflow, "head_ref": "feature" if pull else "",
            "base_ref": self.remote.branch if pull else "", "token": "ghs_local-runner-token",
            "workspace": str(self._workspace()), "job": "", "retention_days": "90",
        }, "github")

    def _inputs(self, doc: Mapping[Any, Any], event: str,
                given: Mapping[str, Any] | None) -> Strict:
        triggers = _triggers(doc)
        if event not in triggers:
            raise WorkflowError(f"the workflow does not run on {event!r} (on: {sorted(triggers)})")
        declared: Mapping[str, Any] = ((triggers.get("workflow_dispatch") or {})
                                       .get("inputs") or {})
        given = dict(given or {})
        if event != "workflow_dispatch":
            if given:
                raise WorkflowError(f"inputs are only given to workflow_dispatch, not {event}")
            return Strict(dict.fromkeys(declared), "inputs")
        unknown = set(given) - set(declared)
        if unknown:
            raise WorkflowError(f"Unexpected inputs provided: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            spec = spec or {}
            value = given.get(name, spec.get("default"))
            if value is None and spec.get("required"):
                raise WorkflowError(f"input {name!r} is required")
            kind = spec.get("type", "string")
            if kind == "choice" and to_str(value) not in map(to_str, spec.get("options", [])):
                raise WorkflowError(f"input {name!r}: {value!r} is not one of "
                                    f"{spec.get('options')}")
            if kind == "boolean":
                value = _flag(value, False)
            elif kind == "number":
                value = to_number(value)
            elif value is not None:
                value = to_str(value)
            values[name] = value
        return Strict(values, "inputs")

    @staticmethod
    def _order(jobs: Mapping[str, Any]) -> list[str]:
        order: list[str] = []
        visiting: set[str] = set()

        def visit(job_id: str) -> None:
            if job_id in order:
                return
            if job_id in visiting:
                raise WorkflowError(f"the jobs' needs form a cycle through {job_id!r}")
            if job_id not in jobs:
                raise WorkflowError(f"a job needs {job_id!r}, which does not exist")
            visiting.add(job_id)
            for need in _needs(jobs[job_id]):
                visit(need)
            order.append(job_id)

        for job_id in jobs:
            visit(job_id)
        return order

    @staticmethod
    def _combined(legs: Sequence[JobResult]) -> str:
        results = {leg.result for leg in legs}
        for result in ("failure", "cancelled", "success"):
            if result in results:
                return result
        return "skipped"

    def _workspace(self) -> Path:
        name = self.repository.split("/")[-1]
        return self.root / "work" / name / name  # the same path for every job, as on GitHub

    # -- a job ---------------------------------------------------------------------------------
    def _job(self, doc: Mapping[Any, Any], job_id: str, jobs: Mapping[str, Any], run: RunResult,
             base: Mapping[str, Any], secrets: Mapping[str, str],
             workflow_env: Mapping[str, str]) -> list[JobResult]:
        job = jobs[job_id]
        needs = Strict({
            need: Strict({"result": run.results[need],
                          "outputs": Strict({k: run.outputs[need].get(k, "")
                                             for k in jobs[need].get("outputs") or {}},
                                            f"needs.{need}.outputs")}, f"needs.{need}")
            for need in _needs(job)}, "needs")
        ancestors = _ancestors(job_id, jobs)
        statuses = {run.results[a] for a in ancestors}
        status = ("failure" if "failure" in statuses else "cancelled" if "cancelled" in statuses
                  else "success" if statuses <= {"success"} else "skipped")
        job_scope = Scope({**base, "needs": needs}, status=status)
        if not condition(job.get("if"), job_scope):
            name = to_str(job.get("name") or job_id)
            return [JobResult(job_id, job_id if "${{" in name else name, "skipped")]
        strategy = job.get("strategy") or {}
        if set(strategy) - {"matrix", "fail-fast", "max-parallel"}:
            raise WorkflowError(f"job {job_id}: strategy keys not emulated: {sorted(strategy)}")
        matrix_spec = evaluate_value(strategy.get("matrix"), Scope({**base, "needs": needs}))
        combos: list[dict[str, Any] | None] = (
            list(expand_matrix(matrix_spec)) if matrix_spec is not None else [None])
        fail_fast = _flag(strategy.get("fail-fast"), True)
        # Every leg's matrix context knows every key of the matrix (null where an include did
        # not add it); a key no leg has is a typo.
        keys = list(dict.fromkeys(k for combo in combos for k in combo or {}))
        legs: list[JobResult] = []
        for index, combo in enumerate(combos):
            strategy_ctx = Strict({"fail-fast": fail_fast, "job-index": index,
                                   "job-total": len(combos),
                                   "max-parallel": strategy.get("max-parallel", len(combos))},
                                  "strategy")
            contexts = {**base, "needs": needs, "strategy": strategy_ctx,
                        "matrix": Strict({k: (combo or {}).get(k) for k in keys}, "matrix")}
            name = to_str(evaluate_value(job.get("name") or job_id, Scope(contexts)))
            if combo is not None and not job.get("name"):
                name = f"{job_id} ({', '.join(map(to_str, combo.values()))})"
            if fail_fast and any(leg.result == "failure" for leg in legs):
                legs.append(JobResult(job_id, name, "cancelled", matrix=combo))
                continue
            environment = job.get("environment")
            if isinstance(environment, Mapping):
                environment = environment.get("name")
            environment = to_str(evaluate_value(environment, Scope(contexts))) or None
            job_secrets = {**secrets, **self.environments.get(environment or "", {})}
            legs.append(self._leg(doc, job_id, job, name, combo, environment, contexts,
                                  job_secrets, workflow_env, run))
        return legs

    def _leg(self, doc: Mapping[Any, Any], job_id: str, job: Mapping[str, Any], name: str,
             combo: dict[str, Any] | None, environment: str | None,
             contexts: dict[str, Any], secrets: Mapping[str, str],
             workflow_env: Mapping[str, str], run: RunResult) -> JobResult:
        result = JobResult(job_id, name, "success", matrix=combo, environment=environment)
        workspace = self._workspace()
        temp = self.root / "runner-temp"
        home = self.root / "home"
        for folder in (workspace, temp, home):
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        contexts = {**contexts, "secrets": dict(secrets),
                    "github": Strict({**contexts["github"], "job": job_id}, "github"),
                    "runner": Strict({"os": "Linux", "arch": "X64", "name": "local-runner",
                                      "temp": str(temp), "tool_cache": str(temp / "tools"),
                                      "environment": "github-hosted", "debug": ""}, "runner")}
        env = dict(workflow_env)
        env.update({k: to_str(v) for k, v in evaluate_value(
            job.get("env") or {}, Scope({**contexts, "env": dict(env)})).items()})
        declared_ids = [s["id"] for s in job.get("steps") or [] if s.get("id")]
        steps_ctx = Strict(dict.fromkeys(declared_ids), "steps")
        path_prepend: list[str] = []
        deadline = time.monotonic() + 60 * float(job.get("timeout-minutes", 360))
        failed = False
        defaults = {**((doc.get("defaults") or {}).get("run") or {}),
                    **((job.get("defaults") or {}).get("run") or {})}
        event_file = temp / "event.json"
        event_file.write_text(json.dumps(contexts["github"]["event"]), encoding="utf-8")
        for number, step in enumerate(job.get("steps") or [], start=1):
            job_ctx = Strict({"status": "failure" if failed else "success"}, "job")
            scope_ctx = {**contexts, "env": dict(env), "steps": steps_ctx, "job": job_ctx}
            no_secrets = {k: v for k, v in scope_ctx.items() if k != "secrets"}
            step_name = self._step_name(step, Scope(scope_ctx), number)
            sid = step.get("id")
            if step_name in self.skip_steps:
                outcome = StepResult(step_name, sid, "skipped", "skipped",
                                     note=f"skipped by the test: {self.skip_steps[step_name]}")
            elif not condition(step.get("if"), Scope(no_secrets,
                                                      status="failure" if failed else "success")):
                outcome = StepResult(step_name, sid, "skipped", "skipped")
            else:
                step_env = {k: to_str(v) for k, v in evaluate_value(
                    step.get("env") or {}, Scope(scope_ctx)).items()}
                scope = Scope({**scope_ctx, "env": {**env, **step_env}})
                files = {n: temp / f"{n.lower()}-{uuid.uuid4().hex}" for n in
                         ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
                for path in files.values():
                    path.touch()
                process_env = {
                    # The python wrappers first, whatever GITHUB_PATH or setup-python add.
                    "PATH": os.pathsep.join([str(self.bin), *path_prepend,
                                             os.environ.get("PATH", os.defpath)]),
                    "HOME": str(home), "LANG": "C.UTF-8", "CI": "true",
                    "PIP_NO_INDEX": "1", "PIP_DRY_RUN": "1",
                    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
                    **env, **step_env, **{k: str(v) for k, v in files.items()},
                    **self._github_env(contexts["github"], workspace, temp, event_file, job_id),
                }
                timeout = min(deadline - time.monotonic(),
                              60 * float(step.get("timeout-minutes", 360)))
                try:
                    if "run" in step:
                        outcome = self._run_script(step, step_name, scope, defaults, workspace,
                                                   temp, process_env, timeout)
                    else:
                        outcome = self._uses(step, step_name, scope, workspace, run,
                                             path_prepend)
                except ActionFailed as exc:
                    outcome = StepResult(step_name, sid, "failure", "failure", log=str(exc))
                outcome.outputs.update(read_command_file(files["GITHUB_OUTPUT"], "GITHUB_OUTPUT"))
                env.update(read_command_file(files["GITHUB_ENV"], "GITHUB_ENV"))
                path_prepend[:0] = reversed(_lines(files["GITHUB_PATH"].read_text()))
                result.summary += files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8")
                result.annotations += [f"{m.group(1)}: {m.group(2)}"
                                       for line in outcome.log.splitlines()
                                       if (m := _ANNOTATION.match(line))]
                if outcome.outcome == "failure" and _flag(evaluate_value(
                        step.get("continue-on-error", False), Scope(no_secrets)), False):
                    outcome.conclusion = "success"
                    outcome.note = "failed, continue-on-error"
            outcome.id = sid
            result.steps.append(outcome)
            if sid:
                steps_ctx[sid] = {"outputs": dict(outcome.outputs), "outcome": outcome.outcome,
                                  "conclusion": outcome.conclusion}
            failed = failed or outcome.conclusion == "failure"
        result.result = "failure" if failed else "success"
        out_scope = Scope({**contexts, "env": dict(env), "steps": steps_ctx,
                           "job": Strict({"status": result.result}, "job")})
        result.outputs = {k: to_str(evaluate_value(v, out_scope))
                          for k, v in (job.get("outputs") or {}).items()}
        return result

    @staticmethod
    def _step_name(step: Mapping[str, Any], scope: Scope, number: int) -> str:
        if step.get("name"):
            return to_str(evaluate_value(step["name"], scope))
        if "uses" in step:
            return f"Run {step['uses'].split('@')[0]}"
        first = str(step["run"]).strip().splitlines()[0] if str(step["run"]).strip() else ""
        return f"Run {first}" if first else f"step {number}"

    def _github_env(self, github: Mapping[str, Any], workspace: Path, temp: Path,
                    event_file: Path, job_id: str) -> dict[str, str]:
        """The default variables, set last: GitHub does not let a workflow override them."""
        names = ("event_name", "ref", "ref_name", "ref_type", "sha", "repository",
                 "repository_owner", "run_id", "run_number", "run_attempt", "server_url",
                 "api_url", "actor", "triggering_actor", "workflow", "head_ref", "base_ref",
                 "retention_days")
        values = {f"GITHUB_{n.upper()}": to_str(github[n]) for n in names}
        return {**values, "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace),
                "GITHUB_EVENT_PATH": str(event_file), "GITHUB_JOB": job_id,
                "RUNNER_OS": "Linux", "RUNNER_ARCH": "X64", "RUNNER_TEMP": str(temp),
                "RUNNER_TOOL_CACHE": str(temp / "tools")}

    # -- run: steps ----------------------------------------------------------------------------
    def _run_script(self, step: Mapping[str, Any], name: str, scope: Scope,
                    defaults: Mapping[str, Any], workspace: Path, temp: Path,
                    env: Mapping[str, str], timeout: float) -> StepResult:
        script = interpolate(str(step["run"]), scope)
        shell = step.get("shell", defaults.get("shell"))
        script_file = temp / f"step-{uuid.uuid4().hex}.{'py' if shell == 'python' else 'sh'}"
        script_file.write_text(script, encoding="utf-8")
        if shell is None:
            command = ["bash", "-e", str(script_file)]
        elif shell == "bash":
            command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)]
        elif shell == "sh":
            command = ["sh", "-e", str(script_file)]
        elif shell == "python":
            command = ["python", str(script_file)]
        elif "{0}" in str(shell):
            command = [a.replace("{0}", str(script_file)) for a in shlex.split(str(shell))]
        else:
            raise WorkflowError(f"step {name!r}: shell {shell!r} is not emulated")
        directory = step.get("working-directory", defaults.get("working-directory"))
        cwd = workspace / interpolate(str(directory), scope) if directory else workspace
        if timeout <= 0:
            return StepResult(name, step.get("id"), "failure", "failure",
                              log="the job's timeout-minutes ran out before this step")
        proc = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            log = out.decode("utf-8", "replace") + f"\n(killed after {timeout:.0f} s timeout)"
            return StepResult(name, step.get("id"), "failure", "failure", log=log)
        outcome = "success" if proc.returncode == 0 else "failure"
        log = out.decode("utf-8", "replace")
        if proc.returncode:
            log += f"\nProcess completed with exit code {proc.returncode}."
        return StepResult(name, step.get("id"), outcome, outcome, log=log)

    # -- uses: steps ---------------------------------------------------------------------------
    def _uses(self, step: Mapping[str, Any], name: str, scope: Scope, workspace: Path,
              run: RunResult, path_prepend: list[str]) -> StepResult:
        uses = str(step["uses"])
        m = re.fullmatch(r"([\w.-]+/[\w.-]+(?:/[\w./-]+)?)@([\w./-]+)", uses)
        if not m or m.group(1) not in _ACTION_INPUTS:
            raise WorkflowError(f"step {name!r}: action {uses!r} is not emulated "
                                f"(emulated: {sorted(_ACTION_INPUTS)})")
        action = m.group(1)
        inputs = {k: to_str(evaluate_value(v, scope)) for k, v in (step.get("with") or {}).items()}
        unknown = set(inputs) - _ACTION_INPUTS[action]
        if unknown:
            raise WorkflowError(f"step {name!r}: inputs {sorted(unknown)} of {action} are "
                                f"not emulated (or misspelt); emulated: "
                                f"{sorted(_ACTION_INPUTS[action])}")
        result = StepResult(name, step.get("id"), "success", "success")
        if action == "actions/checkout":
            github = scope.contexts["github"]
            pull = github["event_name"] == "pull_request"
            for child in workspace.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            self.remote.checkout(workspace, inputs.get("ref") or github["sha"],
                                 ref_branch=None if pull else github["ref_name"],
                                 depth=int(inputs.get("fetch-depth") or 1),
                                 persist_credentials=_flag(inputs.get("persist-credentials"),
                                                           True))
        elif action == "actions/setup-python":
            result = self._setup_python(result, inputs, workspace, path_prepend)
        elif action == "actions/upload-artifact":
            files, base = upload_set(inputs.get("path", ""), workspace,
                                     include_hidden=_flag(inputs.get("include-hidden-files"),
                                                          False))
            artifact = inputs.get("name") or "artifact"
            if not files:
                policy = inputs.get("if-no-files-found") or "warn"
                if policy == "error":
                    raise ActionFailed(f"upload-artifact: no files were found with the provided "
                                       f"path: {inputs.get('path')}. No artifacts will be "
                                       "uploaded.")
                result.note = f"no files for artifact {artifact!r}: nothing uploaded"
                return result
            run.artifacts.upload(artifact, files, base,
                                 overwrite=_flag(inputs.get("overwrite"), False))
            result.outputs = {"artifact-id": artifact, "artifact-url": f"local:{artifact}"}
            result.note = f"{artifact}: {len(files)} file(s) from {base.relative_to(workspace)}/"
        elif action == "actions/download-artifact":
            destination = workspace / inputs["path"] if inputs.get("path") else workspace
            merge = _flag(inputs.get("merge-multiple"), False)
            if inputs.get("name"):
                run.artifacts.download(inputs["name"], destination)
                names = [inputs["name"]]
            else:
                pattern = inputs.get("pattern") or "*"
                names = [n for n in run.artifacts.names()
                         if fnmatch.fnmatchcase(n, pattern)]
                for artifact in names:
                    run.artifacts.download(artifact, destination if merge
                                           else destination / artifact)
            result.outputs = {"download-path": str(destination)}
            result.note = f"downloaded {', '.join(names) or 'nothing'}"
        elif action == "actions/cache/restore":
            paths = _lines(inputs.get("path"))
            matched = self.caches.restore(inputs["key"], _lines(inputs.get("restore-keys")),
                                          paths, workspace)
            if matched is None and _flag(inputs.get("fail-on-cache-miss"), False):
                raise ActionFailed(f"cache: no cache for {inputs['key']!r} (fail-on-cache-miss)")
            result.outputs = {"cache-hit": to_str(matched == inputs["key"]),
                              "cache-primary-key": inputs["key"],
                              "cache-matched-key": matched or ""}
            result.note = f"restored {matched!r}" if matched else "cache miss"
        else:  # actions/cache/save: a failure to save is a warning, never a failed step
            result.note = self.caches.save(inputs["key"], _lines(inputs.get("path")), workspace)
        return result

    @staticmethod
    def _setup_python(result: StepResult, inputs: Mapping[str, str], workspace: Path,
                      path_prepend: list[str]) -> StepResult:
        """The current interpreter stands in for ``python-version``; its scripts folder goes on
        PATH as setup-python's does (ruff, zizmor, check-jsonschema live there)."""
        if inputs.get("cache") == "pip":
            pattern = inputs.get("cache-dependency-path") or "**/requirements*.txt"
            if not any(glob.glob(str(workspace / p), recursive=True) for p in _lines(pattern)):
                raise ActionFailed(f"setup-python: No file in {workspace} matched to "
                                   f"[{pattern}], make sure you have checked out the target "
                                   "repository")
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        path_prepend.insert(0, sysconfig.get_path("scripts"))
        result.outputs = {"python-version": here, "python-path": sys.executable,
                          "cache-hit": "false"}
        wanted = inputs.get("python-version", "")
        result.note = f"current interpreter {here}" + (
            f" stands in for python-version {wanted}" if wanted and wanted != here else "")
        return result


def _needs(job: Mapping[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _ancestors(job_id: str, jobs: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    todo = list(_needs(jobs[job_id]))
    while todo:
        need = todo.pop()
        if need not in found:
            found.add(need)
            todo.extend(_needs(jobs[need]))
    return found


def iter_run_steps(doc: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Every (job id, step) of a parsed workflow, for static checks in the tests."""
    for job_id, job in (doc.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            yield job_id, step
