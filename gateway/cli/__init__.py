"""The ``deltagate`` command: one module per group of sub-commands, one convention for errors,
exit codes and ``--json`` (``common``)."""

from __future__ import annotations

import typer

from . import backup, demo, doctor, events, keys, serve, stores, webhooks
from .common import Command

app = typer.Typer(
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
    app()


if __name__ == "__main__":
    main()
