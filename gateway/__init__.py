"""deltagate's gateway: the pod (``app.create_app``: REST in ``http/``, the WebSocket in ``ws/``,
auth, metrics, Studio and the static client), the webhook dispatcher process (``dispatcher/``) and
the ``deltagate`` command (``cli/``). Everything about Redis is the broker's (``broker/``)."""

from importlib.metadata import version

__version__ = version("deltagate")
"""The one place the version is written is pyproject.toml; this reads the installed one."""
