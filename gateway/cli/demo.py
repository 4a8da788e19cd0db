"""``deltagate demo orders|balance``: realistic traffic for the /demo/ pages, over the API."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from .common import DEFAULT_URL, ApiKey, Command, Url, client_for, console, group, run
from .events import event_line

demo_app = group("Generate realistic demo traffic for the /demo/ pages.", no_args_is_help=True)

PRODUCTS = [
    ("Espresso beans 1kg", 24.90),
    ("Pour-over kettle", 49.00),
    ("Ceramic mug", 12.50),
    ("Burr grinder", 129.00),
    ("Paper filters x100", 6.40),
    ("Milk frother", 34.99),
    ("Travel tumbler", 22.00),
    ("Cold brew jar", 18.75),
]


class OrderBook:
    """The generator's idea of its orders: new ones get placed, pending ones get shipped,
    shipped ones get delivered."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pending: list[str] = []
        self.shipped: list[str] = []

    def next_event(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        roll = rng.random()
        if self.shipped and roll < 0.25:
            order_id = self.shipped.pop(rng.randrange(len(self.shipped)))
            return order_id, {
                "type": "order.delivered",
                "data": {"orderId": order_id, "deliveredAt": _now()},
            }
        if self.pending and roll < 0.55:
            order_id = self.pending.pop(0 if rng.random() < 0.7 else -1)
            self.shipped.append(order_id)
            return order_id, {
                "type": "order.shipped",
                "data": {
                    "orderId": order_id,
                    "carrier": rng.choice(["DHL", "UPS", "FedEx", "PostNL"]),
                    "trackingNumber": f"TRK{rng.randrange(10**9):09d}",
                    "shippedAt": _now(),
                },
            }
        order_id = f"order-{rng.randrange(16**6):06x}"
        chosen = [(i, rng.randint(1, 3)) for i in range(len(PRODUCTS)) if rng.random() < 0.3]
        chosen = chosen or [(rng.randrange(len(PRODUCTS)), 1)]
        items = [
            {"sku": f"SKU-{i:03d}", "name": PRODUCTS[i][0], "price": PRODUCTS[i][1], "quantity": q}
            for i, q in chosen
        ]
        total = round(sum(PRODUCTS[i][1] * q for i, q in chosen), 2)
        self.pending.append(order_id)
        return order_id, {
            "type": "order.placed",
            "data": {
                "orderId": order_id,
                "customerId": f"customer-{rng.randrange(1000, 9999)}",
                "totalAmount": total,
                "items": items,
                "placedAt": _now(),
            },
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _generate(
    url: str,
    api_key: str | None,
    store: str,
    rate: float,
    count: int | None,
    make: Callable[[], tuple[str, dict[str, Any]]],
    quiet: bool,
) -> None:
    out = console()
    async with client_for(url, api_key) as client:
        await client.ensure_store(store)
        if not quiet:
            console(stderr=True).print(
                f"appending to '{store}' at {rate:g} events/s; Ctrl-C to stop", style="dim"
            )
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        sent = 0
        while count is None or sent < count:
            stream, event = make()
            result = await client.append(store, stream, [event])
            sent += 1
            if not quiet:
                out.print(event_line({**event, "streamId": stream, **_positions(result)}))
            next_at += 1.0 / rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))


def _positions(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "globalPosition": result.get("globalPosition"),
        "streamPosition": (result.get("currentStreamVersion") or 1) - 1,
        "createdAt": _now(),
    }


Rate = Annotated[float, typer.Option(min=0.01, max=1000, help="Events per second")]
Count = Annotated[
    int | None, typer.Option(min=1, help="Stop after this many events (default: run until Ctrl-C)")
]
Seed = Annotated[int | None, typer.Option(help="Random seed, for a repeatable stream")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing per event")]


@demo_app.command("orders", cls=Command)
def demo_orders(
    store: Annotated[str, typer.Option(help="Event store")] = "orders",
    rate: Rate = 2.0,
    count: Count = None,
    seed: Seed = None,
    quiet: Quiet = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Orders being placed, shipped and delivered, for /demo/orders."""
    book = OrderBook(random.Random(seed))
    run(lambda: _generate(url, api_key, store, rate, count, book.next_event, quiet))


@demo_app.command("balance", cls=Command)
def demo_balance(
    account: Annotated[str, typer.Option(help="Account (stream) id")] = "account-123",
    store: Annotated[str, typer.Option(help="Event store")] = "banking",
    rate: Rate = 1.0,
    count: Count = None,
    seed: Seed = None,
    quiet: Quiet = False,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
) -> None:
    """Deposits and withdrawals on one account, for /demo/balance."""
    rng = random.Random(seed)

    def next_event() -> tuple[str, dict[str, Any]]:
        kind = "money.deposited" if rng.random() < 0.6 else "money.withdrawn"
        amount = round(rng.uniform(5, 250), 2)
        return account, {"type": kind, "data": {"amount": amount, "currency": "USD"}}

    run(lambda: _generate(url, api_key, store, rate, count, next_event, quiet))
