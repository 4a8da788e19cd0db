"""``deltagate doctor``: is this deployment's Redis (and archive) safe for an event log? Each check
prints ok, warn or FAIL with what to fix; the exit status is 1 if any check failed.

Checks: Redis answers and is new enough; ``maxmemory-policy`` is ``noeviction`` on every node;
persistence (AOF and its fsync) so an acknowledged append survives a restart; memory headroom; the
archive answers and keeps up with each store; retention's view of each store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import typer

from .common import console, deployment_settings, print_json, with_redis

Level = Literal["ok", "warn", "FAIL"]
MIN_VERSION = (7, 0)
HEADROOM_WARN = 0.2
LAG_WARN = 100_000


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    check: str
    message: str


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


async def _redis_findings(client: Any) -> list[Finding]:
    from broker import SAFE_POLICY, nodes_info, policy_problem

    found: list[Finding] = []
    server = await nodes_info(client, "server")
    versions = sorted(str(n.get("redis_version", "0")) for n in server)
    oldest = versions[0] if versions else "0"
    if _version(oldest) < MIN_VERSION:
        found.append(Finding("FAIL", "redis version", f"Redis {oldest}: deltagate needs 7.0+"))
    else:
        found.append(Finding("ok", "redis version", f"Redis {oldest}"))
    memory = await nodes_info(client, "memory")
    bad = sorted({str(n.get("maxmemory_policy")) for n in memory} - {SAFE_POLICY})
    if bad:
        found.append(Finding("FAIL", "eviction policy", policy_problem(bad[0])))
    else:
        found.append(Finding("ok", "eviction policy", f"maxmemory-policy {SAFE_POLICY}"))
    for node in memory:
        used, limit = int(node.get("used_memory", 0)), int(node.get("maxmemory", 0))
        if not limit:
            found.append(
                Finding(
                    "warn",
                    "memory",
                    f"no maxmemory: Redis uses {used / 2**20:.0f} MiB and would grow until the "
                    "machine kills it; set maxmemory below the container's limit",
                )
            )
        elif used / limit > 1 - HEADROOM_WARN:
            found.append(
                Finding(
                    "warn",
                    "memory",
                    f"{used / limit:.0%} of maxmemory used: add retention (hotRetention, an "
                    "archive) or memory before appends answer 507",
                )
            )
        else:
            found.append(Finding("ok", "memory", f"{used / limit:.0%} of maxmemory used"))
    persistence = await nodes_info(client, "persistence")
    if not all(int(n.get("aof_enabled", 0)) for n in persistence):
        found.append(
            Finding(
                "warn",
                "persistence",
                "AOF is off: a restart loses every append since the last snapshot (clients "
                "then get a reset); set appendonly yes",
            )
        )
    else:
        fsync = await _config(client, "appendfsync")
        level: Level = "ok" if fsync in ("always", "everysec", None) else "warn"
        found.append(
            Finding(
                level,
                "persistence",
                f"AOF on, appendfsync {fsync or 'unknown (CONFIG not allowed)'}"
                + ("" if level == "ok" else ": set everysec or always"),
            )
        )
    return found


async def _config(client: Any, name: str) -> str | None:
    try:
        reply = await client.config_get(name)
    except Exception:  # managed Redis often forbids CONFIG: say unknown, never fail on it
        return None
    if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
        reply = next(iter(reply.values()))
    return None if not reply else str(reply.get(name))


async def _store_findings(client: Any, archive_url: str | None) -> list[Finding]:
    from broker import Archive, BrokerError, StoreAdmin

    found: list[Finding] = []
    archive = None if archive_url is None else Archive(archive_url)
    try:
        if archive is not None:
            try:
                await archive.ping()
                found.append(Finding("ok", "archive", "PostgreSQL answers"))
            except BrokerError as exc:
                found.append(Finding("FAIL", "archive", exc.message))
                archive = None
        else:
            found.append(
                Finding(
                    "warn",
                    "archive",
                    "no DELTAGATE_ARCHIVE_URL: Redis holds the whole log (or hotRetention "
                    "deletes what leaves it)",
                )
            )
        for store in await StoreAdmin(client).list():
            lag = store.head_position - store.archived
            detail = (
                f"{store.total_events} events (positions {store.oldest}..{store.head_position}),"
                f" {store.hot_events} in Redis"
            )
            if archive_url is not None:
                detail += f", {store.archived_events} archived, {lag} to archive"
            level: Level = "warn" if archive_url is not None and lag > LAG_WARN else "ok"
            found.append(Finding(level, f"store {store.name}", detail))
    finally:
        if archive is not None:
            await archive.close()
    return found


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON")] = False,
) -> None:
    """Check the deployment's Redis and archive (DELTAGATE_* settings) and say what to fix."""
    settings = deployment_settings("doctor")

    async def go(client: Any) -> list[Finding]:
        return [
            *await _redis_findings(client),
            *await _store_findings(client, settings.archive_url),
        ]

    findings = with_redis(settings, go)
    if as_json:
        print_json([{"level": f.level, "check": f.check, "message": f.message} for f in findings])
    else:
        out = console()
        styles = {"ok": "green", "warn": "yellow", "FAIL": "bold red"}
        for f in findings:
            out.print(f"[{styles[f.level]}]{f.level:<4}[/] {f.check}: ", end="")
            out.print(f.message, markup=False, highlight=False)
    if any(f.level == "FAIL" for f in findings):
        raise typer.Exit(1)
