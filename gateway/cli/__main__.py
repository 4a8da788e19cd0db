"""``python -m gateway.cli``: the ``deltagate`` command."""

from . import main

main()
