"""Config files: the stores and webhook subscriptions a deployment declares, as in the seed::

    eventStores:
      - name: orders
        description: Orders and their lifecycle     # optional
        settings: {retentionPeriodDays: 365}        # optional: as POST /event-stores takes them
        subscriptions:
          - id: orders-projection                   # required: what makes re-applying idempotent
            eventFilter: [order.placed, order.shipped, order.delivered]
            subscriberType: webhook
            webhook:
              url: ${SERVICE_URL}/api/projections/orders/events
              headers: {Authorization: "Bearer ${PROJECTION_TOKEN}"}
              retryPolicy: {maxAttempts: 10, backoffSeconds: 2}
              signingSecret: ${ORDERS_WEBHOOK_SECRET}   # optional: else one is generated

YAML or JSON (by the file's suffix; anything but ``.json`` is read as YAML). ``${NAME}`` in a
string is replaced by the environment variable ``NAME`` (an unset one is an error). Applying is
idempotent: missing stores are created, an existing store's declared ``settings`` are merged into
its own (as ``PATCH .../settings`` does; keys it does not name are kept), a declared subscription
that exists with the same config is left alone (its progress and secret kept), one whose config
changed is updated in place, and nothing is ever deleted. The whole file is validated before
anything is written.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from broker import (
    InvalidSettings,
    InvalidSubscriptionConfig,
    StoreAdmin,
    StoreAlreadyExists,
    SubscriptionRequest,
    TargetPolicy,
    WebhookStore,
    check_settings,
    codec,
    valid_store_name,
)

from .errors import ApiError
from .http.webhooks import declared

log = logging.getLogger("deltagate.config")

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
STORE_FIELDS = {"name", "description", "settings", "subscriptions"}


class ConfigError(Exception):
    """A config file that cannot be applied: ``where`` (the file, ``config file PATH``, or the
    subscription Redis refused), ``problems`` what is wrong there (each says where in it)."""

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__(f"{where}: " + "; ".join(problems))
        self.where = where
        self.problems = problems


@dataclass(frozen=True, slots=True)
class StorePlan:
    name: str
    description: str | None
    subscriptions: list[SubscriptionRequest]
    settings: dict[str, Any] | None = None
    """None: the file says nothing of the store's settings."""


@dataclass(frozen=True, slots=True)
class Applied:
    store: str
    subscription: str | None
    """None: the line is about the store itself."""
    outcome: str
    """created, existing, updated or unchanged."""
    secret: str | None = None
    """A new subscription's signing secret (shown once) when the file did not declare one."""


def named(path: Path) -> str:
    """How errors name a config file."""
    return f"config file {path}"


def checked(path: Path, *, targets: TargetPolicy) -> list[StorePlan]:
    """The plans of the file at ``path``, the whole file checked (``load``, then ``plan``)."""
    return plan(load(path), named(path), targets=targets)


def load(path: Path, environ: dict[str, str] | None = None) -> Any:
    """The file's document, with ``${NAME}`` expanded. Raises ConfigError."""
    where = named(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(where, [f"cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(where, [f"not UTF-8 text (byte {exc.start})"]) from None
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        if kind == "JSON":
            document = codec.loads(text)
        else:
            document = yaml.safe_load(text)
    except (codec.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(where, [f"not valid {kind}: {exc}"]) from None
    return _expand(document, os.environ if environ is None else environ, where)


def _expand(value: Any, environ: Any, where: str) -> Any:
    if isinstance(value, str):

        def variable(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(where, [f"environment variable {name} is not set"])
            return str(environ[name])

        return VARIABLE.sub(variable, value)
    if isinstance(value, list):
        return [_expand(v, environ, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, environ, where) for k, v in value.items()}
    return value


def plan(document: Any, where: str = "config", *, targets: TargetPolicy) -> list[StorePlan]:
    """Validate a whole document; ``targets`` says which addresses webhook URLs may name.
    Raises ConfigError listing every problem."""
    problems: list[str] = []
    if not isinstance(document, dict) or set(document) != {"eventStores"}:
        raise ConfigError(where, ["the document must be {eventStores: [...]}"])
    stores = document["eventStores"]
    if not isinstance(stores, list):
        raise ConfigError(where, ["eventStores must be a list"])
    plans: list[StorePlan] = []
    names: set[str] = set()
    for i, entry in enumerate(stores):
        at = f"eventStores[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{at}: must be {{name, description?, settings?, subscriptions?}}")
            continue
        unknown = sorted(str(field) for field in set(entry) - STORE_FIELDS)
        if unknown or "name" not in entry:
            what = f"unknown field(s) {', '.join(unknown)}" if unknown else "no name"
            problems.append(
                f"{at}: {what}; a store is {{name, description?, settings?, subscriptions?}}"
            )
            continue
        name, description = entry["name"], entry.get("description")
        if not isinstance(name, str) or not valid_store_name(name):
            problems.append(f"{at}.name: 3 to 63 characters of a-z 0-9 _ -")
            continue
        if name in names:
            problems.append(f"{at}.name: '{name}' is declared twice")
        names.add(name)
        if description is not None and not isinstance(description, str):
            problems.append(f"{at}.description: must be a string")
        settings = entry.get("settings")
        if settings is not None:
            try:
                settings = check_settings(settings)
            except InvalidSettings as exc:
                problems.extend(f"{at}.{d['field']}: {d['message']}" for d in exc.details or [])
        subs = entry.get("subscriptions") or []
        if not isinstance(subs, list):
            problems.append(f"{at}.subscriptions: must be a list")
            continue
        wanted: list[SubscriptionRequest] = []
        ids: set[str] = set()
        for j, sub in enumerate(subs):
            sub_at = f"{at}.subscriptions[{j}]"
            try:
                one = declared(sub, targets, config_form_only=True)
            except ApiError as exc:
                if isinstance(exc.details, list) and exc.details:
                    problems.extend(f"{sub_at}.{d['field']}: {d['message']}" for d in exc.details)
                else:
                    problems.append(f"{sub_at}: {exc.message}")
                continue
            if one.sub_id is None:
                problems.append(f"{sub_at}.id: required in a config file")
                continue
            if one.sub_id in ids:
                problems.append(f"{sub_at}.id: '{one.sub_id}' is declared twice")
            ids.add(one.sub_id)
            wanted.append(one)
        plans.append(StorePlan(name, description, wanted, settings))
    if problems:
        raise ConfigError(where, problems)
    return plans


async def apply(redis: Any, plans: list[StorePlan]) -> list[Applied]:
    """Create what is missing, converge what changed; never delete. Raises ConfigError (a
    subscription that duplicates another id's), StoreNotFound or Unavailable."""
    stores = StoreAdmin(redis)
    webhooks = WebhookStore(redis)
    done: list[Applied] = []
    for store in plans:
        try:
            await stores.create(store.name, description=store.description, settings=store.settings)
            done.append(Applied(store.name, None, "created"))
        except StoreAlreadyExists:
            outcome = "unchanged"
            if store.settings:
                before = (await stores.get(store.name)).settings
                after = (await stores.update(store.name, {"settings": store.settings})).settings
                outcome = "unchanged" if after == before else "updated"
            done.append(Applied(store.name, None, outcome))
        for sub in store.subscriptions:
            try:
                made = await webhooks.create(
                    store.name,
                    sub.config,
                    sub_id=sub.sub_id,
                    position=sub.position,
                    secret=sub.secret,
                    upsert=True,
                )
            except InvalidSubscriptionConfig as exc:
                raise ConfigError(f"{store.name}/{sub.sub_id}", [exc.message]) from None
            shown = made.secret if made.outcome == "created" and sub.secret is None else None
            done.append(Applied(store.name, made.subscription.id, made.outcome, shown))
    return done


async def apply_file(redis: Any, path: Path, *, targets: TargetPolicy) -> list[Applied]:
    return await apply(redis, checked(path, targets=targets))


async def apply_config(redis: Any, path: Path | None, targets: TargetPolicy) -> None:
    """The gateway's start: apply ``--config`` (if any) once Redis answers. A file that cannot
    be applied stops the start, loudly."""
    if path is None:
        return
    for line in await apply_file(redis, path, targets=targets):
        log.info(
            "config applied",
            extra={"store": line.store, "subscription": line.subscription, "outcome": line.outcome},
        )
        if line.secret is not None:
            log.warning(
                "subscription created without a declared signingSecret: its generated secret is "
                "not logged; declare webhook.signingSecret or create it with `deltagate apply`",
                extra={"store": line.store, "subscription": line.subscription},
            )
