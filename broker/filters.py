"""The one place that decides whether an event matches a subscription's filter.

Pattern language (the contract's): ``*`` matches any run of characters, dots included; every other
character is literal. A filter is a list of patterns (OR) and an optional stream id, and may add
conditions on the event's content (``Content``): ``data``/``metadata`` containment and a DCB
``Query`` (types and tags). The patterns and the stream are what the fan-out indexes; content is
checked only for the subscriptions that have some, on the event decoded once per delivery.

Patterns come from any key that may read, so matching must never be a denial of service: a
pattern is split at its ``*`` once, when its filter is built, and then matched in one left-to-right
pass with ``str.find`` (no regular expression, no backtracking). The common shapes (``*``, exact,
``head*``, ``*tail``) cost one string comparison per event.

``FilterIndex`` finds the subscriptions an event matches without trying every subscription: exact
types, single-``*`` prefixes and suffixes are dictionary lookups; only the rare other shapes
(``a*b*c``) are tried one by one.

Size: ~430 lines, kept in one module on purpose: it is the one place that matches, and the
pattern matcher, the content conditions and the index must agree on one definition.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import InvalidFilter

MAX_PATTERN_LENGTH = 256
MAX_PATTERNS = 32
# Real filters use one or two wildcards ("order.*", "tenant.*.order.*"). Matching is linear
# whatever the count, but each "*" beyond the first costs a str.find per event per subscription
# on the fan-out's hot path; sixteen is far more than any sensible pattern needs and keeps that
# per-event work small and fixed.
MAX_WILDCARDS = 16
MAX_QUERY_ITEMS = 32
MAX_ITEM_VALUES = 32
MAX_TAGS = 64
MAX_MATCH_BYTES = 8 * 1024
MAX_MATCH_DEPTH = 32
"""Levels of objects and arrays in a ``match`` (itself the first). Content conditions nest a few
levels; a thousand-deep one overflowed Python's recursion in every place that walks it (its size
check, a webhook's fingerprint) and answered 500."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""The characters a name may not hold (C0 controls, DEL and C1 controls)."""

K = TypeVar("K")
Matcher = Callable[[str], bool]


def check_name(value: object, what: str, max_length: int = 256) -> str:
    """Stream ids and event types: non-empty text without control characters."""
    if not isinstance(value, str) or not value:
        raise InvalidFilter(f"{what} must be a non-empty string")
    if len(value) > max_length:
        raise InvalidFilter(f"{what} is longer than {max_length} characters")
    # One regex search, not a loop per character: every event type of every append passes here
    # (a character loop was ~30% of a 100-event append's Python time, cProfile).
    if _CONTROL.search(value) is not None:
        raise InvalidFilter(f"{what} must not contain control characters")
    return value


def check_pattern(value: object) -> str:
    """One pattern of an ``eventFilter``: a name of at most MAX_PATTERN_LENGTH characters with
    at most MAX_WILDCARDS ``*``."""
    pattern = check_name(value, "pattern", MAX_PATTERN_LENGTH)
    if pattern.count("*") > MAX_WILDCARDS:
        raise InvalidFilter(f"pattern has more than {MAX_WILDCARDS} '*' wildcards (the limit)")
    return pattern


def compile_pattern(pattern: str) -> Matcher:
    """A function telling whether a value matches ``pattern``, read once here.

    Split at the stars, the pattern is ``head * m1 * ... * mk * tail``: a value matches when it
    starts with ``head``, ends with ``tail`` (not overlapping ``head``) and holds m1..mk in order
    in between. Finding each middle segment at its leftmost place is exact: an earlier end only
    leaves more room for the rest. So one pass of ``str.find`` over the value decides, never
    going back; empty segments (from ``**``) constrain nothing and are dropped.
    """
    if "*" not in pattern:
        return pattern.__eq__
    head, *inner, tail = pattern.split("*")
    middle = tuple(part for part in inner if part)
    if not middle:
        if not head and not tail:
            return _anything
        if not tail:
            return lambda value: value.startswith(head)
        if not head:
            return lambda value: value.endswith(tail)
    least = len(head) + sum(map(len, middle)) + len(tail)
    start = len(head)
    back = len(tail)

    def matches(value: str) -> bool:
        if len(value) < least or not value.startswith(head) or not value.endswith(tail):
            return False
        at = start
        end = len(value) - back
        for part in middle:
            at = value.find(part, at, end)
            if at < 0:
                return False
            at += len(part)
        return True

    return matches


def _anything(value: str) -> bool:
    return True


def check_tag(value: object, what: str = "tag") -> str:
    """A tag: a name without commas (tags are comma-joined in the log's index entries)."""
    tag = check_name(value, what)
    if "," in tag:
        raise InvalidFilter(f"{what} must not contain a comma")
    return tag


def check_tags(value: object, what: str = "tags") -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidFilter(f"{what} must be a list of strings")
    if len(value) > MAX_TAGS:
        raise InvalidFilter(f"{what} holds more than {MAX_TAGS} tags")
    return tuple(dict.fromkeys(check_tag(t, f"{what}[{i}]") for i, t in enumerate(value)))


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests dicts and lists more than ``limit`` levels (walked without
    recursion: it may be deep enough to overflow Python's)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def contains(value: Any, pattern: Any) -> bool:
    """DeltaBase's content match: an object matches when it holds every key of ``pattern`` with a
    value that matches (nested objects the same way); anything else by equality (JSON's: true is
    not 1)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        for key, wanted in pattern.items():
            if key not in value or not contains(value[key], wanted):
                return False
        return True
    return json_equal(value, pattern)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: Python's, but for booleans, which JSON does not take for numbers
    (``true`` is not ``1``, also inside arrays and objects); 1 and 1.0 are one number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(json_equal(value, b[key]) for key, value in a.items())
        )
    if isinstance(b, list | dict):
        return False
    return bool(a == b)


@dataclass(frozen=True, slots=True)
class QueryItem:
    """Events of one of ``types`` (any type if none) that carry every one of ``tags``."""

    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def accepts(self, event_type: str, tags: Any) -> bool:
        if self.types and event_type not in self.types:
            return False
        return all(tag in tags for tag in self.tags)

    @property
    def wire(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if self.types:
            out["types"] = list(self.types)
        if self.tags:
            out["tags"] = list(self.tags)
        return out


@dataclass(frozen=True, slots=True)
class Query:
    """A DCB query (DeltaBase's ``{items: [{types?, tags?}]}``): items OR, types OR within an item,
    tags AND within an item."""

    items: tuple[QueryItem, ...]

    @classmethod
    def parse(cls, value: object, what: str = "query") -> Query:
        if not isinstance(value, dict) or not set(value) <= {"items"}:
            raise InvalidFilter(f"{what} must be an object {{items: [{{types?, tags?}}]}}")
        items = value.get("items")
        if not isinstance(items, list) or not items:
            raise InvalidFilter(f"{what}.items must be a non-empty list")
        if len(items) > MAX_QUERY_ITEMS:
            raise InvalidFilter(f"{what}.items holds more than {MAX_QUERY_ITEMS} items")
        parsed = []
        for i, item in enumerate(items):
            at = f"{what}.items[{i}]"
            if not isinstance(item, dict) or not set(item) <= {"types", "tags"}:
                raise InvalidFilter(f"{at} must be an object {{types?, tags?}}")
            types = item.get("types") or []
            if not isinstance(types, list) or len(types) > MAX_ITEM_VALUES:
                raise InvalidFilter(f"{at}.types must be a list of at most {MAX_ITEM_VALUES}")
            checked = tuple(dict.fromkeys(check_name(t, f"{at}.types") for t in types))
            tags = check_tags(item.get("tags") or [], f"{at}.tags")
            if not checked and not tags:
                raise InvalidFilter(f"{at} needs types or tags")
            parsed.append(QueryItem(checked, tags))
        return cls(tuple(parsed))

    def accepts(self, event_type: str, tags: Any) -> bool:
        for item in self.items:
            if item.accepts(event_type, tags):
                return True
        return False

    def within(self, other: Query) -> bool:
        """Whether every event this query matches, ``other`` matches too: each of our items lies
        inside one of its (that item's types include ours, its tags are among ours)."""
        return all(
            any(
                (not theirs.types or (ours.types and set(ours.types) <= set(theirs.types)))
                and set(theirs.tags) <= set(ours.tags)
                for theirs in other.items
            )
            for ours in self.items
        )

    @property
    def patterns(self) -> tuple[str, ...]:
        """The event types it can match, as patterns for the fan-out's index."""
        if any(not item.types for item in self.items):
            return ("*",)
        return tuple(dict.fromkeys(t for item in self.items for t in item.types))

    @property
    def wire(self) -> dict[str, Any]:
        return {"items": [item.wire for item in self.items]}


@dataclass(frozen=True, slots=True)
class Content:
    """Conditions on an event's content: ``data`` and ``metadata`` containment (DeltaBase's
    ``match``) and a DCB ``query``. Checked on the decoded event."""

    data: Any = None
    metadata: Any = None
    query: Query | None = None

    @classmethod
    def parse(cls, match: object = None, query: object = None, what: str = "match") -> Content:
        data = metadata = None
        if match is not None:
            if not isinstance(match, dict) or not set(match) <= {"data", "metadata"}:
                raise InvalidFilter(f"{what} must be an object {{data?, metadata?}}")
            for name in ("data", "metadata"):
                part = match.get(name)
                if part is not None and not isinstance(part, dict):
                    raise InvalidFilter(f"{what}.{name} must be an object")
            if _deeper_than(match, MAX_MATCH_DEPTH):
                raise InvalidFilter(
                    f"{what} nests objects and arrays deeper than {MAX_MATCH_DEPTH} levels"
                )
            if len(repr(match)) > MAX_MATCH_BYTES:
                raise InvalidFilter(f"{what} is larger than {MAX_MATCH_BYTES} bytes")
            data, metadata = match.get("data"), match.get("metadata")
        parsed = None if query is None else Query.parse(query)
        return cls(data, metadata, parsed)

    def __bool__(self) -> bool:
        return self.data is not None or self.metadata is not None or self.query is not None

    def accepts(self, event: dict[str, Any]) -> bool:
        if self.query is not None and not self.query.accepts(
            event.get("type", ""), event.get("tags") or ()
        ):
            return False
        if self.data is not None and not contains(event.get("data"), self.data):
            return False
        return self.metadata is None or contains(event.get("metadata"), self.metadata)

    def implied_by(self, conditions: tuple[Content, ...]) -> bool:
        """Whether every event meeting all of ``conditions`` meets this one too: each of its
        parts (data, metadata, query) follows from a part of one of them (containment is
        transitive: an event holding ``{a: 1, b: 2}`` holds ``{a: 1}``)."""
        if self.data is not None and not any(
            c.data is not None and contains(c.data, self.data) for c in conditions
        ):
            return False
        if self.metadata is not None and not any(
            c.metadata is not None and contains(c.metadata, self.metadata) for c in conditions
        ):
            return False
        query = self.query
        return query is None or any(
            c.query is not None and c.query.within(query) for c in conditions
        )

    @property
    def match_wire(self) -> dict[str, Any] | None:
        out = {k: v for k, v in (("data", self.data), ("metadata", self.metadata)) if v is not None}
        return out or None


@dataclass(frozen=True, slots=True)
class Filter:
    patterns: tuple[str, ...]
    stream_id: str | None = None
    contents: tuple[Content, ...] = ()
    """Content conditions, all of which an event must meet (a subscription's own, and a browser
    token's limits): checked on the decoded event, only for filters that have any."""
    listed: bool = field(default=False, compare=False)
    """The client gave its patterns as a list (even of one): ``wire`` answers with a list."""
    matchers: tuple[Matcher, ...] = field(init=False, repr=False, compare=False)
    """``compile_pattern`` of each pattern, in order: built once with the filter."""
    content_key: str = field(init=False, repr=False, compare=False)
    """The content conditions as text: filters with the same one accept the same events, so the
    fan-out decides it once per event for all of them (empty: no content conditions)."""

    complex_patterns: frozenset[str] = field(init=False, repr=False, compare=False)
    """Its patterns the fan-out matches event by event (``is_complex``): built once."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "matchers", tuple(map(compile_pattern, self.patterns)))
        object.__setattr__(self, "complex_patterns", frozenset(filter(is_complex, self.patterns)))
        key = repr([(c.data, c.metadata, c.query) for c in self.contents]) if self.contents else ""
        object.__setattr__(self, "content_key", key)

    @classmethod
    def parse(
        cls, patterns: object, stream_id: object = None, content: Content | None = None
    ) -> Filter:
        """Validate a client's ``eventFilter`` (a pattern or a list of them) and ``streamId``,
        with optional content conditions. Without an ``eventFilter`` (None) a content query's
        types stand for it."""
        listed = isinstance(patterns, list)
        if patterns is None and content is not None and content.query is not None:
            patterns = list(content.query.patterns)
        if isinstance(patterns, str):
            items: list[object] = [patterns]
        elif isinstance(patterns, list) and patterns:
            items = list(patterns)
        else:
            raise InvalidFilter("eventFilter must be a pattern or a non-empty list of patterns")
        if len(items) > MAX_PATTERNS:
            raise InvalidFilter(f"eventFilter holds more than {MAX_PATTERNS} patterns")
        checked = tuple(dict.fromkeys(check_pattern(p) for p in items))
        sid = None if stream_id is None else check_name(stream_id, "streamId")
        return cls(checked, sid, (content,) if content else (), listed)

    def within(self, limit: Content | None) -> Filter:
        """This filter with a further content condition (a browser token's limit) added."""
        if not limit:
            return self
        return Filter(self.patterns, self.stream_id, (*self.contents, limit), self.listed)

    def accepts(self, event: dict[str, Any]) -> bool:
        """The content conditions, on the decoded event (the caller checked ``matches``)."""
        for content in self.contents:
            if not content.accepts(event):
                return False
        return True

    def matches(self, stream_id: str, event_type: str) -> bool:
        # Called once per event per replaying subscription: a plain loop, no generator.
        if self.stream_id is not None and self.stream_id != stream_id:
            return False
        for match in self.matchers:
            if match(event_type):
                return True
        return False

    def covers(self, other: Filter) -> bool:
        """True if every event ``other`` can match, this filter matches too. A pattern of
        ``other`` is covered when one of ours matches it read literally: each of its ``*`` is
        then absorbed by one of our wildcards, whatever it stands for."""
        if self.stream_id is not None and other.stream_id != self.stream_id:
            return False
        return all(any(match(theirs) for match in self.matchers) for theirs in other.patterns)

    @property
    def wire(self) -> str | list[str]:
        """The filter as a client wrote it: one pattern, or a list (of one, if so given)."""
        return (
            self.patterns[0] if len(self.patterns) == 1 and not self.listed else list(self.patterns)
        )


def is_complex(pattern: str) -> bool:
    """Whether ``pattern`` is matched by its matcher, event by event: neither exact, ``head*``
    nor ``*tail`` (those the index finds with a dict lookup)."""
    stars = pattern.count("*")
    return stars > 1 or (stars == 1 and not pattern.endswith("*") and not pattern.startswith("*"))


MEMO_TYPES = 256
"""Event types whose complex-pattern verdicts ``_Patterns`` remembers (a log holds few types)."""


class _Patterns(Generic[K]):
    """Keys indexed by pattern shape: exact, ``head*``, ``*tail``, anything else (complex: each
    distinct one matched once per event type, whatever the number of keys holding it, and its
    verdicts for recent types remembered until the complex patterns change)."""

    def __init__(self) -> None:
        self.exact: dict[str, set[K]] = {}
        self.prefix: dict[int, dict[str, set[K]]] = {}  # "order.*" -> {6: {"order.": keys}}
        self.suffix: dict[int, dict[str, set[K]]] = {}  # "*.created" -> {8: {".created": keys}}
        self.complex: dict[str, tuple[Matcher, set[K]]] = {}
        self._memo: dict[str, set[K]] = {}
        """Event type -> the keys its complex patterns match (cleared when they change)."""

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefix or self.suffix or self.complex)

    def place(self, key: K, pattern: str, match: Matcher, *, add: bool) -> None:
        if "*" not in pattern:
            _toggle(self.exact, pattern, key, add)
        elif is_complex(pattern):
            self._place_complex(key, pattern, match, add)
        elif pattern.endswith("*"):
            _toggle_sized(self.prefix, pattern[:-1], key, add)
        else:
            _toggle_sized(self.suffix, pattern[1:], key, add)

    def _place_complex(self, key: K, pattern: str, match: Matcher, add: bool) -> None:
        self._memo.clear()
        held = self.complex.get(pattern)
        if add:
            if held is None:
                self.complex[pattern] = (match, {key})
            else:
                held[1].add(key)
        elif held is not None:
            held[1].discard(key)
            if not held[1]:
                del self.complex[pattern]

    def collect(self, event_type: str, into: set[K]) -> None:
        hit = self.exact.get(event_type)
        if hit:
            into |= hit
        size = len(event_type)
        for length, by_head in self.prefix.items():
            if length <= size:
                hit = by_head.get(event_type[:length])
                if hit:
                    into |= hit
        for length, by_tail in self.suffix.items():
            if length <= size:
                hit = by_tail.get(event_type[size - length :])
                if hit:
                    into |= hit
        if self.complex:
            into |= self._complex_hits(event_type)

    def _complex_hits(self, event_type: str) -> set[K]:
        memo = self._memo
        hits = memo.get(event_type)
        if hits is None:
            hits = set()
            for match, keys in self.complex.values():
                if match(event_type):
                    hits |= keys
            if len(memo) >= MEMO_TYPES:
                memo.clear()
            memo[event_type] = hits
        return hits


class FilterIndex(Generic[K]):
    """Subscriptions (keys of type K) indexed by stream, then by their patterns' shapes.

    ``match(stream_id, type)`` returns the keys whose filter matches. Cost per event: a lookup
    for the store-wide subscriptions and one for the event's stream; within each, one dict lookup
    for exact types and one per distinct prefix/suffix length in use, plus the rare complex
    patterns: never a scan over subscriptions that cannot match.
    """

    def __init__(self) -> None:
        self._filters: dict[K, Filter] = {}
        self._by_stream: dict[str | None, _Patterns[K]] = {}

    def __len__(self) -> int:
        return len(self._filters)

    def add(self, key: K, flt: Filter) -> None:
        self.remove(key)
        self._filters[key] = flt
        patterns = self._by_stream.setdefault(flt.stream_id, _Patterns())
        for pattern, match in zip(flt.patterns, flt.matchers, strict=True):
            patterns.place(key, pattern, match, add=True)

    def remove(self, key: K) -> None:
        flt = self._filters.pop(key, None)
        if flt is None:
            return
        patterns = self._by_stream[flt.stream_id]
        for pattern, match in zip(flt.patterns, flt.matchers, strict=True):
            patterns.place(key, pattern, match, add=False)
        if not patterns:
            del self._by_stream[flt.stream_id]

    def complex_patterns(self) -> int:
        """Distinct complex patterns held (per stream: matched once per event of that stream)."""
        return sum(len(patterns.complex) for patterns in self._by_stream.values())

    def match(self, stream_id: str, event_type: str) -> set[K]:
        found: set[K] = set()
        everywhere = self._by_stream.get(None)
        if everywhere is not None:
            everywhere.collect(event_type, found)
        this_stream = self._by_stream.get(stream_id)
        if this_stream is not None:
            this_stream.collect(event_type, found)
        return found


def _toggle(table: dict[str, set[K]], word: str, key: K, add: bool) -> None:
    if add:
        table.setdefault(word, set()).add(key)
        return
    keys = table.get(word)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del table[word]


def _toggle_sized(table: dict[int, dict[str, set[K]]], word: str, key: K, add: bool) -> None:
    words = table.setdefault(len(word), {})
    _toggle(words, word, key, add)
    if not words:
        del table[len(word)]
