"""The client commands of the CLI, run as `python -m gateway.cli ...` against a real pod: append
then tail round trips, and one clear line plus a meaningful exit code for every failure."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.clients.conftest import FAST
from tests.harness import ROOT, Pod, RedisServer, free_port, spawn_pods

pytestmark = pytest.mark.timeout(60)


def cli(
    *args: str,
    url: str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    env.pop("DELTAGATE_API_KEY", None)
    if url is not None:
        env["DELTAGATE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=env,
    )


def one_error_line(done: subprocess.CompletedProcess, code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def pod(redis_server: RedisServer) -> Iterator[Pod]:
    """One pod for the whole module (each test uses its own stores): a CLI run is a process
    start, so the pod's start-up is the cost worth sharing."""
    redis_server.client().flushall()
    started: list[Pod] = []
    try:
        (pod,) = spawn_pods(started, redis_server.url, 1, **FAST)
        yield pod
    finally:
        for p in started:
            p.stop()


def test_append_then_tail_round_trip(pod: Pod) -> None:
    created = cli("stores", "create", "clitest", "--description", "from the CLI", url=pod.url)
    assert created.returncode == 0, created.stderr
    listed = cli("stores", "list", "--json", url=pod.url)
    assert "clitest" in [s["name"] for s in json.loads(listed.stdout)]
    # From arguments, from the --type shortcut, and JSON lines on stdin (blank lines skipped).
    first = cli(
        "append",
        "clitest",
        "order-1",
        '{"type": "order.placed", "data": {"orderId": "order-1", "total": 12.5}}',
        '[{"type": "order.shipped", "data": {"orderId": "order-1"}}]',
        url=pod.url,
    )
    assert first.returncode == 0, first.stderr
    assert "appended 2 event(s)" in first.stdout
    shortcut = cli(
        "append",
        "clitest",
        "user-1",
        "--type",
        "user.created",
        "--data",
        '{"name": "Ada"}',
        "--json",
        url=pod.url,
    )
    assert json.loads(shortcut.stdout)["globalPosition"] == 3
    lines = "\n".join(json.dumps({"type": "bulk.item", "data": {"i": i}}) for i in range(2500))
    bulk = cli("append", "clitest", "bulk-1", "--json", url=pod.url, stdin=lines + "\n\n")
    assert bulk.returncode == 0, bulk.stderr
    results = [json.loads(x) for x in bulk.stdout.splitlines()]
    assert [r["eventsWritten"] for r in results] == [1000, 1000, 500]  # three atomic batches
    assert results[-1]["globalPosition"] == 2503

    history = cli("tail", "clitest", "--from", "earliest", "--json", "--no-follow", url=pod.url)
    assert history.returncode == 0, history.stderr
    events = [json.loads(x) for x in history.stdout.splitlines()]
    assert [e["globalPosition"] for e in events] == list(range(1, 2504))
    assert events[0]["type"] == "order.placed" and events[0]["data"]["total"] == 12.5
    assert events[2]["data"] == {"name": "Ada"}

    filtered = cli(
        "tail",
        "clitest",
        "--filter",
        "order.*",
        "--filter",
        "user.*",
        "--from",
        "1",
        "--json",
        "--no-follow",
        url=pod.url,
    )
    assert [json.loads(x)["globalPosition"] for x in filtered.stdout.splitlines()] == [2, 3]
    # The same over Server-Sent Events, and from a time (before everything: all of it).
    over_sse = cli(
        "tail", "clitest", "--sse", "--from", "earliest", "--json", "--no-follow", url=pod.url
    )
    assert over_sse.returncode == 0, over_sse.stderr
    assert over_sse.stdout == history.stdout
    since = cli(
        "tail",
        "clitest",
        "--sse",
        "--filter",
        "order.*",
        "--from",
        "2000-01-01T00:00:00Z",
        "--json",
        "--no-follow",
        url=pod.url,
    )
    assert since.returncode == 0, since.stderr
    assert [json.loads(x)["globalPosition"] for x in since.stdout.splitlines()] == [1, 2]
    pretty = cli("read", "clitest", "order-1", url=pod.url)
    assert pretty.returncode == 0
    assert "order.placed" in pretty.stdout and "order.shipped" in pretty.stdout
    read_json = cli("read", "clitest", "bulk-1", "--from", "2490", "--json", url=pod.url)
    assert [json.loads(x)["streamPosition"] for x in read_json.stdout.splitlines()] == list(
        range(2490, 2500)
    )


def test_json_output_is_whole_for_a_slow_reader_in_unbuffered_mode(pod: Pod) -> None:
    """``PYTHONUNBUFFERED`` (deploy/Dockerfile sets it) and a reader slower than the command: the
    pipe fills while results of ~130 KiB each are printed. Once printed only the first 64 KiB of
    each (the text layer ignored a partial write of the raw file); every line must be whole."""
    lines = "\n".join(json.dumps({"type": "bulk.item", "data": {"i": i}}) for i in range(2500))
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", "DELTAGATE_URL": pod.url}
    env.pop("DELTAGATE_API_KEY", None)
    with subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "append", "slowread", "bulk-1", "--json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write((lines + "\n").encode())
        proc.stdin.close()
        threading.Event().wait(2.0)  # not reading: the command's writes meet a full pipe
        out, err = proc.stdout.read(), proc.stderr.read()
        code = proc.wait(timeout=30)
    assert code == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["eventsWritten"] for r in results] == [1000, 1000, 500]


def test_tail_follows_live(pod: Pod) -> None:
    env = {**os.environ, "DELTAGATE_URL": pod.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "tail", "live", "--from", "earliest", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    seen: list[dict[str, Any]] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(json.loads(line))
            if len(seen) == 5:
                done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for i in range(5):
            appended = cli(
                "append", "live", f"s-{i}", "--type", "tick", "--data", f'{{"i": {i}}}', url=pod.url
            )
            assert appended.returncode == 0, appended.stderr
        assert done.wait(15), f"tail printed {len(seen)} of 5 events"
        assert [e["data"]["i"] for e in seen] == list(range(5))
        assert [e["globalPosition"] for e in seen] == [1, 2, 3, 4, 5]
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_tail_without_follow_from_beyond_the_head_replays_after_the_reset(pod: Pod) -> None:
    """`tail --from N --no-follow` with N beyond the head printed nothing and exited 0 (the
    iteration ended at `subscribed`, before the reset that follows it), where with follow it
    says so and replays the store's history. Now it does that too, up to the head."""
    for n in range(3):
        done = cli("append", "beyond", f"s-{n}", "--type", "t", url=pod.url)
        assert done.returncode == 0, done.stderr
    for start in ("10", "4"):
        tail = cli("tail", "beyond", "--from", start, "--json", "--no-follow", url=pod.url)
        assert tail.returncode == 0, tail.stderr
        assert [json.loads(x)["globalPosition"] for x in tail.stdout.splitlines()] == [1, 2, 3]
        assert "history started again (position-ahead)" in tail.stderr, tail.stderr
    # At the head, or live only: nothing to replay, and no reset.
    for start in ("3", "latest"):
        tail = cli("tail", "beyond", "--from", start, "--json", "--no-follow", url=pod.url)
        assert (tail.returncode, tail.stdout) == (0, ""), tail.stderr
        assert "started again" not in tail.stderr


def test_errors_are_one_line_with_meaningful_exit_codes(pod: Pod) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    # (arguments, DELTAGATE_URL, stdin, exit code, text the line must hold)
    cases: list[tuple[list[str], str | None, str | None, int, str]] = [
        # Bad usage: exit 2.
        (["tail", "orders", "--bogus"], pod.url, None, 2, "--bogus"),
        (["bogus"], pod.url, None, 2, "No such command 'bogus'"),  # at the top level too
        (["--bogus", "stores"], pod.url, None, 2, "--bogus"),
        (["tail", "orders", "--from", "yesterday"], pod.url, None, 2, "--from"),
        (["tail"], pod.url, None, 2, "Missing argument"),
        (["append", "orders", "s", "{not json"], pod.url, None, 2, "invalid JSON"),
        (["append", "orders", "s", '{"data": {}}'], pod.url, None, 2, "type"),
        (["append", "orders", "s", "--type", "t", "--data", "[1]"], pod.url, None, 2, "--data"),
        (["append", "orders", "s"], pod.url, "", 2, "no events"),
        (["stores", "frobnicate"], pod.url, None, 2, "frobnicate"),
        (["stores", "delete", "orders"], pod.url, "", 2, "--yes"),
        (["read", "orders", "s", "--url", "ftp://x"], None, None, 2, "--url"),
        # The server or the network says no: exit 1.
        (["read", "orders", "s"], down, None, 1, "cannot reach deltagate"),
        (["tail", "orders"], down, None, 1, "cannot reach deltagate"),
        (["append", "orders", "s", "--type", "t"], down, None, 1, "cannot reach deltagate"),
        (["stores"], down, None, 1, "cannot reach deltagate"),
        (["stores", "show", "nosuchstore"], pod.url, None, 1, "EVENT_STORE_NOT_FOUND"),
        (
            ["append", "conflicts", "s", "--type", "t", "--expected-version", "5"],
            pod.url,
            None,
            1,
            "STREAM_VERSION_CONFLICT",
        ),
    ]
    with ThreadPoolExecutor(4) as pool:  # each case is a process start: run a few at once
        runs = list(pool.map(lambda c: cli(*c[0], url=c[1], stdin=c[2]), cases))
    for (args, _, _, code, text), done in zip(cases, runs, strict=True):
        line = one_error_line(done, code)
        assert text in line, (args, line)


def test_keys_create_never_widens_an_empty_store_list(redis_server: RedisServer) -> None:
    """`--stores ""` once made a key for every store: an empty list is a usage error (exit 2),
    and no key is made."""
    env = {"DELTAGATE_REDIS_URL": redis_server.url}
    redis_server.client().flushall()
    base = ["keys", "create", "--name", "scoped", "--permissions", "read:events"]
    for stores in ("", " ", ",", " , "):
        line = one_error_line(cli(*base, "--stores", stores, env=env), 2)
        assert "--stores" in line, line
    line = one_error_line(cli("keys", "create", "--name", "x", "--permissions", "read", env=env), 2)
    assert "permission" in line
    listed = cli("keys", "list", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stdout
    made = cli(*base, "--stores", "alpha, beta", "--json", env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["stores"] == ["alpha", "beta"]
    everywhere = cli(*base, "--json", env=env)
    assert json.loads(everywhere.stdout)["stores"] is None
    # The table shows each id whole, however narrow the output: it is what `keys revoke`
    # takes (60 columns cut it to "9d5ea68d5…").
    narrow = cli("keys", "list", env={**env, "COLUMNS": "60"})
    assert narrow.returncode == 0, narrow.stderr
    for key in json.loads(cli("keys", "list", "--json", env=env).stdout):
        assert key["id"] in narrow.stdout, narrow.stdout


def test_keys_create_refuses_a_lifetime_of_nothing(redis_server: RedisServer) -> None:
    """`--expires 0d` once made a key that never expires (a zero read as "unset"): a lifetime of
    nothing is a usage error, and no key is made; a real one sets expiresAt."""
    env = {"DELTAGATE_REDIS_URL": redis_server.url}
    redis_server.client().flushall()
    base = ["keys", "create", "--name", "short", "--permissions", "read:events"]
    for lifetime in ("0d", "0s", "0h", "00m"):
        line = one_error_line(cli(*base, "--expires", lifetime, env=env), 2)
        assert "--expires" in line, line
    listed = cli("keys", "list", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stdout
    made = cli(*base, "--expires", "1h", "--json", env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["expiresAt"] is not None


def test_keys_create_refuses_a_lifetime_past_the_calendar(redis_server: RedisServer) -> None:
    """`--expires 3000000d` once stored a key whose expiry is past datetime's range: `--json`
    then failed with a traceback after storing it, and `keys list` failed for every key. Such a
    lifetime is a usage error before anything is stored, and a listing shows an expiry already
    stored out of range instead of failing."""
    from broker import ApiKey
    from broker.keys import API_KEYS

    env = {"DELTAGATE_REDIS_URL": redis_server.url}
    redis_server.client().flushall()
    base = ["keys", "create", "--name", "forever", "--permissions", "read:events"]
    for lifetime in ("3000000d", "36501d", "5300w"):
        line = one_error_line(cli(*base, "--expires", lifetime, "--json", env=env), 2)
        assert "--expires" in line and "36500d" in line, line
    listed = cli("keys", "list", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stdout
    made = cli(*base, "--expires", "36500d", "--json", env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["expiresAt"].startswith("2")

    old = ApiKey("0ld0ld0ld0ld", "old", ("read:events",), None, 1.0, 3e11, "0" * 64)
    redis_server.client().hset(API_KEYS, old.id, old.encode())
    rows = cli("keys", "list", "--json", env=env)
    assert rows.returncode == 0, rows.stderr
    expiries = {r["name"]: r["expiresAt"] for r in json.loads(rows.stdout)}
    assert expiries["old"] == "9999-12-31T23:59:59Z", expiries
    table = cli("keys", "list", env=env)
    assert table.returncode == 0 and "9999-12-31" in table.stdout, table.stderr


def test_demo_orders_generates_a_plausible_stream(pod: Pod) -> None:
    done = cli(
        "demo", "orders", "--rate", "200", "--count", "40", "--seed", "3", "--quiet", url=pod.url
    )
    assert done.returncode == 0, done.stderr
    history = cli("tail", "orders", "--from", "earliest", "--json", "--no-follow", url=pod.url)
    events = [json.loads(x) for x in history.stdout.splitlines()]
    assert len(events) == 40
    status: dict[str, str] = {}
    for event in events:
        order_id = event["data"]["orderId"]
        assert event["streamId"] == order_id
        before = status.get(order_id)
        if event["type"] == "order.placed":
            assert before is None
            assert event["data"]["totalAmount"] > 0 and event["data"]["customerId"]
        elif event["type"] == "order.shipped":
            assert before == "order.placed"
        else:
            assert (event["type"], before) == ("order.delivered", "order.shipped")
        status[order_id] = event["type"]
    assert {"order.placed", "order.shipped", "order.delivered"} <= set(status.values()) | {
        e["type"] for e in events
    }


@pytest.mark.timeout(150)  # some 30 process starts, 4 at a time: on a busy CI host, 60 s and more
def test_a_pod_refuses_a_bad_start_in_words(redis_server: RedisServer, tmp_path: Any) -> None:
    """``deltagate serve`` and ``deltagate dispatcher`` with settings or a ``--config`` file
    they cannot use: an ``error:`` line per problem and exit 2, never a traceback (checked
    before anything starts)."""
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "eventStores": [
                    {
                        "name": "cfg",
                        "subscriptions": [
                            {
                                "id": "a",
                                "eventFilter": "x",
                                "subscriberType": "webhook",
                                "webhook": {"url": "https://example.com/x", "timeout": 0},
                            }
                        ],
                    }
                ]
            }
        )
    )
    broken = tmp_path / "broken.json"
    broken.write_text('{"eventStores": [')
    unset = tmp_path / "unset.yaml"
    unset.write_text("eventStores: [{name: '${NOT_SET_ANYWHERE_43}'}]")
    colour = tmp_path / "colour.yaml"
    colour.write_text("eventStores: [{name: orders, colour: red}]")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x00\xff\xfe")
    latin = tmp_path / "latin.key"
    latin.write_bytes(b"caf\xe9-key\n")
    empty = tmp_path / "empty.key"
    empty.write_text(" \n")
    redis_url = redis_server.url
    port = str(free_port())
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (["serve", "--port", port, "--config", str(bad)], {}, "webhook.timeout"),
        (["serve", "--port", port, "--config", str(broken)], {}, "not valid JSON"),
        (["serve", "--port", port, "--config", str(tmp_path / "none.json")], {}, "cannot read"),
        # Each line names the file (it said only "error: cannot read it: ...").
        (
            ["serve", "--port", port],
            {"DELTAGATE_CONFIG": str(tmp_path / "none.json")},
            f"error: config file {tmp_path / 'none.json'}: cannot read it: No such file",
        ),
        (
            ["serve", "--port", port, "--config", str(unset)],
            {},
            f"error: config file {unset}: environment variable NOT_SET_ANYWHERE_43 is not set",
        ),
        (
            ["serve", "--port", port, "--config", str(colour)],
            {},
            f"error: config file {colour}: eventStores[0]: unknown field(s) colour",
        ),
        (["serve", "--port", port], {"DELTAGATE_REDIS_URL": "http://x"}, "redis_url"),
        (["serve", "--port", port], {"DELTAGATE_REDIS_URL": "redis://h:port/0"}, "redis_url"),
        # a database that is no number was taken as none (db 0), a typo using another database
        (["serve", "--port", port], {"DELTAGATE_REDIS_URL": "redis://h:1/abc"}, "not a number"),
        # a port that is no number passed, then failed every lifecycle run with a traceback
        (
            ["serve", "--port", port],
            {"DELTAGATE_REDIS_URL": redis_url, "DELTAGATE_ARCHIVE_URL": "postgresql://h:x/db"},
            "archive_url",
        ),
        # a file that is not UTF-8 text: a UnicodeDecodeError traceback
        (
            ["serve", "--port", port, "--config", str(binary)],
            {},
            f"error: config file {binary}: not UTF-8 text",
        ),
        (["dispatcher"], {"DELTAGATE_REDIS_URL": "http://x"}, "redis_url"),
        # inf passed every bound, then int(inf) failed the start with a traceback
        (["serve", "--port", port], {"DELTAGATE_GRACE_PERIOD": "inf"}, "grace_period"),
        (["serve", "--port", port], {"DELTAGATE_DRAIN_SECONDS": "inf"}, "drain_seconds"),
        (["dispatcher"], {"DELTAGATE_GRACE_PERIOD": "nan"}, "grace_period"),
        (["serve", "--port", port], {"DELTAGATE_LOG_LEVEL": "verbose"}, "log_level"),
        (["dispatcher"], {"DELTAGATE_LOG_LEVEL": "verbose"}, "log_level"),
        (
            ["serve", "--port", port],
            {"DELTAGATE_HOT_RETENTION_MAX_AGE_SECONDS": "99999999999"},
            "hot_retention_max_age_seconds",
        ),
        (
            ["serve", "--port", port],
            {"DELTAGATE_REDIS_URL": redis_url, "DELTAGATE_ADMIN_KEY_FILE": "/nonexistent"},
            "admin_key_file",
        ),
        # A key file that is not UTF-8 failed the start with a traceback; an empty one started
        # a pod without the admin key its operator meant to set.
        (
            ["serve", "--port", port],
            {"DELTAGATE_REDIS_URL": redis_url, "DELTAGATE_ADMIN_KEY_FILE": str(latin)},
            f"DELTAGATE_ADMIN_KEY_FILE {latin}: not UTF-8 text",
        ),
        (
            ["serve", "--port", port],
            {"DELTAGATE_REDIS_URL": redis_url, "DELTAGATE_ADMIN_KEY_FILE": str(empty)},
            f"DELTAGATE_ADMIN_KEY_FILE {empty}: holds no key",
        ),
    ]
    with ThreadPoolExecutor(4) as pool:  # each case is a process start: run a few at once
        runs = list(pool.map(lambda c: cli(*c[0], env=c[1]), cases))
    for (args, _, text), done in zip(cases, runs, strict=True):
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines and all(line.startswith("error: ") for line in lines), (args, lines)
        assert any(text in line for line in lines), (args, lines)


def test_a_redis_that_refuses_the_connection_fails_the_start_in_words(
    redis_server: RedisServer,
) -> None:
    """A DELTAGATE_REDIS_URL whose database the server lacks (``/99``) failed ``serve``'s start
    with a traceback and left ``dispatcher`` logging one every second: both now say it in a
    line and exit 3, as a start that failed for a reason the operator can fix."""
    env = {
        "DELTAGATE_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/99",
        "DELTAGATE_DISPATCHER_PORT": str(free_port()),
    }
    for command in (["serve", "--port", str(free_port())], ["dispatcher"]):
        done = cli(*command, env=env)
        assert done.returncode == 3, (command, done.stderr)
        assert "could not start: Redis refused the connection: DB index is out of range" in (
            done.stderr
        ), done.stderr
        assert "Traceback" not in done.stderr, done.stderr
    for command in (["keys", "list"], ["doctor"]):  # (they printed a traceback)
        line = one_error_line(cli(*command, env=env), 1)
        assert "Redis refused the request: DB index is out of range" in line


def test_cluster_mode_for_a_server_that_is_no_cluster_fails_in_words(
    redis_server: RedisServer,
) -> None:
    """DELTAGATE_REDIS_MODE=cluster naming a plain server: every command says so in a line (a
    start that failed: exit 3; a command: 1), never with redis-py's traceback."""
    env = {
        "DELTAGATE_REDIS_URL": redis_server.url,
        "DELTAGATE_REDIS_MODE": "cluster",
        "DELTAGATE_DISPATCHER_PORT": str(free_port()),
    }
    for command in (["serve", "--port", str(free_port())], ["dispatcher"]):
        done = cli(*command, env=env)
        assert done.returncode == 3, (command, done.stderr)
        assert "could not start: Redis refused the connection:" in done.stderr, done.stderr
        assert "Cluster mode is not enabled" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
    for command in (["keys", "list"], ["doctor"]):
        line = one_error_line(cli(*command, env=env), 1)
        assert "Cluster mode is not enabled" in line


def test_a_dispatcher_whose_port_is_taken_stops_at_once(redis_server: RedisServer) -> None:
    """A dispatcher whose status port was taken said "the server did not start; stopping",
    then waited out DELTAGATE_GRACE_PERIOD (30 s) for its main task before exiting 3: that
    task is now asked to stop as a signal would, and it has nothing to drain yet."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        env = {
            "DELTAGATE_REDIS_URL": redis_server.url,
            "DELTAGATE_DISPATCHER_PORT": str(taken.getsockname()[1]),
            "DELTAGATE_GRACE_PERIOD": "25",
        }
        started = time.monotonic()
        done = cli("dispatcher", env=env)
        took = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "the server did not start" in done.stderr, done.stderr
    assert took < 10, f"{took:.1f} s"
