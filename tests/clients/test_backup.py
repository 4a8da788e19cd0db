"""``deltagate export`` / ``import`` and ``doctor`` against a real pod, Redis and PostgreSQL: an
exact round trip, resumable both ways, across the archive boundary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import redis

from tests.harness import ROOT, Pod, spawn_pods, wait_for

STORE = "books"


def cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=120,
    )


def lines_of(text: str) -> list[str]:
    """NDJSON lines (not str.splitlines: that also splits at the U+2028 the data holds)."""
    return text.split("\n")[:-1]


def fill(pod: Pod, n: int) -> None:
    with httpx.Client(base_url=pod.url, timeout=10) as http:
        for start in range(0, n, 100):
            events = [
                {
                    "type": "book.lent" if i % 2 else "book.returned",
                    "data": {"n": start + i, "title": "Zoë's 流 \u2028 book", "x": 1.5e-7},
                    "metadata": {"by": "librarian"},
                }
                for i in range(100)
            ]
            response = http.post(
                f"/event-stores/{STORE}/streams/shelf-{(start // 100) % 4}", json={"events": events}
            )
            assert response.status_code == 201, response.text


def test_export_then_import_is_an_exact_round_trip_across_the_archive(
    pods: list[Pod], redis_url: str, archive_url: str, tmp_path: Path
) -> None:
    (pod,) = spawn_pods(
        pods, redis_url, 1, DELTAGATE_ARCHIVE_URL=archive_url, DELTAGATE_LIFECYCLE_INTERVAL="0.1"
    )
    httpx.post(
        f"{pod.url}/event-stores",
        json={"name": STORE, "settings": {"hotRetention": {"maxEvents": 300}}},
    ).raise_for_status()
    fill(pod, 2000)
    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_for(lambda: admin.xlen(f"dg:{{{STORE}}}:log") <= 300, timeout=60, what="archiving")

    first = tmp_path / "first.ndjson"
    done = cli("export", STORE, "--to", "1200", "--output", str(first), "--url", pod.url)
    assert done.returncode == 0, done.stderr
    assert len(lines_of(first.read_text())) == 1200
    # Cut the file mid-line, as an interrupted export would leave it, then resume.
    text = first.read_bytes()
    first.write_bytes(text[: len(text) - 37])
    done = cli("export", STORE, "--output", str(first), "--url", pod.url)
    assert done.returncode == 0, done.stderr
    lines = lines_of(first.read_text())
    assert [json.loads(line)["globalPosition"] for line in lines] == list(range(1, 2001))

    env = {"DELTAGATE_REDIS_URL": redis_url}
    half = "\n".join(lines[:700]) + "\n"
    done = cli("import", "copy", env=env, stdin=half)
    assert done.returncode == 0, done.stderr
    done = cli("import", "copy", "--input", str(first), env=env)  # resumes after 700
    assert done.returncode == 0, done.stderr
    assert "imported 1300 event(s)" in done.stderr

    second = tmp_path / "second.ndjson"
    done = cli("export", "copy", "--output", str(second), "--url", pod.url)
    assert done.returncode == 0, done.stderr
    assert second.read_text() == first.read_text()
    stream = httpx.get(f"{pod.url}/event-stores/copy/streams/shelf-2").json()
    assert stream["currentStreamVersion"] == 500
    appended = httpx.post(
        f"{pod.url}/event-stores/copy/streams/shelf-2",
        json={
            "events": [{"type": "book.lent", "data": {}}],
            "options": {"expectedStreamVersion": 500},
        },
    )
    assert appended.status_code == 201, appended.text
    assert appended.json()["globalPosition"] == 2001


def test_import_refuses_what_does_not_continue_the_log(
    pods: list[Pod], redis_url: str, tmp_path: Path
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1)
    fill(pod, 100)
    export = cli("export", STORE, "--url", pod.url)
    lines = lines_of(export.stdout)
    env = {"DELTAGATE_REDIS_URL": redis_url}
    gap = "\n".join(lines[:10] + lines[20:30]) + "\n"
    done = cli("import", "gappy", env=env, stdin=gap)
    assert done.returncode == 1
    assert (
        "line 11: globalPosition 21 does not continue the store's log (next is 11)" in done.stderr
    )
    done = cli("import", "bad", env=env, stdin='{"type": "x"}\n')
    assert done.returncode == 1 and "line 1: globalPosition is missing" in done.stderr
    done = cli("import", "bad", env=env, stdin="not json\n")
    assert done.returncode == 2 and "line 1: not JSON" in done.stderr
    done = cli("import", "bad", env=env, stdin=lines[0] + "\nnot json\n")
    assert done.returncode == 2 and "line 2: not JSON" in done.stderr
    # A refused file leaves no store behind (nothing half-written: not even an empty store).
    for name in ("gappy", "bad"):
        assert httpx.get(f"{pod.url}/event-stores/{name}").status_code == 404, name


def test_an_import_starting_mid_stream_lists_its_streams(
    pods: list[Pod], redis_url: str, tmp_path: Path
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1)
    fill(pod, 800)  # shelf-k: 1+100k..100+100k and 401+100k..500+100k
    part = tmp_path / "part.ndjson"
    done = cli("export", STORE, "--from", "451", "--output", str(part), "--url", pod.url)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in lines_of(part.read_text())]
    done = cli("import", "copy", "--input", str(part), env={"DELTAGATE_REDIS_URL": redis_url})
    assert done.returncode == 0, done.stderr

    copy = httpx.get(f"{pod.url}/event-stores/copy").json()["statistics"]
    assert (copy["totalStreams"], copy["headPosition"]) == (4, 800)
    streams = httpx.get(f"{pod.url}/event-stores/copy/streams").json()["streams"]
    first = {e["streamId"]: e for e in reversed(lines)}
    last = {e["streamId"]: e for e in lines}
    assert streams == [
        {
            "streamId": sid,
            "streamPosition": 199,
            "streamType": "shelf",
            "createdAt": first[sid]["createdAt"],
            "updatedAt": last[sid]["createdAt"],
        }
        for sid in ("shelf-0", "shelf-1", "shelf-2", "shelf-3")
    ]
    appended = httpx.post(
        f"{pod.url}/event-stores/copy/streams/shelf-1",
        json={
            "events": [{"type": "book.lent", "data": {}}],
            "options": {"expectedStreamVersion": 200},
        },
    )
    assert appended.status_code == 201, appended.text
    copy = httpx.get(f"{pod.url}/event-stores/copy").json()["statistics"]
    assert copy["totalStreams"] == 4


def test_import_refuses_a_store_holding_other_events(
    pods: list[Pod], redis_url: str, tmp_path: Path
) -> None:
    (pod,) = spawn_pods(pods, redis_url, 1)
    fill(pod, 100)
    exported = tmp_path / "books.ndjson"
    done = cli("export", STORE, "--output", str(exported), "--url", pod.url)
    assert done.returncode == 0, done.stderr
    env = {"DELTAGATE_REDIS_URL": redis_url}
    with httpx.Client(base_url=pod.url, timeout=10) as http:
        for n in (3, 100):  # fewer events than the file, then as many
            http.post("/event-stores", json={"name": f"other{n}"}).raise_for_status()
            events = [{"type": "book.lent", "data": {"n": i}} for i in range(n)]
            appended = http.post(f"/event-stores/other{n}/streams/shelf-0", json={"events": events})
            assert appended.status_code == 201, appended.text
            held = [http.get(f"/event-stores/other{n}{what}").json() for what in ("", "/events")]
            done = cli("import", f"other{n}", "--input", str(exported), env=env)
            assert done.returncode == 1, done.stderr
            assert "line 1: globalPosition 1 holds another event in the store" in done.stderr
            assert [http.get(f"/event-stores/other{n}{w}").json() for w in ("", "/events")] == held

    done = cli("import", "copy", "--input", str(exported), env=env)
    assert done.returncode == 0, done.stderr
    done = cli("import", "copy", "--input", str(exported), env=env)  # the same events: nothing
    assert done.returncode == 0 and "imported 0 event(s)" in done.stderr


def test_doctor_says_what_to_fix(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    env = {"DELTAGATE_REDIS_URL": redis_url}
    done = cli("doctor", "--json", env=env)
    findings = {f["check"]: f for f in json.loads(done.stdout)}
    assert findings["eviction policy"]["level"] == "ok"
    assert findings["archive"]["level"] == "warn"
    admin.config_set("maxmemory-policy", "volatile-lru")
    try:
        done = cli("doctor", env=env)
        assert done.returncode == 1
        assert "FAIL eviction policy" in done.stdout and "volatile-lru" in done.stdout
    finally:
        admin.config_set("maxmemory-policy", "noeviction")


def test_import_refuses_a_redis_that_may_evict(redis_url: str, tmp_path: Path) -> None:
    """Import writes the log as a pod does: not into a Redis that would evict it silently."""
    admin = redis.Redis.from_url(redis_url)
    exported = tmp_path / "one.ndjson"
    event = {
        "streamId": "shelf-0",
        "streamPosition": 0,
        "globalPosition": 1,
        "eventId": "9b2f3c1e-2d4a-4f6b-8c7d-1e2f3a4b5c6d",
        "type": "book.lent",
        "data": {"n": 1},
        "schemaVersion": 1,
        "transactionId": "tx-1",
        "createdAt": "2026-12-01T10:00:00.000Z",
    }
    exported.write_text(json.dumps(event) + "\n")
    env = {"DELTAGATE_REDIS_URL": redis_url}
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        done = cli("import", "evicting", "--input", str(exported), env=env)
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
    assert done.returncode == 1, done.stderr
    assert "not importing" in done.stderr and "allkeys-lru" in done.stderr
    assert admin.exists("dg:{evicting}:meta") == 0 and not admin.keys("*evicting*")
    done = cli("import", "evicting", "--input", str(exported), env=env)
    assert done.returncode == 0 and "imported 1 event(s)" in done.stderr, done.stderr


def test_import_compares_with_what_the_store_keeps_anywhere(
    pods: list[Pod], redis_url: str, archive_url: str, tmp_path: Path
) -> None:
    """A store that holds events takes a file only if the file holds them too (a resumed
    import): a file starting after its head is refused, and a file whose overlap the store keeps
    in its archive only is compared there (refused when it differs, or when the import has no
    archive to compare with), never imported as "nothing to do"."""
    (pod,) = spawn_pods(
        pods, redis_url, 1, DELTAGATE_ARCHIVE_URL=archive_url, DELTAGATE_LIFECYCLE_INTERVAL="0.1"
    )
    fill(pod, 100)  # the source: STORE, positions 1..100
    exported = tmp_path / "books.ndjson"
    done = cli("export", STORE, "--output", str(exported), "--url", pod.url)
    assert done.returncode == 0, done.stderr
    lines = lines_of(exported.read_text())
    env = {"DELTAGATE_REDIS_URL": redis_url}
    with httpx.Client(base_url=pod.url, timeout=10) as http:
        # A: a store of 3 events of its own; a file starting at 4 would merely "continue" it.
        http.post("/event-stores", json={"name": "mine"}).raise_for_status()
        own = [{"type": "book.lent", "data": {"n": i}} for i in range(3)]
        http.post("/event-stores/mine/streams/mine-1", json={"events": own}).raise_for_status()
        done = cli("import", "mine", env=env, stdin="\n".join(lines[3:10]) + "\n")
        assert done.returncode == 1, done.stderr
        assert "line 1: the store holds 3 event(s) already" in done.stderr
        assert http.get("/event-stores/mine").json()["statistics"]["headPosition"] == 3

        # B: a store of 10 events of its own, 9 of them in the archive only.
        settings = {"hotRetention": {"maxEvents": 1}}
        http.post("/event-stores", json={"name": "cold", "settings": settings}).raise_for_status()
        ten = [{"type": "book.lent", "data": {"n": i}} for i in range(10)]
        http.post("/event-stores/cold/streams/c-1", json={"events": ten}).raise_for_status()
        admin = redis.Redis.from_url(redis_url)
        wait_for(lambda: admin.xlen("dg:{cold}:log") == 1, timeout=30, what="archiving")
        eight = "\n".join(lines[:8]) + "\n"
        done = cli("import", "cold", env=env, stdin=eight)  # no archive to compare with
        assert done.returncode == 1, done.stderr
        assert "line 1: the store keeps globalPosition 1 in its archive" in done.stderr
        done = cli("import", "cold", env={**env, "DELTAGATE_ARCHIVE_URL": archive_url}, stdin=eight)
        assert done.returncode == 1, done.stderr
        assert "line 1: globalPosition 1 holds another event in the store" in done.stderr

    # The store's own export, imported back into it with the archive: the same events, nothing
    # to do (a resumed import that had finished).
    own_export = cli("export", "cold", "--url", pod.url)
    done = cli(
        "import", "cold", env={**env, "DELTAGATE_ARCHIVE_URL": archive_url}, stdin=own_export.stdout
    )
    assert done.returncode == 0 and "imported 0 event(s)" in done.stderr, done.stderr


def test_export_continues_only_a_file_of_the_same_store(
    pods: list[Pod], redis_url: str, tmp_path: Path
) -> None:
    """An ``--output`` that already held lines was continued after its last line without a look
    at whose events they were: another store's file got this store's later events appended (or
    nothing, exit 0). The file's last and first lines must be this store's events (same
    globalPosition, same eventId); otherwise exit 1, the file untouched."""
    (pod,) = spawn_pods(pods, redis_url, 1)
    fill(pod, 100)
    with httpx.Client(base_url=pod.url, timeout=10) as http:
        for n in (40, 110):
            events = [{"type": "other.thing", "data": {"i": i}} for i in range(n)]
            done = http.post(f"/event-stores/other{n}/streams/s", json={"events": events})
            assert done.status_code == 201, done.text
    files = {}
    for name in ("other40", "other110", STORE):
        files[name] = tmp_path / f"{name}.ndjson"
        done = cli("export", name, "--output", str(files[name]), "--url", pod.url)
        assert done.returncode == 0, done.stderr
    books = lines_of(files[STORE].read_text())
    mixed = tmp_path / "mixed.ndjson"  # this store's lines but for the first
    mixed.write_text("\n".join([lines_of(files["other40"].read_text())[0], *books[1:50]]) + "\n")
    cut = tmp_path / "cut.ndjson"  # another store's, cut short as an interrupted export
    cut.write_bytes(files["other40"].read_bytes() + b'{"globalPosition": 41, "eve')
    for path, which, position in [
        (files["other40"], "last", 40),  # appended this store's 41..100
        (files["other110"], "last", 110),  # exported nothing, exit 0
        (mixed, "first", 1),
        (cut, "last", 40),
    ]:
        before = path.read_bytes()
        done = cli("export", STORE, "--output", str(path), "--url", pod.url)
        assert done.returncode == 1, (path.name, done.stderr)
        assert f"is not an export of '{STORE}': its {which} line" in done.stderr, done.stderr
        assert f"at globalPosition {position}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert path.read_bytes() == before, path.name
    # The store's own file, cut short: continued (the cut line dropped), as before.
    own = tmp_path / "own.ndjson"
    own.write_text("\n".join(books[:60]) + "\n" + books[60][:30])
    done = cli("export", STORE, "--output", str(own), "--url", pod.url)
    assert done.returncode == 0, done.stderr
    assert own.read_text() == files[STORE].read_text()


class OvertakenStore:
    """A stand-in for the REST client: a store of 300 events whose retention deletes 101..200
    while an export reads it (the second page starts at 201, with ``truncatedBefore``)."""

    def __init__(self) -> None:
        self.reads: list[int] = []

    async def __aenter__(self) -> OvertakenStore:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def get_store(self, store: str) -> dict[str, object]:
        return {"statistics": {"headPosition": 300}}

    async def query(self, store: str, *, from_position: int, **_: object) -> dict[str, object]:
        self.reads.append(from_position)
        first = from_position if from_position <= 100 else 201
        last = 100 if from_position <= 100 else 300
        page: dict[str, object] = {
            "events": [
                {"globalPosition": p, "eventId": f"e{p}", "type": "t"}
                for p in range(first, last + 1)
            ]
        }
        if first > from_position:
            page["truncatedBefore"] = first
        return page


def test_an_export_overtaken_by_retention_stops_at_the_hole(monkeypatch, tmp_path: Path) -> None:
    """Events deleted between two pages once left a hole in the file (exit 0, no word), which
    ``import`` then refused. The export stops before the hole with exit 1 and says why, the file
    a whole prefix; continuing that file cannot step over the hole either."""
    from typer.testing import CliRunner

    from gateway.cli import app
    from gateway.cli import backup as backup_module

    monkeypatch.setattr(backup_module, "PAGE", 100)
    monkeypatch.setattr(backup_module, "client_for", lambda url, key: OvertakenStore())
    out = tmp_path / "backup.jsonl"
    for _ in range(2):  # a fresh export, then one continuing the file
        result = CliRunner().invoke(app, ["export", STORE, "-o", str(out)])
        assert result.exit_code == 1, result.output
        assert "retention deleted events 101..200" in result.output, result.output
        positions = [json.loads(line)["globalPosition"] for line in lines_of(out.read_text())]
        assert positions == list(range(1, 101))
    # A store whose history was already gone when the export started: what is kept, exit 0.
    fresh = tmp_path / "from-101.jsonl"
    result = CliRunner().invoke(app, ["export", STORE, "--from", "101", "-o", str(fresh)])
    assert result.exit_code == 0, result.output
    positions = [json.loads(line)["globalPosition"] for line in lines_of(fresh.read_text())]
    assert positions == list(range(201, 301))
