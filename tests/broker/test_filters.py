"""broker.filters: the pattern language, Filter.parse's validation, and FilterIndex, which must
agree with Filter.matches for any set of subscriptions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import Filter, FilterIndex, InvalidFilter, check_name
from broker.filters import MAX_PATTERNS, MAX_WILDCARDS


def glob(pattern: str, value: str) -> bool:
    """Reference matcher, independent of the module: '*' is any run, all else literal."""
    if not pattern:
        return not value
    if pattern[0] == "*":
        return any(glob(pattern[1:], value[i:]) for i in range(len(value) + 1))
    return bool(value) and value[0] == pattern[0] and glob(pattern[1:], value[1:])


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("*", "anything.at.all", True),
        ("*", "x", True),
        ("order.*", "order.created", True),
        ("order.*", "order.", True),
        ("order.*", "order.item.added", True),
        ("order.*", "order", False),
        ("order.*", "orders.created", False),
        ("order.*", "xorder.created", False),
        ("*.created", "order.created", True),
        ("*.created", "a.b.created", True),
        ("*.created", ".created", True),
        ("*.created", "created", False),
        ("*.created", "order.created2", False),
        ("order.placed", "order.placed", True),
        ("order.placed", "order.placedx", False),
        ("order.placed", "Order.placed", False),
        ("order?placed", "order.placed", False),
        ("order.[a]", "order.a", False),
        ("order.[a]", "order.[a]", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "a-b-c", True),
        ("a*b*c", "acb", False),
        ("a*a", "a", False),
        ("a*a", "aa", True),
        ("**", "", True),
        ("*.*", "nodot", False),
        ("a.b", "aXb", False),
        ("a+", "aa", False),
        ("a+", "a+", True),
    ],
)
def test_pattern(pattern: str, value: str, expected: bool) -> None:
    assert Filter((pattern,)).matches("s", value) is expected
    assert glob(pattern, value) is expected  # the reference agrees with the table


def test_filter_lists_and_stream() -> None:
    flt = Filter.parse(["order.*", "*.created"], "order-1")
    assert flt.matches("order-1", "order.shipped")
    assert flt.matches("order-1", "user.created")
    assert not flt.matches("order-1", "user.renamed")
    assert not flt.matches("order-2", "order.shipped")
    assert not flt.matches("order-1x", "order.shipped")
    assert Filter.parse("*", "*").matches("*", "t")
    assert not Filter.parse("*", "*").matches("order-1", "t")  # stream ids are literal


def test_parse() -> None:
    one = Filter.parse("order.*")
    assert one.patterns == ("order.*",) and one.stream_id is None and one.wire == "order.*"
    many = Filter.parse(["a", "b", "a"], "s-1")
    assert many.patterns == ("a", "b") and many.stream_id == "s-1" and many.wire == ["a", "b"]
    assert Filter.parse(["x"] * MAX_PATTERNS).patterns == ("x",)
    assert Filter.parse("*a" * MAX_WILDCARDS).matches("s", "a" * MAX_WILDCARDS)


def test_too_many_wildcards_names_the_limit() -> None:
    with pytest.raises(InvalidFilter, match=f"more than {MAX_WILDCARDS} '\\*' wildcards"):
        Filter.parse(["order.*", "*a" * (MAX_WILDCARDS + 1)])


@pytest.mark.parametrize(
    ("patterns", "stream_id"),
    [
        ("", None),
        ([], None),
        (None, None),
        (5, None),
        ({"a": 1}, None),
        ([""], None),
        (["ok", 3], None),
        ([["nested"]], None),
        ("a\x00b", None),
        ("a\nb", None),
        ("a\x1fb", None),
        ("a\x7fb", None),
        ("x" * 257, None),
        ("*" * (MAX_WILDCARDS + 1), None),
        (["ok", "*a" * (MAX_WILDCARDS + 1)], None),
        ([f"p{i}" for i in range(MAX_PATTERNS + 1)], None),
        ("*", ""),
        ("*", 7),
        ("*", "s\x1f"),
        ("*", "s" * 257),
    ],
)
def test_parse_rejects(patterns: object, stream_id: object) -> None:
    with pytest.raises(InvalidFilter):
        Filter.parse(patterns, stream_id)


def test_check_name() -> None:
    assert check_name("order-1 ü {x}*:", "streamId") == "order-1 ü {x}*:"
    for bad in ("", None, 3, "a\tb", "x" * 257):
        with pytest.raises(InvalidFilter):
            check_name(bad, "streamId")
    assert check_name("x" * 10, "t", max_length=10) == "x" * 10


# -- FilterIndex vs brute force --------------------------------------------------------------

ALPHABET = "ab.*"
pattern_st = st.text(ALPHABET, min_size=1, max_size=6)
type_st = st.text("ab.", min_size=0, max_size=7)
stream_st = st.sampled_from(["s1", "s2", "*", "s1*"])
filter_st = st.builds(
    Filter,
    st.lists(pattern_st, min_size=1, max_size=4, unique=True).map(tuple),
    st.none() | stream_st,
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    subscriptions=st.lists(filter_st, min_size=0, max_size=25),
    changes=st.lists(
        st.tuples(st.integers(0, 30), st.none() | filter_st),  # None: remove, else (re)add
        max_size=25,
    ),
    events=st.lists(st.tuples(stream_st, type_st), min_size=1, max_size=30),
)
def test_index_equals_brute_force(
    subscriptions: list[Filter],
    changes: list[tuple[int, Filter | None]],
    events: list[tuple[str, str]],
) -> None:
    index: FilterIndex[int] = FilterIndex()
    live: dict[int, Filter] = {}
    for key, flt in enumerate(subscriptions):
        index.add(key, flt)
        live[key] = flt
    for key, change in changes:
        if change is None:
            index.remove(key)
            live.pop(key, None)
        else:
            index.add(key, change)
            live[key] = change
    assert len(index) == len(live)
    for stream_id, event_type in events:
        brute = {k for k, f in live.items() if f.matches(stream_id, event_type)}
        assert index.match(stream_id, event_type) == brute
        # And Filter.matches agrees with the independent reference.
        reference = {
            k
            for k, f in live.items()
            if (f.stream_id is None or f.stream_id == stream_id)
            and any(glob(p, event_type) for p in f.patterns)
        }
        assert brute == reference


def test_index_removal_leaves_nothing_behind() -> None:
    index: FilterIndex[str] = FilterIndex()
    index.add("a", Filter.parse(["order.*", "*.created", "x*y*z", "exact"]))
    index.add("b", Filter.parse(["order.*"], "s"))
    index.add("c", Filter.parse(["*"]))
    assert index.match("s", "order.created") == {"a", "b", "c"}
    index.remove("a")
    index.remove("a")  # twice is harmless
    assert index.match("s", "order.created") == {"b", "c"}
    assert index.match("t", "xyz") == {"c"}
    index.add("b", Filter.parse(["user.*"]))  # re-adding replaces the old filter
    assert index.match("s", "order.created") == {"c"}
    assert index.match("t", "user.x") == {"b", "c"}
    index.remove("b")
    index.remove("c")
    assert len(index) == 0
    assert index.match("s", "order.created") == set()
