"""Secrets (and, on request, e-mail addresses) in harvested code, redacted before the transform.

Why: research software is archived exactly as released, and some releases hold live credentials.
Turned into code images and republished, they would be one ``chr()`` away from readable. Every
converted file therefore passes through :func:`redact` first (SPEC section 14): each detected value
is replaced, character for character, by :data:`MASK`, so lines and pages keep their shape, and
each replacement is reported as a :class:`Redaction` (where and which rule, never the value).

The rules are detect-secrets' (Yelp; pinned in requirements.txt), used as a library: its plugins
and its heuristic filters decide what a secret is. Nothing here invents a secret format. What this
module adds is what a line-by-line scanner of a source tree needs to be used on archives at
conversion speed, and to redact rather than report:

* **A pre-filter** (:class:`_Scanner`): detect-secrets runs ~25 plugins, a dozen regular
  expressions each, on every line, about 0.2 MB/s. Two RE2 passes (google-re2) over the file,
  built from :data:`TRIGGERS` (a necessary part of each plugin's rules: its literal prefixes, its
  keyword list, the shortest string that can pass its entropy limit), find the few lines any
  plugin could match at ~100-200 MB/s; per such line an RE2 set picks the plugins that can match
  it, and only those run. ``benchmarks/bench_redact.py`` checks that nothing the plugins find on
  any line is lost.
* **Views** of a line as the plugins expect it: JSON-escaped quotes unescaped (notebooks, JSON
  inside strings), a string continued on the next line joined (``"ghp_abc" \\n "def"``,
  ``abc\\`` + newline), the keyword rules of ``KEY=value`` files used for ``.env``, shell and
  Dockerfiles. A view maps each of its characters back to the file.
* **Whole secrets**: detect-secrets flags a private key by its ``BEGIN ... PRIVATE KEY`` line;
  here the block up to its ``END`` line is masked. A value found once is masked wherever else it
  occurs in the same file.

Positions: ``line`` counts ``\\n`` line ends (1-based); ``column`` counts characters of the decoded
line (1-based, a tab is one character); a redaction may end on a later line (a key block, a
joined string). Line breaks, tabs and undecodable bytes are never masked, so the transform sees
the same line structure and the same number of characters per line.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import posixpath
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np

Policy = Literal["secrets", "secrets+emails", "none"]
POLICIES: tuple[Policy, ...] = ("secrets", "secrets+emails", "none")
MASK = "*"
EMAIL_RULE = "EmailAddress"
# Plugins left out, and why (README "Privacy" repeats this):
#   IPPublicDetector: a public IP address is not a credential, and code is full of them.
DISABLED_PLUGINS = frozenset({"IPPublicDetector"})
# The heuristic filters of detect-secrets' default settings that apply to a secret value; the
# "indirect reference" filter (``x = get_secret()``) only to the keyword rule, since a known
# token format inside a call (``Github("ghp_...")``) is still a token.
_VALUE_FILTERS = ("is_sequential_string", "is_potential_uuid", "is_templated_secret",
                  "is_prefixed_with_dollar_sign", "is_not_alphanumeric_string")
_KEEP = frozenset("\n\r\t")        # never masked: the transform's line structure
_REPEAT_MIN = 8                    # a value this long is masked wherever it recurs in the file
_MAX_JOIN = 6                      # lines a string continued over several lines may span
_MAX_KEY_LINES = 400               # a private key block longer than this is cut here
_CONFIG_NAMES = re.compile(
    r"(^|\.)env($|\.)|\.envrc$|\.(sh|bash|zsh|ksh|fish|env|service|netrc|npmrc|pypirc|"
    r"htpasswd|pgpass|cnf|conf|cfg)$|^dockerfile|^containerfile|^makefile$", re.IGNORECASE)
_CONTINUED = re.compile(r"""(?:["']\s*\+?|\\)\s*$""")
_CONTINUES = re.compile(r"""^\s*\+?\s*["']""")
_UNQUOTED = re.compile(r"""^(\s*(?:export\s+)?(?:-\s+)?[\w.\-]+\s*[=:]\s*)([^\s"'#][^\s]*)\s*$""")
_KEY_END = re.compile(r"-----END[ A-Z0-9]*-----|Private-MAC: *[0-9a-fA-F]+")
# What lies between a key's markers: base64 lines and "Name: value" headers (Proc-Type, DEK-Info,
# Comment, PuTTY's Public-Lines...), in a file or inside string literals ("...\\n" +).
_KEY_LINE = re.compile(r"[A-Za-z0-9+/=]*|[A-Za-z][A-Za-z0-9-]*: .*")
_KEY_DECORATION = " \t\r\"',;+\\"
_ESCAPED_BREAK = re.compile(r"\\r\\n|\\n|\\r")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}$")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
                           r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}")
# When two rules mask overlapping text, the redaction is named after the more specific one.
_GENERIC = {"Base64HighEntropyString": 1, "HexHighEntropyString": 1, "KeywordDetector": 2,
            "BasicAuthDetector": 3, EMAIL_RULE: 0}


@dataclasses.dataclass(frozen=True)
class Redaction:
    """One masked value: where it was (the value itself is gone) and the rule that found it."""

    line: int
    column: int
    end_line: int
    end_column: int  # inclusive
    chars: int       # characters masked
    rule: str

    def to_dict(self, path: str) -> dict[str, Any]:
        return {"path": path, "line": self.line, "column": self.column,
                "end_line": self.end_line, "end_column": self.end_column,
                "chars": self.chars, "rule": self.rule}


def detector_version() -> str:
    """``detect-secrets <version>``: what the record metadata names as the rule set."""
    from detect_secrets.__version__ import VERSION

    return f"detect-secrets {VERSION}"


def rules(policy: Policy) -> list[str]:
    """The rule names a policy applies (plugin class names, plus the e-mail rule)."""
    if policy == "none":
        return []
    names = sorted(_scanner().plugins)
    return [*names, EMAIL_RULE] if policy == "secrets+emails" else names


def redaction_summary(processing: Any, count: int) -> dict[str, Any]:
    """What a record's metadata says about redaction: the policy, the rules, the mask, the count;
    and, in ``zenodo-ml-2018`` mode, that the images differ from 2018's where it masked."""
    policy = processing.redact
    summary: dict[str, Any] = {"policy": policy, "count": count}
    if policy != "none":
        summary.update(detector=detector_version(), rules=rules(policy), mask=MASK,
                       applied="before the transform; each masked value listed in redactions "
                               "(path, line, column, end, characters, rule), never the value")
        if processing.mode == "zenodo-ml-2018":
            summary["note"] = ("zenodo-ml-2018 mode with redaction: secrets were masked before "
                               "the 2018 transform, so images differ from 2018's exactly where "
                               "redactions lists; use processing.redact: none for the exact "
                               "2018 output")
    return summary


def redact(path: str, data: bytes, policy: Policy) -> tuple[bytes, tuple[Redaction, ...]]:
    """``data`` with every secret (and e-mail address, by policy) masked, and the redactions.

    The result has exactly as many characters per line as ``data``; bytes that are not UTF-8
    pass through unchanged. ``path`` chooses file-type rules (``.env``, ``.py``, lock files).
    """
    if policy == "none":
        return data, ()
    scanner = _scanner()
    emails = policy == "secrets+emails" and b"@" in data
    keyword_groups, code = scanner.file_rules(path)
    candidates = [] if scanner.skipped(path) else scanner.candidate_lines(data,
                                                                           data_file=not code)
    if not candidates and not emails:
        return data, ()
    text = data.decode("utf-8", "surrogateescape")
    doc = _Document(text, data)
    found: list[_Finding] = []
    if candidates:
        found += scanner.scan(doc, candidates, keyword_groups, code)
    if emails:
        found += _emails(text)
    if not found:
        return data, ()
    findings = []
    for f in _merge(found):
        f.positions = [i for i in f.positions if _maskable(text[i])]
        if f.positions:
            findings.append(f)
    pieces, at = [], 0
    for i in sorted(i for f in findings for i in f.positions):
        pieces += [text[at:i], MASK]
        at = i + 1
    pieces.append(text[at:])
    out = "".join(pieces).encode("utf-8", "surrogateescape")
    return out, tuple(doc.redaction(f) for f in findings)


# --- findings and views -------------------------------------------------------------------------

@dataclasses.dataclass
class _Finding:
    positions: list[int]  # sorted character offsets in the file's text, all maskable
    rule: str


class _Document:
    """The decoded text of one file with its line starts (offset <-> line, column)."""

    def __init__(self, text: str, data: bytes) -> None:
        self.text = text
        if len(text) == len(data):  # one character per byte: offsets are the same
            codes = np.frombuffer(data, np.uint8)
        else:
            codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        self.starts = [0, *(np.flatnonzero(codes == 10) + 1).tolist()]

    def line(self, k: int) -> tuple[int, int]:
        """``(start, end)`` offsets of line ``k`` (0-based), without its ``\\n``."""
        start = self.starts[k]
        end = self.starts[k + 1] - 1 if k + 1 < len(self.starts) else len(self.text)
        return start, end

    def where(self, offset: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, offset) - 1
        return k + 1, offset - self.starts[k] + 1

    def redaction(self, f: _Finding) -> Redaction:
        line, column = self.where(f.positions[0])
        end_line, end_column = self.where(f.positions[-1])
        return Redaction(line, column, end_line, end_column, len(f.positions), f.rule)


@dataclasses.dataclass
class _View:
    """Text handed to the plugins; ``origin[i]`` is the file offset of ``text[i]`` (-1: none)."""

    text: str
    origin: list[int]

    def spans(self, value: str) -> Iterator[list[int]]:
        """Every occurrence of ``value`` as file offsets (maskable characters only)."""
        if not value:
            return
        i = self.text.find(value)
        while i >= 0:
            span = [self.origin[j] for j in range(i, i + len(value)) if self.origin[j] >= 0]
            if span:
                yield span
            i = self.text.find(value, i + len(value))


def _line_view(doc: _Document, k: int) -> tuple[_View, int]:
    """Line ``k`` joined with the lines a string continues on; and the last line used."""
    text = doc.text
    first = k
    while first > 0 and k - first < _MAX_JOIN and _continues(text[slice(*doc.line(first))]) \
            and _continued(text[slice(*doc.line(first - 1))]):
        first -= 1   # the token may start on an earlier line that triggered nothing
    start, end = doc.line(first)
    origin = list(range(start, end))
    parts = [text[start:end]]
    last = first
    while last - k < _MAX_JOIN and last + 1 < len(doc.starts):
        tail = parts[-1].rstrip("\r")
        cont = _continued(tail)
        if not cont:
            break
        nstart, nend = doc.line(last + 1)
        nxt = text[nstart:nend]
        if tail.endswith("\\"):      # a backslash continuation: drop it, keep the next line
            cut, skip = len(tail) - 1, 0
        else:
            head = _CONTINUES.match(nxt)
            if not head:
                break
            cut, skip = cont.start(), head.end()
        drop = len(parts[-1]) - cut
        if drop:
            del origin[-drop:]
        parts[-1] = parts[-1][:cut]
        parts.append(nxt[skip:])
        origin.extend(range(nstart + skip, nend))
        last += 1
    return _View("".join(parts), origin), last


def _continued(line: str) -> re.Match[str] | None:
    """Whether ``line`` ends a string that goes on (a quote, a ``+``, a backslash)."""
    end = line.rstrip()[-1:]
    return _CONTINUED.search(line) if end and end in "\"'+\\" else None


def _continues(line: str) -> bool:
    """Whether ``line`` starts with the rest of a string (a quote, maybe after ``+``)."""
    start = line.lstrip()[:1]
    return bool(start and start in "\"'+" and _CONTINUES.match(line))


def _quoted_value(view: _View) -> list[_View]:
    """``KEY=value`` / ``key: value`` with the value quoted, as detect-secrets' own config-file
    transformers present such lines, so the rules that want a quoted string (entropy, AWS) see
    it. The added quotes map to no character of the file."""
    match = _UNQUOTED.match(view.text)
    if not match:
        return []
    key, start, end = match.group(1), match.start(2), match.end(2)
    return [_View(f'{key}"{match.group(2)}"',
                  [*view.origin[:start], -1, *view.origin[start:end], -1])]


def _unescaped(view: _View) -> list[_View]:
    """The view with JSON string escapes undone, split at escaped line ends (``\\n``): how a
    notebook cell or a JSON string inside code reads to a person (and to the plugins)."""
    if "\\" not in view.text:
        return []
    out: list[_View] = []
    chars: list[str] = []
    origin: list[int] = []
    text, i = view.text, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in "\"'\\/":
                chars.append(nxt)
                origin.append(view.origin[i + 1])
                i += 2
                continue
            if nxt in "nr":
                if chars:
                    out.append(_View("".join(chars), origin))
                chars, origin = [], []
                i += 2
                continue
        chars.append(ch)
        origin.append(view.origin[i])
        i += 1
    if chars:
        out.append(_View("".join(chars), origin))
    return out if len(out) > 1 or (out and out[0].text != view.text) else []


# --- the scanner --------------------------------------------------------------------------------

class _Scanner:
    """detect-secrets' plugins, and the RE2 pre-filter built from their rules."""

    def __init__(self) -> None:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.filters import heuristic
        from detect_secrets.plugins.base import RegexBasedDetector
        from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
        from detect_secrets.plugins.keyword import (
            CONFIG_DENYLIST_REGEX_TO_GROUP,
            DENYLIST,
            REGEX_BY_FILETYPE,
        )
        from detect_secrets.util.filetype import FileType, determine_file_type

        found: list[type[Any]] = list(get_mapping_from_secret_type_to_class().values())
        classes = {cls.__name__: cls for cls in found}   # (its return type has an unbound TypeVar)
        self.plugins = {name: cls() for name, cls in sorted(classes.items())
                        if name not in DISABLED_PLUGINS}
        self._regex_type = RegexBasedDetector
        self._entropy_type = HighEntropyStringsPlugin
        self._value_filters = [getattr(heuristic, name) for name in _VALUE_FILTERS]
        self._indirect = heuristic.is_indirect_reference
        self._likely_id = heuristic.is_likely_id_string
        self._lock_file = heuristic.is_lock_file
        self._keyword_groups = REGEX_BY_FILETYPE
        self._config_groups = CONFIG_DENYLIST_REGEX_TO_GROUP
        self._filetype, self._config, self._other = (determine_file_type, FileType.CONFIG,
                                                     FileType.OTHER)
        self.triggers = {name: TRIGGERS.get(name) or _derived_triggers(plugin, DENYLIST)
                         for name, plugin in self.plugins.items()}
        # Two passes: the quoted-base64 trigger alone costs as much as all the others together
        # in one automaton (its counted run starts at every quote), and apart both run faster.
        alone = self.triggers.get("Base64HighEntropyString", ())
        union = "|".join(f"(?:{p})" for ps in self.triggers.values() if ps is not alone
                         for p in ps)
        passes = [_compile_re2("|".join(alone))] if alone else []
        self._prefilter = [_compile_re2(union), *passes]
        self._prefilter_data = [_compile_re2(f"{union}|{_UNQUOTED_VALUE}"), *passes]
        self._router, self._routes = _compile_set(self.triggers)

    def candidate_lines(self, data: bytes, *, data_file: bool = False) -> list[int]:
        """0-based numbers of the lines any plugin might match (two RE2 passes over ``data``)."""
        found: set[int] = set()
        count, find = data.count, data.find
        for prefilter in self._prefilter_data if data_file else self._prefilter:
            line, at = 0, 0
            while (match := prefilter.search(data, at)) is not None:
                pos = match.start()
                line += count(b"\n", at, pos)
                found.add(line)
                at = find(b"\n", pos) + 1    # one match per line is enough: the next line
                if not at:
                    break
                line += 1
        return sorted(found)

    def skipped(self, path: str) -> bool:
        """detect-secrets skips lock files (their hashes are not secrets)."""
        return bool(self._lock_file(path))

    def file_rules(self, path: str) -> tuple[Any, bool]:
        """The keyword rules for ``path``'s type, and whether it is code (not ``KEY=value``)."""
        ftype = self._filetype(path)
        if ftype == self._other and _CONFIG_NAMES.search(posixpath.basename(path)):
            ftype = self._config
        keyword_groups = self._keyword_groups.get(ftype)
        return keyword_groups, keyword_groups is not self._config_groups

    def scan(self, doc: _Document, candidates: Sequence[int], keyword_groups: Any,
             code: bool) -> list[_Finding]:
        """The findings of the plugins on the candidate lines (as views) of one file."""
        found: list[_Finding] = []
        seen_values: dict[str, str] = {}
        done_until = -1
        for k in candidates:
            if k <= done_until:
                continue
            view, last = _line_view(doc, k)
            views = [view, *_unescaped(view)]
            if not code:
                views += _quoted_value(view)
            for v in views:
                for sub in _split_cr(v):
                    for rule, value in self._values(sub, keyword_groups, code):
                        if rule == "PrivateKeyDetector":
                            block = _key_block(doc, sub, value)
                            if block:
                                found.append(_Finding(block, rule))
                            continue
                        seen_values.setdefault(value, rule)
                        found += [_Finding(s, rule) for s in sub.spans(value)]
            if last > k:
                done_until = last - 1  # the continued lines' own starts still get a look
        found += _recurrences(doc.text, seen_values)
        return found

    def _values(self, view: _View, keyword_groups: Any, code: bool, *,
                route: bool = True) -> Iterator[tuple[str, str]]:
        """``(rule, value)`` of every secret the plugins find in one view, filters applied.

        Only the plugins whose triggers match the view run (``route=False``: all of them, the
        benchmark's reference). In code, the keyword rule's
        "indirect reference" filter (``password = get_password()``) applies; in ``KEY=value``
        files a value is data.
        """
        line = view.text
        routed = {self._routes[i] for i in
                  self._router.Match(line.encode("utf-8", "surrogateescape")) or ()} \
            if route else set(self.plugins)
        for name in sorted(routed):
            plugin = self.plugins[name]
            if isinstance(plugin, self._entropy_type):
                # entropy <= log2(distinct characters): most strings are out before the
                # library's (slow, exact) computation
                limit = plugin.entropy_limit
                values = [v for v in plugin.analyze_string(line)
                          if math.log2(max(len(set(v)), 1)) > limit
                          and plugin.calculate_shannon_entropy(v) > limit]
            elif name == "KeywordDetector":
                values = list(plugin.analyze_string(line, keyword_groups))
                if values and code and self._indirect(line):
                    continue
            elif type(plugin).analyze_string is self._regex_type.analyze_string:
                values = _regex_values(plugin, line)
            else:
                values = list(plugin.analyze_string(line))
            for value in values:
                value = value.rstrip("\\")  # a quote escaped in the line ends the value
                if not value or any(f(value) for f in self._value_filters):
                    continue
                if (not isinstance(plugin, self._regex_type)
                        and self._likely_id(value, line, plugin)):
                    continue
                yield name, value


def _regex_values(plugin: Any, line: str) -> list[str]:
    """What a regular-expression plugin matched, as the secret to mask.

    detect-secrets reports ``findall`` results, which for a pattern with a group is the group
    alone: the password of ``://user:password@``, but also just ``ghp`` of a GitHub token, whose
    group is the prefix alternation. So: the longest group of at least 8 characters, else the
    whole match, without the delimiters some patterns include (``"AKC..."``).
    """
    out = []
    for regex in plugin.denylist:
        for match in regex.finditer(line):
            groups = [g for g in match.groups() if g and len(g) >= 8]
            value = max(groups, key=len) if groups else match.group()
            out.append(value.strip(" \t\"'").lstrip("=:"))
    return out


@functools.lru_cache(maxsize=1)
def _scanner() -> _Scanner:
    """One scanner per process (worker processes build their own)."""
    return _Scanner()


def _split_cr(view: _View) -> list[_View]:
    """A line holding lone ``\\r`` line ends (old Mac files) as the lines the transform sees."""
    text = view.text.rstrip("\r")
    if "\r" not in text:
        return [view] if text == view.text else [_View(text, view.origin[:len(text)])]
    out, start = [], 0
    for part in text.split("\r"):
        out.append(_View(part, view.origin[start:start + len(part)]))
        start += len(part) + 1
    return out


def _key_block(doc: _Document, view: _View, marker: str) -> list[int]:
    """The characters of a private key between its BEGIN and END markers (PuTTY: from the line
    after its header through its MAC); the markers stay readable. Nothing when no key follows
    (code that merely names the format, like a PEM parser)."""
    at = view.text.find(marker)
    if at < 0:
        return []
    begin = view.origin[at + len(marker) - 1] + 1
    text = doc.text
    dashes = text.find("-----", begin, begin + 40)
    if dashes >= 0 and "\n" not in text[begin:dashes]:
        begin = dashes + 5                      # past "-----BEGIN RSA PRIVATE KEY-----"
    else:
        begin = text.find("\n", begin) + 1      # PuTTY: the header line names the algorithm
        if not begin:
            return []
    limit_line = min(doc.where(begin)[0] - 1 + _MAX_KEY_LINES, len(doc.starts) - 1)
    end_match = _KEY_END.search(text, begin, doc.line(limit_line)[1])
    if end_match is None:
        return []
    end = end_match.end() if end_match.group().startswith("Private-MAC") else end_match.start()
    lines = _ESCAPED_BREAK.sub("\n", text[begin:end]).split("\n")
    if not all(_KEY_LINE.fullmatch(line.strip(_KEY_DECORATION)) for line in lines) or \
            sum(len(line) for line in lines) < 16:
        return []
    return [i for i in range(begin, end) if text[i] != " " and _maskable(text[i])]


def _recurrences(text: str, values: dict[str, str]) -> list[_Finding]:
    """Every other occurrence in the file of the values found (long enough to be specific)."""
    out = []
    for value, rule in values.items():
        if len(value) < _REPEAT_MIN:
            continue
        i = text.find(value)
        while i >= 0:
            out.append(_Finding(list(range(i, i + len(value))), rule))
            i = text.find(value, i + len(value))
    return out


def _emails(text: str) -> list[_Finding]:
    """E-mail addresses (``local@domain.tld``); only for ``secrets+emails``."""
    out = []
    i = text.find("@")
    while i >= 0:
        local = _EMAIL_LOCAL.search(text, max(0, i - 64), i)
        domain = _EMAIL_DOMAIN.match(text, i + 1)
        if local and domain:
            start = local.start()
            while start < i and text[start] == ".":
                start += 1
            if start < i:
                out.append(_Finding(list(range(start, domain.end())), EMAIL_RULE))
        i = text.find("@", i + 1)
    return out


def _maskable(ch: str) -> bool:
    """Line breaks and tabs shape the image; an undecodable byte (a lone surrogate here) is
    decoded by the transform in its own way: neither is masked."""
    return ch not in _KEEP and not "\udc80" <= ch <= "\udcff"


def _merge(found: list[_Finding]) -> list[_Finding]:
    """Overlapping findings as one redaction, named after the most specific rule, in order."""
    spans = [(f.positions[0], f.positions[-1], f) for f in found if f.positions]
    spans.sort(key=lambda s: (s[0], s[1]))
    merged: list[tuple[int, int, set[int], str]] = []
    for lo, hi, f in spans:
        if merged and lo <= merged[-1][1]:
            mlo, mhi, positions, rule = merged[-1]
            positions.update(f.positions)
            if _GENERIC.get(f.rule, 9) > _GENERIC.get(rule, 9):
                rule = f.rule
            merged[-1] = (mlo, max(mhi, hi), positions, rule)
        else:
            merged.append((lo, hi, set(f.positions), f.rule))
    return [_Finding(sorted(positions), rule) for _, _, positions, rule in merged]


# --- the pre-filter -----------------------------------------------------------------------------

# What each plugin needs to find anything: a necessary part of its rules, written so that RE2
# runs them all fast (literals, and counted runs only after a rare anchor). A plugin
# missing here fails tests/test_redact.py; benchmarks/bench_redact.py checks, on the standard
# library and the planted corpus, that nothing the plugins find on any line is missed.
_KEYWORD_GAP = r"""[ "'\]=:>]*"""  # between a keyword and its value in build_assignment_regex
TRIGGERS: dict[str, tuple[str, ...]] = {
    "AWSKeyDetector": ("A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA", "(?i:aws)"),
    "ArtifactoryDetector": ("AKC|AP[0-9A-F]",),
    "AzureStorageKeyDetector": ("AccountKey=",),
    "BasicAuthDetector": (r"://[^\s:/?#@]+:[^\s/?#@]+@",),
    "CloudantDetector": (r"(?i:cl(?:oudant|ou)?[_-]?(?:api)?(?:key|pwd|pw|pass|token))",
                         r"(?i:cloudant\.com)"),
    "DiscordBotTokenDetector": (r"\.[a-zA-Z0-9_\-]{6}\.[a-zA-Z0-9_\-]{27}",),
    "GitHubTokenDetector": ("gh[pousr]_",),
    "GitLabTokenDetector": ("gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-|GR1348941",),
    "IbmCloudIamDetector": (rf"(?i:key|pwd|pass|token){_KEYWORD_GAP}[a-zA-Z0-9_\-]{{44}}",),
    "IbmCosHmacDetector": (rf"(?i:key){_KEYWORD_GAP}(?i:[a-f0-9]{{48}})",),
    "JwtTokenDetector": ("eyJ",),
    "MailchimpDetector": ("-us[0-9]",),
    "NpmDetector": ("_authToken=",),
    "OpenAIDetector": ("T3BlbkFJ",),
    "PrivateKeyDetector": ("PRIVATE KEY|PuTTY-User-Key-File",),
    "PypiTokenDetector": ("pypi-AgE",),
    "SendGridDetector": (r"SG\.",),
    "SlackDetector": (r"(?i:xox[aboprs]-|hooks\.slack\.com)",),
    "SoftlayerDetector": (r"(?i:(?:softlayer|sl)[_-]?(?:api)?(?:key|pwd|pass|token))",
                          r"(?i:api\.softlayer\.com)"),
    "SquareOAuthDetector": ("sq0csp-",),
    "StripeDetector": ("[rs]k_live_",),
    "TelegramBotTokenDetector": (r"[0-9]:[0-9A-Za-z_\-]{35}",),
    "TwilioKeyDetector": ("AC[a-z0-9]{32}|SK[a-z0-9]{32}",),
}
# A value at the end of a KEY=value line, unquoted (data files only): see _quoted_value.
_UNQUOTED_VALUE = r"(?m:[=:][ \t]*[A-Za-z0-9+/=_\-\\]{9})"


def _derived_triggers(plugin: Any, denylist: Sequence[str]) -> tuple[str, ...]:
    """The keyword and entropy plugins' triggers, from their own word list and limits."""
    from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin

    if isinstance(plugin, HighEntropyStringsPlugin):
        # Shannon entropy is at most log2(length): shorter strings cannot pass the limit.
        charset = re.escape(plugin.charset).replace("/", r"\/")
        return (rf"""["'][{charset}]{{{_shortest(plugin)}}}""",)
    words = sorted({re.match(r"[\x00-\x7f]*", w).group() for w in denylist})  # type: ignore
    return (f"(?i:{'|'.join(words)})",)


def _shortest(plugin: Any) -> int:
    """The shortest string whose entropy can exceed ``plugin``'s limit."""
    return math.floor(2 ** plugin.entropy_limit) + 1


def _compile_set(triggers: dict[str, tuple[str, ...]]) -> tuple[Any, list[str]]:
    """An RE2 set of every trigger: which plugins a line can interest, in one call."""
    import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints

    options = re2.Options()
    options.log_errors = False
    router = re2.Set.SearchSet(options)
    routes = []
    for name, patterns in triggers.items():
        for pattern in patterns:
            router.Add(pattern)
            routes.append(name)
    router.Compile()
    return router, routes


def _compile_re2(pattern: str) -> Any:
    import re2

    options = re2.Options()
    options.max_mem = 64 << 20
    options.log_errors = False
    options.encoding = re2.Options.Encoding.LATIN1  # bytes in, byte offsets out
    return re2.compile(pattern.encode("latin-1", "backslashreplace"), options)


def _check() -> None:  # pragma: no cover - a development aid: python -m pipeline.redact FILE
    for name in sys.argv[1:]:
        with open(name, "rb") as fh:
            _, found = redact(name, fh.read(), "secrets")
        for r in found:
            print(f"{name}:{r.line}:{r.column}: {r.rule} ({r.chars} characters)")


if __name__ == "__main__":  # pragma: no cover
    _check()
