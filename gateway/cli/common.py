"""The one convention every ``deltagate`` command follows.

- Errors are one line on stderr, ``error: ...``. Exit codes: 2 for bad usage (flags, arguments,
  input, settings), 1 for what the server, Redis or the network said, 130 for Ctrl-C, 0 when a
  reader of our output went away (``| head``).
- ``--json`` prints JSON documents, one per line, and nothing else on stdout.
- Commands that talk to a deployment over its API take ``--url`` and ``--api-key`` (environment:
  ``DELTAGATE_URL``, ``DELTAGATE_API_KEY``) and use the Python client; the few that act on the
  deployment's Redis directly (``keys``, ``apply``) read the server's ``DELTAGATE_*`` settings.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from deltagate_client import DEFAULT_URL, DeltaGateClient, DeltaGateError, ws_base
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from ..settings import Settings

T = TypeVar("T")

USAGE = 2
FAILED = 1
INTERRUPTED = 130

__all__ = ["DEFAULT_URL"]

# -- one-line errors ---------------------------------------------------------------------------

# typer >= 0.22 carries its own copy of click: take its UsageError from typer itself.
UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def fail(message: str, code: int = FAILED) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def usage(message: str) -> NoReturn:
    fail(message, USAGE)


def config_refused(exc: Any) -> NoReturn:
    """A config file that cannot be applied (``config_file.ConfigError``): an ``error:`` line
    per problem, each naming the file (or the subscription Redis refused), and the usage
    exit."""
    for problem in exc.problems[:-1]:
        typer.echo(f"error: {exc.where}: {problem}", err=True)
    usage(f"{exc.where}: {exc.problems[-1]}")


def planned_config(path: Path, targets: Any) -> Any:
    """The plans of a config file, the whole file checked before anything is applied
    (``deltagate apply``, ``deltagate serve --config``); refused with ``config_refused``."""
    from ..config_file import ConfigError, checked

    try:
        return checked(path, targets=targets)
    except ConfigError as exc:
        config_refused(exc)


def _usage_exit(exc: Any) -> NoReturn:
    ctx = exc.ctx
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    usage(f"{exc.format_message()}{hint}")


class _OneLineUsage:
    """Usage errors as one line on stderr (typer's default is a rich panel)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc, no-any-return]
        except UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            _usage_exit(exc)


class Command(_OneLineUsage, TyperCommand):
    pass


class Group(_OneLineUsage, TyperGroup):
    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            _usage_exit(exc)


def group(help_text: str, **options: Any) -> typer.Typer:
    """A command group following the convention."""
    return typer.Typer(cls=Group, help=help_text, add_completion=False, **options)


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one command's coroutine, turning what can go wrong into one line and an exit code."""
    from redis.exceptions import RedisClusterException, RedisError

    from broker import BrokerError

    from .. import process

    try:
        return process.run(make())
    except DeltaGateError as exc:
        if exc.code in ("CONNECTION_ERROR", "TIMEOUT"):
            fail(exc.message)
        fail(f"{exc.code}: {exc.message}" if exc.message else exc.code)
    except BrokerError as exc:
        fail(exc.message)
    except (RedisError, RedisClusterException) as exc:
        # What Redis itself refused (a lost or busy one is a BrokerError): a URL's database out
        # of range, a Cluster mode setting for a node that is no Cluster's.
        fail(f"Redis refused the request: {exc}")
    except KeyboardInterrupt:
        raise typer.Exit(INTERRUPTED) from None
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly. Point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


# -- the deployment's settings (commands that act on its Redis) ------------------------------


def settings_from(**overrides: Any) -> Settings:
    """``DELTAGATE_*`` settings with CLI flags on top; bad settings are a usage error."""
    from pydantic import ValidationError

    from ..settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        usage(f"invalid settings: {problems}")


def warn_unknown_variables() -> None:
    """Say which ``DELTAGATE_*`` variables look like a setting's name misspelt (after logging
    is configured, and once the start cannot fail on its settings): a misspelt setting would
    otherwise leave its default in place without a word."""
    from ..settings import unknown_variables

    unknown = unknown_variables(os.environ)
    if unknown:
        logging.getLogger("deltagate.settings").warning(
            "ignoring DELTAGATE_* variables that look like misspelt settings: "
            + ", ".join(unknown),
            extra={"variables": unknown},
        )


def deployment_settings(what: str) -> Settings:
    """Settings of a command that needs the deployment's own Redis (not the embedded one)."""
    settings = settings_from()
    if settings.embedded:
        usage(
            f"{what} needs DELTAGATE_REDIS_URL (the deployment's Redis); the embedded dev server "
            "keeps its data inside its own process"
        )
    return settings


def with_redis(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(client)`` against the deployment's Redis, with ``run``'s error handling."""
    from broker import connect

    async def go() -> T:
        client = connect(settings.redis)
        try:
            return await action(client)
        finally:
            await client.aclose()

    return run(go)


# -- commands that use the API -----------------------------------------------------------------

Url = Annotated[
    str,
    typer.Option(
        "--url", envvar="DELTAGATE_URL", help="The deployment's base URL [env DELTAGATE_URL]"
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="DELTAGATE_API_KEY",
        help="API key [env DELTAGATE_API_KEY]",
        show_default=False,
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON (one document per line)")]


def client_for(url: str, api_key: str | None) -> DeltaGateClient:
    try:
        ws_base(url)
    except ValueError:
        usage(f"--url must start with http:// or https://, got {url!r}")
    return DeltaGateClient(url, api_key=api_key or None)


def request(url: str, api_key: str | None, call: Callable[[DeltaGateClient], Awaitable[T]]) -> T:
    """One API call from a command, with ``run``'s error handling."""

    async def go() -> T:
        async with client_for(url, api_key) as client:
            return await call(client)

    return run(go)


# -- output ------------------------------------------------------------------------------------


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich exits 1 here; a reader that stopped reading is no error for us (see run()).
        self.quiet = True
        raise BrokenPipeError


def console(stderr: bool = False) -> Console:
    return _Console(stderr=stderr, highlight=False, soft_wrap=True)
