"""The ``q`` of ``GET /api/records``: Lucene query syntax, parsed and evaluated the way Zenodo does.

Why our own parser: the harvester's correctness hangs on how Zenodo reads ``q``
(ZENODO_API.md §1.1, §1.3), and the failure modes are silent. Zenodo runs three stages and so
does this module:

1. **luqum** parses ``q`` (invenio-records-resources ``queryparser/query.py``). Our lexer copies
   luqum's token rules, in particular its term pattern: a ``:`` inside a term is only allowed as
   part of a time right after ``T<hh>``. So ``2024-01-01T00:00:00Z`` is one term but an unquoted
   ``+00:00`` offset breaks the term and the range, a :class:`QuerySyntaxError`. **Zenodo then
   silently falls back to a free-text ``multi_match`` of the whole string** (§1.3, tested with
   luqum 1.0.0 by the reference's author): HTTP 200, wrong results. :func:`free_text` is that
   fallback; :func:`parse` raises, the caller falls back.
2. **Elasticsearch's query_string** (Lucene's classic parser) then reads the string. It is
   stricter than luqum: an unescaped ``:`` outside a range (``updated:>=2024-01-01T00:00:00Z``)
   is a syntax error, reported as 400 "Invalid query string syntax."
   (invenio-records-resources ``HTTPJSONSearchRequestError``), and an unescaped ``/`` starts a
   regular expression, which unbalanced gives HTTP 500 (§1.3, zenodo/zenodo#2358: quote DOIs).
   Those are :class:`EngineError`.
3. Evaluation follows Elasticsearch: implicit operator OR (query_string's default), ``+``/``-``
   and ``NOT``, ranges ``[a TO b]``, ``{a TO b}``, mixed, ``*`` open ends, ``>=x``; dates are
   ``strict_date_optional_time||epoch_millis`` with date math (``now-1d/d``), compared in epoch
   **milliseconds** (ES ``date`` fields drop the microseconds Zenodo prints); a date without time
   used as an inclusive upper bound means the end of that day. Unknown fields match nothing.

Field names follow Zenodo's legacy mapping (§1.1 ``ZENODO_LEGACY_SEARCH_MAP``): ``recid``,
``conceptrecid``, ``doi``, ``resource_type.type``, ``keywords``, ``version`` (= ``versions.index``!)
and the RDM names they map to; ``updated``/``created`` pass through.
"""

from __future__ import annotations

import abc
import calendar
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class QuerySyntaxError(ValueError):
    """luqum could not parse ``q``: Zenodo answers with free-text results instead (§1.3)."""


class EngineError(Exception):
    """Elasticsearch rejected the query: Zenodo answers with this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


SYNTAX = "Invalid query string syntax."


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds, truncated like an Elasticsearch ``date`` field."""
    return (dt - _EPOCH) // _MS


def analyze(text: str) -> list[str]:
    """Roughly Elasticsearch's standard analyzer: lower-cased word tokens."""
    return re.findall(r"\w+", text.lower())


@dataclass
class Doc:
    """What the search index holds for one record."""

    id: int
    concept: str
    created: int
    updated: int
    publication: int | None
    type: str
    subtype: str | None
    text: dict[str, str]  # text field -> " token token ... " (analysed, space-padded)
    keywords: dict[str, tuple[str, ...]]  # keyword field -> values
    views: int = 0
    downloads: int = 0
    index: int = 1  # versions.index (1-based)
    latest: bool = True

    @staticmethod
    def padded(text: str) -> str:
        """The stored form of a text field: its tokens between single spaces."""
        return f" {' '.join(analyze(text))} "


TEXT_FIELDS = {"title": "title", "metadata.title": "title", "description": "description",
               "metadata.description": "description", "creators.name": "creators",
               "metadata.creators.person_or_org.name": "creators", "keywords": "keywords",
               "metadata.subjects.subject": "keywords"}
DEFAULT_FIELDS = ("title", "description", "creators", "keywords")
KEYWORD_FIELDS = {
    "id": "id", "recid": "id", "parent.id": "concept", "conceptrecid": "concept",
    "doi": "doi", "pids.doi.identifier": "doi", "conceptdoi": "conceptdoi",
    "parent.pids.doi.identifier": "conceptdoi", "type": "type", "resource_type.type": "type",
    "metadata.resource_type.props.type": "type", "resource_type.subtype": "subtype",
    "metadata.resource_type.props.subtype": "subtype", "metadata.resource_type.id": "rtid",
    "metadata.version": "version", "communities": "communities",
    "parent.communities.entries.slug": "communities", "related.identifier": "related",
    "metadata.related_identifiers.identifier": "related", "filename": "filename",
    "files.entries.key": "filename", "_files.checksum": "checksum",
    "files.entries.checksum": "checksum", "access_right": "access", "access.status": "access",
    "versions.is_latest": "is_latest",
}
DATE_FIELDS: dict[str, Callable[[Doc], int | None]] = {
    "updated": lambda d: d.updated, "created": lambda d: d.created,
    "publication_date": lambda d: d.publication,
    "metadata.publication_date": lambda d: d.publication,
}
NUMBER_FIELDS: dict[str, Callable[[Doc], int]] = {"version": lambda d: d.index,
                                                  "versions.index": lambda d: d.index}


def _keyword_values(doc: Doc, name: str) -> tuple[str, ...]:
    if name == "is_latest":
        return ("true",) if doc.latest else ("false",)
    return doc.keywords.get(name, ())


# --------------------------------------------------------------------------- evaluation nodes

class Node(abc.ABC):
    """A compiled query: ``match`` decides, ``score`` ranks (bestmatch), ``span`` helps bisect."""

    @abc.abstractmethod
    def match(self, doc: Doc) -> bool:
        """Whether ``doc`` satisfies this node."""

    def score(self, doc: Doc) -> float:
        return 0.0

    def span(self) -> tuple[str, int | None, int | None] | None:
        """``(date field, lowest ms, highest ms)`` (inclusive) when this node is a date range."""
        return None


class MatchAll(Node):
    def match(self, doc: Doc) -> bool:
        return True


class MatchNone(Node):
    def match(self, doc: Doc) -> bool:
        return False


@dataclass
class TextTerm(Node):
    fields: tuple[str, ...]
    tokens: tuple[str, ...]
    phrase: bool = False
    wildcard: bool = False

    def _one(self, doc: Doc, name: str) -> bool:
        if self.wildcard:
            return any(fnmatch.fnmatchcase(t, self.tokens[0])
                       for t in doc.text.get(name, "").split())
        text = doc.text.get(name, "")
        if self.phrase:
            return f" {' '.join(self.tokens)} " in text
        return all(f" {t} " in text for t in self.tokens)

    def match(self, doc: Doc) -> bool:
        return bool(self.tokens) and any(self._one(doc, name) for name in self.fields)

    def score(self, doc: Doc) -> float:
        return float(sum(self._one(doc, name) for name in self.fields))


@dataclass
class KeywordTerm(Node):
    name: str
    value: str
    wildcard: bool = False

    def match(self, doc: Doc) -> bool:
        values = _keyword_values(doc, self.name)
        if self.value == "*":
            return bool(values)
        if self.wildcard:
            return any(fnmatch.fnmatchcase(v, self.value) for v in values)
        return self.value in values


@dataclass
class KeywordRange(Node):
    name: str
    low: str | None
    high: str | None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def match(self, doc: Doc) -> bool:
        for v in _keyword_values(doc, self.name):
            if self.low is not None and (v < self.low
                                         or (v == self.low and not self.low_inclusive)):
                continue
            if self.high is not None and (v > self.high
                                          or (v == self.high and not self.high_inclusive)):
                continue
            return True
        return False


@dataclass
class NumberRange(Node):
    getter: Callable[[Doc], int]
    low: int | None
    high: int | None

    def match(self, doc: Doc) -> bool:
        v = self.getter(doc)
        return (self.low is None or v >= self.low) and (self.high is None or v <= self.high)


@dataclass
class DateRange(Node):
    """Inclusive millisecond bounds (exclusive ones are turned into inclusive ±1 ms, as ES does)."""

    name: str
    low: int | None
    high: int | None

    def match(self, doc: Doc) -> bool:
        v = DATE_FIELDS[self.name](doc)
        if v is None:
            return False
        return (self.low is None or v >= self.low) and (self.high is None or v <= self.high)

    def span(self) -> tuple[str, int | None, int | None] | None:
        return (self.name, self.low, self.high)


@dataclass
class Bool(Node):
    """Elasticsearch's bool query: all ``must``, no ``must_not``, and one ``should`` if alone."""

    must: list[Node] = field(default_factory=list)
    should: list[Node] = field(default_factory=list)
    must_not: list[Node] = field(default_factory=list)

    def match(self, doc: Doc) -> bool:
        if not all(n.match(doc) for n in self.must):
            return False
        if any(n.match(doc) for n in self.must_not):
            return False
        if self.should and not self.must:
            return any(n.match(doc) for n in self.should)
        return True

    def score(self, doc: Doc) -> float:
        return sum(n.score(doc) for n in self.must + self.should if n.match(doc))



def required_spans(node: Node) -> list[tuple[str, int | None, int | None]]:
    """The date ranges a document must fall in to match ``node`` (to narrow by bisect)."""
    if isinstance(node, Bool):
        out = [span for child in node.must for span in required_spans(child)]
        if not node.must and len(node.should) == 1:
            out += required_spans(node.should[0])
        return out
    span = node.span()
    return [span] if span else []


# --------------------------------------------------------------------------- dates

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})"
                   r"(?:[.,](\d{1,9}))?)?)?)?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?$")
_MATH = re.compile(r"([+-])(\d+)([yMwdhHms])")
_ROUND = re.compile(r"/([yMwdhHms])$")


def _add(dt: datetime, amount: int, unit: str) -> datetime:
    if unit in "yM":
        months = dt.month - 1 + amount * (12 if unit == "y" else 1)
        year, month = dt.year + months // 12, months % 12 + 1
        return dt.replace(year=year, month=month,
                          day=min(dt.day, calendar.monthrange(year, month)[1]))
    seconds = {"w": 604_800, "d": 86_400, "h": 3_600, "H": 3_600, "m": 60, "s": 1}[unit]
    return dt + timedelta(seconds=amount * seconds)


def _floor(dt: datetime, unit: str) -> datetime:
    if unit == "y":
        return dt.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "M":
        return dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "w":
        return _floor(dt, "d") - timedelta(days=dt.weekday())
    keep = {"d": 3, "h": 4, "H": 4, "m": 5, "s": 6}[unit]
    parts = [dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second]
    y, mo, d, h, mi, s = [*parts[:keep], *([0] * (6 - keep))]
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def parse_date(text: str, *, now: datetime, round_up: bool) -> int:
    """Epoch ms of an Elasticsearch date (``strict_date_optional_time||epoch_millis`` + math).

    ``round_up`` is how ES reads ``lte``/``gt`` bounds: missing parts count as their maximum, so
    ``2024-01-02`` as an inclusive upper bound ends at 23:59:59.999. Raises ``ValueError``.
    """
    text = text.strip()
    if text.startswith("now"):
        base, math, unit = now.astimezone(UTC), text[3:], "ms"
    else:
        anchor, _, math = text.partition("||")
        if anchor.isdigit() and len(anchor) != 4:
            base, unit = _EPOCH + int(anchor) * _MS, "ms"
        else:
            m = _DATE.match(anchor)
            if not m:
                raise ValueError(f"failed to parse date {text!r}")
            y, mo, d, h, mi, s, frac, tz = m.groups()
            base = datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0),
                            int(s or 0), int((frac or "0").ljust(6, "0")[:6]), tzinfo=UTC)
            if tz and tz != "Z":
                sign = 1 if tz[0] == "+" else -1
                digits = tz[1:].replace(":", "")
                base -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            if frac:
                unit = "ms"
            else:
                unit = "s" if s else "m" if mi else "h" if h else "d" if d else "M" if mo else "y"
    rounding = _ROUND.search(math)
    if rounding:
        math = math[:rounding.start()]
    consumed = "".join(g.group(0) for g in _MATH.finditer(math))
    if consumed != math:
        raise ValueError(f"failed to parse date math {text!r}")
    for sign, amount, op_unit in _MATH.findall(math):
        base = _add(base, int(amount) * (1 if sign == "+" else -1), op_unit)
    if rounding:
        unit = rounding.group(1)
        base = _floor(base, unit)
    if round_up and unit != "ms":
        return to_ms(_add(base, 1, unit)) - 1
    return to_ms(base)


# --------------------------------------------------------------------------- luqum's lexer

_TIME = r"(?<=T\d{2}):\d{2}(?::\d{2})?"
_TOKENS = [
    ("SEP", r"\s+"),
    ("TERM", r"(?:[^\s:^~(){}\[\]/\"'+\-\\]|\\.)(?:[^\s:^\\~(){}\[\]]|\\.|" + _TIME + r")*"),
    ("PLUS", r"\+"), ("MINUS", r"-"), ("COLUMN", r":"), ("LPAREN", r"\("), ("RPAREN", r"\)"),
    ("LBRACKET", r"[\[{]"), ("RBRACKET", r"[\]}]"),
    ("PHRASE", r'"(?:[^\\"]|\\.)*"'), ("REGEX", r"/(?:[^\\/]|\\.)*/"),
    ("APPROX", r"~(?:[0-9.]+)?"), ("BOOST", r"\^(?:[0-9.]+)?"),
]
_LEXER = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _TOKENS))
_RESERVED = {"AND": "AND", "OR": "OR", "NOT": "NOT", "TO": "TO"}


def tokenize(q: str) -> list[tuple[str, str]]:
    """luqum's tokens in luqum's order of preference (a PLY master regex: first match wins)."""
    out, pos = [], 0
    while pos < len(q):
        m = _LEXER.match(q, pos)
        if not m:
            raise QuerySyntaxError(f"Illegal character {q[pos]!r} at position {pos}")
        kind, text = m.lastgroup or "", m.group(0)
        if kind == "TERM":
            kind = _RESERVED.get(text, "TERM")
        if kind != "SEP":
            out.append((kind, text))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent with luqum's precedence: implicit < OR < AND < unary."""

    _STARTS: ClassVar[set[str]] = {"PLUS", "MINUS", "NOT", "LPAREN", "LBRACKET", "TERM",
                                   "PHRASE", "REGEX", "TO"}

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self, *kinds: str) -> str:
        kind = self.peek()
        if kind is None or kind not in kinds:
            where = f"{self.tokens[self.i][1]!r}" if kind else "the end"
            raise QuerySyntaxError(f"Syntax error in input: unexpected {where}")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def parse(self) -> tuple:
        tree = self.implicit()
        if self.peek() is not None:
            self.take("<end>")
        return tree

    def implicit(self) -> tuple:
        items = [self.or_()]
        while self.peek() in self._STARTS:
            items.append(self.or_())
        return items[0] if len(items) == 1 else ("implicit", items)

    def or_(self) -> tuple:
        items = [self.and_()]
        while self.peek() == "OR":
            self.take("OR")
            items.append(self.and_())
        return items[0] if len(items) == 1 else ("or", items)

    def and_(self) -> tuple:
        items = [self.boosted()]
        while self.peek() == "AND":
            self.take("AND")
            items.append(self.boosted())
        return items[0] if len(items) == 1 else ("and", items)

    def boosted(self) -> tuple:
        node = self.unary()
        while self.peek() == "BOOST":
            self.take("BOOST")
        return node

    def unary(self) -> tuple:
        kind = self.peek()
        if kind in ("PLUS", "MINUS", "NOT"):
            self.take(kind)
            return (kind.lower(), self.unary())
        if kind == "LPAREN":
            self.take("LPAREN")
            inner = self.implicit()
            self.take("RPAREN")
            return ("group", inner)
        if kind == "LBRACKET":
            low_incl = self.take("LBRACKET") == "["
            low = self.take("TERM", "PHRASE")
            self.take("TO")
            high = self.take("TERM", "PHRASE")
            high_incl = self.take("RBRACKET") == "]"
            return ("range", low, high, low_incl, high_incl)
        if kind == "TERM":
            text = self.take("TERM")
            if self.peek() == "COLUMN":
                self.take("COLUMN")
                return ("field", text, self.unary())
            if self.peek() == "APPROX":
                self.take("APPROX")
            return ("word", text)
        if kind == "PHRASE":
            text = self.take("PHRASE")
            if self.peek() == "APPROX":
                self.take("APPROX")
            return ("phrase", text)
        if kind == "REGEX":
            return ("regex", self.take("REGEX"))
        if kind == "TO":
            return ("word", self.take("TO"))
        self.take("TERM")  # raises with the token found
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------- ES semantics

def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _lucene_check(raw: str) -> None:
    """What Lucene's classic parser refuses in a bare term (outside a range)."""
    bare = re.sub(r"\\.", "", raw)
    if ":" in bare:
        raise EngineError(400, SYNTAX)
    if "/" in bare:
        raise EngineError(500, "Internal server error")


class _Translator:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def node(self, tree: tuple, field_name: str | None = None) -> Node:
        kind = tree[0]
        if kind == "implicit":
            bool_ = Bool()
            for child in tree[1]:
                if child[0] == "plus":
                    bool_.must.append(self.node(child[1], field_name))
                elif child[0] in ("minus", "not"):
                    bool_.must_not.append(self.node(child[1], field_name))
                else:
                    bool_.should.append(self.node(child, field_name))
            return bool_
        if kind == "or":
            return Bool(should=[self.node(c, field_name) for c in tree[1]])
        if kind == "and":
            return Bool(must=[self.node(c, field_name) for c in tree[1]])
        if kind in ("not", "minus"):
            return Bool(must_not=[self.node(tree[1], field_name)])
        if kind in ("plus", "group"):
            return self.node(tree[1], field_name)
        if kind == "field":
            if tree[2][0] == "field":  # luqum nests `a:b:c`; Lucene refuses it
                raise EngineError(400, SYNTAX)
            return self.node(tree[2], _unescape(tree[1]))
        if kind == "range":
            return self.range(field_name, *tree[1:])
        if kind == "regex":
            return self.regex(field_name, tree[1][1:-1])
        if kind == "phrase":
            return self.term(field_name, _unescape(tree[1][1:-1]), phrase=True)
        _lucene_check(tree[1])
        return self.term(field_name, _unescape(tree[1]), phrase=False)

    def date(self, text: str, round_up: bool) -> int:
        try:
            return parse_date(text, now=self.now, round_up=round_up)
        except ValueError as exc:
            raise EngineError(400, SYNTAX) from exc

    def range(self, name: str | None, low: str, high: str, low_incl: bool, high_incl: bool
              ) -> Node:
        lo = None if low == "*" else _unescape(low[1:-1] if low.startswith('"') else low)
        hi = None if high == "*" else _unescape(high[1:-1] if high.startswith('"') else high)
        if name in DATE_FIELDS:
            lo_ms = None if lo is None else self.date(lo, not low_incl) + (0 if low_incl else 1)
            hi_ms = None if hi is None else self.date(hi, high_incl) - (0 if high_incl else 1)
            return DateRange(name, lo_ms, hi_ms)
        if name in NUMBER_FIELDS:
            try:
                lo_n = None if lo is None else int(lo) + (0 if low_incl else 1)
                hi_n = None if hi is None else int(hi) - (0 if high_incl else 1)
            except ValueError as exc:
                raise EngineError(400, SYNTAX) from exc
            return NumberRange(NUMBER_FIELDS[name], lo_n, hi_n)
        if name in KEYWORD_FIELDS:
            return KeywordRange(KEYWORD_FIELDS[name], lo, hi, low_incl, high_incl)
        return MatchNone()

    def regex(self, name: str | None, pattern: str) -> Node:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise EngineError(400, SYNTAX) from exc
        if name in KEYWORD_FIELDS:
            key = KEYWORD_FIELDS[name]
            return _Predicate(lambda d: any(rx.fullmatch(v) for v in _keyword_values(d, key)))
        fields = (TEXT_FIELDS[name],) if name in TEXT_FIELDS else DEFAULT_FIELDS
        if name is not None and name not in TEXT_FIELDS:
            return MatchNone()
        return _Predicate(lambda d: any(rx.fullmatch(t) for f in fields
                                        for t in d.text.get(f, "").split()))

    def term(self, name: str | None, value: str, *, phrase: bool) -> Node:
        wildcard = not phrase and ("*" in value or "?" in value)
        if name is None or name in TEXT_FIELDS:
            fields = DEFAULT_FIELDS if name is None else (TEXT_FIELDS[name],)
            if wildcard:
                return TextTerm(fields, (value.lower(),), wildcard=True)
            return TextTerm(fields, tuple(analyze(value)), phrase=phrase)
        compare = None if phrase else re.match(r"^(>=|<=|>|<)(.+)$", value)
        if compare:
            op, bound = compare.groups()
            low, high = (bound, "*") if op[0] == ">" else ("*", bound)
            return self.range(name, low, high, op != ">", op != "<")
        if name in DATE_FIELDS:
            if value == "*":
                return DateRange(name, None, None)
            return DateRange(name, self.date(value, False), self.date(value, True))
        if name in NUMBER_FIELDS:
            if value == "*":
                return MatchAll()
            try:
                number = int(value)
            except ValueError as exc:
                raise EngineError(400, SYNTAX) from exc
            return NumberRange(NUMBER_FIELDS[name], number, number)
        if name in KEYWORD_FIELDS:
            return KeywordTerm(KEYWORD_FIELDS[name], value, wildcard)
        return MatchNone()


@dataclass
class _Predicate(Node):
    test: Callable[[Doc], bool]

    def match(self, doc: Doc) -> bool:
        return self.test(doc)


def parse(q: str, *, now: datetime) -> Node:
    """Compile ``q``; raises :class:`QuerySyntaxError` (luqum) or :class:`EngineError` (ES)."""
    tokens = tokenize(q)
    if not tokens:
        return MatchAll()
    return _Translator(now).node(_Parser(tokens).parse())


def free_text(q: str) -> Node:
    """Zenodo's fallback when luqum fails: ``multi_match`` of the words of ``q``, any of them."""
    return Bool(should=[TextTerm(DEFAULT_FIELDS, (token,)) for token in dict.fromkeys(analyze(q))])
