"""The one place that decides whether an event matches a subscription's filter.

Pattern language (the contract's): ``*`` matches any run of characters, dots included; every other
character is literal. A filter is a list of patterns (OR) and an optional stream id.

Patterns come from any key that may read, so matching must never be a denial of service: a
pattern is split at its ``*`` once, when its filter is built, and then matched in one left-to-right
pass with ``str.find`` (no regular expression, no backtracking). The common shapes (``*``, exact,
``head*``, ``*tail``) cost one string comparison per event.

``FilterIndex`` finds the subscriptions an event matches without trying every subscription: exact
types, single-``*`` prefixes and suffixes are dictionary lookups; only the rare other shapes
(``a*b*c``) are tried one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .errors import InvalidFilter

MAX_PATTERN_LENGTH = 256
MAX_PATTERNS = 32
# Real filters use one or two wildcards ("order.*", "tenant.*.order.*"). Matching is linear
# whatever the count, but each "*" beyond the first costs a str.find per event per subscription
# on the fan-out's hot path; sixteen is far more than any sensible pattern needs and keeps that
# per-event work small and fixed.
MAX_WILDCARDS = 16

K = TypeVar("K")
Matcher = Callable[[str], bool]


def check_name(value: object, what: str, max_length: int = 256) -> str:
    """Stream ids and event types: non-empty text without control characters."""
    if not isinstance(value, str) or not value:
        raise InvalidFilter(f"{what} must be a non-empty string")
    if len(value) > max_length:
        raise InvalidFilter(f"{what} is longer than {max_length} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
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


@dataclass(frozen=True, slots=True)
class Filter:
    patterns: tuple[str, ...]
    stream_id: str | None = None
    matchers: tuple[Matcher, ...] = field(init=False, repr=False, compare=False)
    """``compile_pattern`` of each pattern, in order: built once with the filter."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "matchers", tuple(map(compile_pattern, self.patterns)))

    @classmethod
    def parse(cls, patterns: object, stream_id: object = None) -> Filter:
        """Validate a client's ``eventFilter`` (a pattern or a list of them) and ``streamId``."""
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
        return cls(checked, sid)

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
        """The filter as a client wrote it: one pattern, or a list."""
        return self.patterns[0] if len(self.patterns) == 1 else list(self.patterns)


class _Patterns(Generic[K]):
    """Keys indexed by pattern shape: exact, ``head*``, ``*tail``, anything else."""

    def __init__(self) -> None:
        self.exact: dict[str, set[K]] = {}
        self.prefix: dict[int, dict[str, set[K]]] = {}  # "order.*" -> {6: {"order.": keys}}
        self.suffix: dict[int, dict[str, set[K]]] = {}  # "*.created" -> {8: {".created": keys}}
        self.complex: dict[K, list[Matcher]] = {}

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefix or self.suffix or self.complex)

    def place(self, key: K, pattern: str, match: Matcher, *, add: bool) -> None:
        stars = pattern.count("*")
        if stars == 0:
            _toggle(self.exact, pattern, key, add)
        elif stars == 1 and pattern.endswith("*"):
            _toggle_sized(self.prefix, pattern[:-1], key, add)
        elif stars == 1 and pattern.startswith("*"):
            _toggle_sized(self.suffix, pattern[1:], key, add)
        elif add:
            self.complex.setdefault(key, []).append(match)
        else:
            self.complex.pop(key, None)

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
        for key, matchers in self.complex.items():
            for match in matchers:
                if match(event_type):
                    into.add(key)
                    break


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
