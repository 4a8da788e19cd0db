"""broker.filters: the pattern language, Filter.parse's validation, and FilterIndex, which must
agree with Filter.matches for any set of subscriptions. The matcher and ``covers`` are held to a
reference written here, and must answer adversarial patterns at once."""

from __future__ import annotations

import time
from itertools import product
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import Content, Filter, FilterIndex, InvalidFilter, check_name
from broker.filters import MAX_PATTERNS, MAX_WILDCARDS, compile_pattern, contains


def glob(pattern: str, value: str) -> bool:
    """Reference matcher, independent of the module: '*' is any run, all else literal.

    Dynamic programming: ``done[i][j]`` says whether ``pattern[:i]`` matches ``value[:j]``.
    """
    done = [[False] * (len(value) + 1) for _ in range(len(pattern) + 1)]
    done[0][0] = True
    for i, p in enumerate(pattern, 1):
        for j in range(len(value) + 1):
            if p == "*":  # the star stands for nothing, or for one more character
                done[i][j] = done[i - 1][j] or (j > 0 and done[i][j - 1])
            else:
                done[i][j] = j > 0 and done[i - 1][j - 1] and value[j - 1] == p
    return done[len(pattern)][len(value)]


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
        ("a**", "a", True),
        ("*a**b*", "xaby", True),
        ("ab*ba", "aba", False),  # head and tail may not share a character
        ("ab*ba", "abba", True),
        ("a*ab*b", "aabb", True),
        ("a*ab*b", "abab", False),
        ("*aa*aa*", "aaa", False),
        ("*aa*aa*", "aaaa", True),
        ("*.*.*", "a.b", False),
        ("order.*.v2", "order.x.v2", True),
        ("*a*a*a*a*a*a*a*b", "a" * 255, False),
        ("*a*a*a*a*a*a*a*b", "a" * 254 + "b", True),
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
    # A list of one is answered as a list, as the client wrote it; it is the same filter.
    listed = Filter.parse(["order.*"])
    assert listed.wire == ["order.*"] and listed == one and hash(listed) == hash(one)
    assert listed.within(Content.parse({"data": {"a": 1}}, None)).wire == ["order.*"]
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


# -- the matcher vs the reference -------------------------------------------------------------

MATCH_ALPHABET = "ab.*"  # values may hold '*' too: covers() reads patterns as values
match_pattern_st = st.text(MATCH_ALPHABET, min_size=1, max_size=12)


@st.composite
def instances(draw: st.DrawFn, pattern: str) -> str:
    """A value ``pattern`` matches: each '*' replaced by a short random run."""
    parts = pattern.split("*")
    stars = len(parts) - 1
    fillers = draw(st.lists(st.text(MATCH_ALPHABET, max_size=3), min_size=stars, max_size=stars))
    return parts[0] + "".join(f + p for f, p in zip(fillers, parts[1:], strict=True))


@st.composite
def near_misses(draw: st.DrawFn, pattern: str) -> str:
    """An instance of ``pattern`` with a slice replaced (often by nothing): where off-by-one
    mistakes show."""
    value = draw(instances(pattern))
    start = draw(st.integers(0, len(value)))
    stop = draw(st.integers(start, len(value)))
    return value[:start] + draw(st.text(MATCH_ALPHABET, max_size=2)) + value[stop:]


@settings(max_examples=1000, deadline=None, database=None)
@given(pattern=match_pattern_st, data=st.data())
def test_matcher_equals_reference(pattern: str, data: st.DataObject) -> None:
    value = data.draw(
        st.text(MATCH_ALPHABET, max_size=14) | instances(pattern) | near_misses(pattern)
    )
    assert compile_pattern(pattern)(value) is glob(pattern, value)


def test_matcher_equals_reference_on_every_small_case() -> None:
    """Exhaustive where it is cheap: every pattern of up to 6 of 'a', 'b', '*' against every
    value of up to 6 of 'a', 'b'."""
    words = [""] + [w for n in range(1, 7) for w in map("".join, product("ab", repeat=n))]
    for n in range(1, 7):
        for pattern in map("".join, product("ab*", repeat=n)):
            match = compile_pattern(pattern)
            for value in words:
                assert match(value) is glob(pattern, value), (pattern, value)


@settings(max_examples=500, deadline=None, database=None)
@given(mine=filter_st, theirs=filter_st, data=st.data())
def test_covers(mine: Filter, theirs: Filter, data: st.DataObject) -> None:
    by_reference = (mine.stream_id is None or mine.stream_id == theirs.stream_id) and all(
        any(glob(m, t) for m in mine.patterns) for t in theirs.patterns
    )
    assert mine.covers(theirs) is by_reference
    assert mine.covers(mine)
    assert Filter(("*",)).covers(theirs)
    if not by_reference:
        return
    # Whatever the covered filter can match, the covering one matches.
    stream_id = theirs.stream_id or "any-stream"
    for pattern in theirs.patterns:
        value = data.draw(instances(pattern))
        assert theirs.matches(stream_id, value)
        assert mine.matches(stream_id, value)


def test_adversarial_patterns_are_answered_at_once() -> None:
    """A liveness check, not a benchmark: a backtracking matcher takes longer than the age of
    the universe on these; a linear one, milliseconds."""
    value = "a" * 65_536
    cases = [
        ("*a" * 199 + "*b", value, False),  # fails at the tail
        ("*a" * 198 + "*b*", value, False),  # tail passes: the middle search does the work
        ("*a" * 199 + "*b", value[:-1] + "b", True),
        ("*" + "*".join(["a" * 100 + "b"] * 199) + "*", value, False),  # long segments
        ("*" + "*".join(["ab"] * 199) + "*", value[:-1] + "b", False),  # one "ab", at the end
        ("*" + "*".join(["ab"] * 199) + "*", "ab" * 32_768, True),
    ]
    for pattern, subject, expected in cases:
        assert pattern.count("*") == 200
        match = compile_pattern(pattern)
        started = time.monotonic()
        assert match(subject) is expected
        assert time.monotonic() - started < 1.0, pattern[:40]
    flt = Filter(tuple(p for p, _, _ in cases))
    started = time.monotonic()
    assert flt.covers(Filter((value[:-1] + "b", "ab" * 32_768)))
    assert not flt.covers(Filter((value,)))
    assert time.monotonic() - started < 1.0


def test_filters_with_the_same_content_conditions_share_one_content_key() -> None:
    """The fan-out decides a content condition once per event for every filter with the same
    ``content_key``: equal conditions must give equal keys, different ones different keys."""
    eu = Content.parse({"data": {"region": "eu"}})
    us = Content.parse({"data": {"region": "us"}})
    one = Filter.parse("order.*", content=eu)
    assert one.content_key and one.content_key == Filter.parse("*", content=eu).content_key
    assert one.content_key != Filter.parse("order.*", content=us).content_key
    assert Filter.parse("order.*").content_key == ""
    assert one.within(us).content_key not in (one.content_key, "")
    tagged = Content.parse(query={"items": [{"tags": ["a"]}]})
    assert Filter.parse("*", content=tagged).content_key != one.content_key
    # Equal as JSON is not equal as a condition: true is not 1.
    yes = Content.parse({"data": {"paid": True}})
    one_ = Content.parse({"data": {"paid": 1}})
    assert Filter.parse("*", content=yes).content_key != Filter.parse("*", content=one_).content_key


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [
        ({"v": [1, 0]}, {"v": [True, False]}, False),
        ({"v": [True, False]}, {"v": [1, 0]}, False),
        ({"v": [True, False]}, {"v": [True, False]}, True),
        ({"v": [{"k": 1}]}, {"v": [{"k": True}]}, False),
        ({"v": [{"k": 1}]}, {"v": [{"k": 1}]}, True),
        ({"v": [{"k": 1, "j": 2}]}, {"v": [{"k": 1}]}, False),  # arrays: equality, not containment
        ({"v": [1, 2]}, {"v": [1.0, 2]}, True),  # one number
        ({"v": {"k": [1]}}, {"v": {"k": [True]}}, False),
        ({"flag": 1}, {"flag": True}, False),
        ({"v": []}, {"v": {}}, False),
    ],
)
def test_content_conditions_compare_as_json_inside_arrays_too(
    value: Any, pattern: Any, expected: bool
) -> None:
    """``contains``: objects by containment, everything else by JSON's equality, where true is
    not 1 at any depth (a plain ``==`` on arrays took [true, false] for [1, 0])."""
    assert contains(value, pattern) is expected


def test_a_match_may_nest_up_to_its_depth_limit() -> None:
    """The match object is the first level; objects and arrays inside count alike."""
    from broker.filters import MAX_MATCH_DEPTH

    def nested(levels: int) -> dict[str, object]:
        inner: object = 1
        for k in range(levels - 2):  # (the match and its "data" are two levels)
            inner = {"a": inner} if k % 2 else [inner]
        return {"data": {"a": inner}}

    assert Content.parse(nested(MAX_MATCH_DEPTH)).data is not None
    with pytest.raises(InvalidFilter, match=f"deeper than {MAX_MATCH_DEPTH} levels"):
        Content.parse(nested(MAX_MATCH_DEPTH + 1))
    with pytest.raises(InvalidFilter, match="deeper than"):
        Content.parse(nested(5000))  # no RecursionError on the way


def test_complex_patterns_are_matched_once_per_type_and_remembered_until_they_change() -> None:
    """Keys sharing a complex pattern are found by one match of it; a type's verdicts are kept
    and dropped as soon as a complex pattern is added or removed."""
    index: FilterIndex[str] = FilterIndex()
    for k in range(50):
        index.add(f"k{k}", Filter.parse("a*b*c"))
    index.add("other", Filter.parse(["x*y*z", "order.*"]))
    assert index.complex_patterns() == 2
    assert index.match("s", "a-b-c") == {f"k{k}" for k in range(50)}
    assert index.match("s", "a-b-c") == {f"k{k}" for k in range(50)}  # remembered
    index.add("late", Filter.parse("a*-*c"))
    assert index.match("s", "a-b-c") == {f"k{k}" for k in range(50)} | {"late"}
    for k in range(50):
        index.remove(f"k{k}")
    assert index.match("s", "a-b-c") == {"late"}
    assert index.match("s", "x1y2z") == {"other"}
    index.remove("other")
    assert index.match("s", "x1y2z") == set()
    assert index.complex_patterns() == 1
