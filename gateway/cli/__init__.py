"""The ``deltagate`` command: one module per group of sub-commands, one convention for errors,
exit codes and ``--json`` (``common``)."""

from __future__ import annotations

import io
import signal
import sys


def _terminated_before_start(signum: int, frame: object) -> None:
    """SIGTERM to ``serve`` or ``dispatcher`` before it serves (``process.serve`` takes the
    signal over then): nothing is open, nothing to drain, so the process exits 0 as a drain
    would. Python's default killed it (status 143) for the second or so of imports and start-up,
    as when a Deployment is scaled down just after a pod was created."""
    sys.stderr.write("deltagate: SIGTERM before the server started: exiting\n")
    raise SystemExit(0)


if sys.argv[1:2] in (["serve"], ["dispatcher"]):  # (first: the imports below take the time)
    signal.signal(signal.SIGTERM, _terminated_before_start)

import typer  # noqa: E402

from . import backup, demo, doctor, events, keys, serve, stores, webhooks  # noqa: E402
from .common import Command, Group  # noqa: E402

app = typer.Typer(
    cls=Group,  # (its usage errors one line too, as its sub-commands')
    help="deltagate: a DeltaBase-compatible event store with live WebSocket streaming.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """deltagate: a DeltaBase-compatible event store with live WebSocket streaming."""


app.command("serve", cls=Command)(serve.serve)
app.command("dispatcher", cls=Command)(webhooks.dispatcher)
app.command("apply", cls=Command)(webhooks.apply)
app.add_typer(keys.keys_app, name="keys")
app.command("token", cls=Command)(keys.token)
app.add_typer(stores.stores_app, name="stores")
for _name, _command in (("append", events.append), ("read", events.read), ("tail", events.tail)):
    app.command(_name, cls=Command)(_command)
app.add_typer(demo.demo_app, name="demo")
app.command("export", cls=Command)(backup.export)
app.command("import", cls=Command)(backup.import_)
app.command("doctor", cls=Command)(doctor.doctor)


def main() -> None:
    _whole_writes()
    app()


def _whole_writes() -> None:
    """Every write to stdout finished, also in unbuffered mode (``python -u``,
    ``PYTHONUNBUFFERED``, which deploy/Dockerfile sets). There stdout's text layer sits on the raw
    file and ignores a partial write: once a uvloop loop has run (every command's ``run``), a
    write to a full pipe returned after 64 KiB and the rest of the text was dropped, so
    ``deltagate append --json | slow-reader`` printed broken JSON (tests/clients/test_cli.py). A
    buffered writer finishes every write; line buffering keeps each line prompt."""
    raw = getattr(sys.stdout, "buffer", None)
    if isinstance(raw, io.RawIOBase):
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(raw),
            encoding=sys.stdout.encoding,
            errors=sys.stdout.errors,
            line_buffering=True,
        )


if __name__ == "__main__":
    main()
