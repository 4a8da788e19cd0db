"""The hiredis command packing of broker/redis.py: the same bytes as redis-py's own serializer,
and its refusals, for every kind of argument."""

from __future__ import annotations

import pytest
from redis.connection import HiredisRespSerializer
from redis.exceptions import DataError

from broker.redis import _HiredisPackedConnection

CASES = [
    ("EVALSHA", "f" * 40, 2, "k1", "k2", "any", b"\x1fbody\xff", 0, 1.5, -3),
    ("SET", "key", "Zoë 🎉", "EX", 10),
    ("XADD", "log", "1-0", "e", bytearray(b"bytes"), "m", memoryview(b"view")),
    ("SCRIPT LOAD", "return 1"),  # two words: split by the serializer
    ("CLIENT", "KILL", "TYPE", "pubsub"),
]


@pytest.mark.parametrize("args", CASES, ids=[c[0] for c in CASES])
def test_packs_what_redis_py_packs(args: tuple[object, ...]) -> None:
    ours = _HiredisPackedConnection.__new__(_HiredisPackedConnection)
    assert ours.pack_command(*args) == HiredisRespSerializer().pack(*args)


@pytest.mark.parametrize("bad", [None, True, object()])
def test_refuses_what_redis_py_refuses(bad: object) -> None:
    ours = _HiredisPackedConnection.__new__(_HiredisPackedConnection)
    with pytest.raises(DataError):
        ours.pack_command("SET", "key", bad)
