"""``deltagate dispatcher`` (one webhook dispatcher replica) and ``deltagate apply FILE`` (a
config file's stores and subscriptions, written to the deployment's Redis)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import (
    config_refused,
    deployment_settings,
    fail,
    planned_config,
    print_json,
    run,
    warn_unknown_variables,
    with_redis,
)


def dispatcher() -> None:
    """Run one webhook dispatcher replica on the deployment's Redis (DELTAGATE_* settings).
    Serves /metrics, /healthz and /readyz on DELTAGATE_DISPATCHER_PORT (default 8788); SIGTERM
    drains and exits 0."""
    from .. import logs

    settings = deployment_settings("the dispatcher")
    logs.configure(settings.log_level, settings.log_json)
    warn_unknown_variables()
    from ..dispatcher.process import serve_dispatcher  # (after the settings are checked)

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per delivery
    raise typer.Exit(run(lambda: serve_dispatcher(settings)))


def apply(
    file: Annotated[Path, typer.Argument(help="YAML or JSON: {eventStores: [{name, ...}]}")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON")] = False,
) -> None:
    """Create the stores and webhook subscriptions FILE declares (idempotent: nothing is
    created twice, changed subscriptions are updated in place, nothing is deleted)."""
    from broker import eviction_problem

    from ..config_file import ConfigError
    from ..config_file import apply as apply_plans

    settings = deployment_settings("apply")
    plans = planned_config(file, settings.webhook_targets)  # (checked before Redis is asked)

    async def go(client: Any) -> list[Any]:
        problem = await eviction_problem(client)
        if problem is not None:  # (what a pod refuses to write into too)
            fail(f"not applying: {problem}")
        return await apply_plans(client, plans)

    try:
        done = with_redis(settings, go)
    except ConfigError as exc:
        config_refused(exc)
    lines = [
        {
            "eventStoreName": d.store,
            "subscriptionId": d.subscription,
            "outcome": d.outcome,
            **({"signingSecret": d.secret} if d.secret else {}),
        }
        for d in done
    ]
    if json_output:
        print_json(lines)
        return
    for line in lines:
        sub = line["subscriptionId"]
        what = f"{line['eventStoreName']}/{sub}" if sub else f"{line['eventStoreName']} (store)"
        typer.echo(f"{line['outcome']:<10} {what}")
        if "signingSecret" in line:
            typer.echo(f"           signing secret (shown once): {line['signingSecret']}")
