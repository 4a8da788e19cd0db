"""The test harness's own promises: under pytest-xdist, workers never share a free port."""

from __future__ import annotations

import pytest

from tests.harness import free_port


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_each_worker_gets_ports_no_other_worker_gets(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    seen: dict[int, set[int]] = {}
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    for worker in range(workers):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        seen[worker] = {free_port() for _ in range(20)}
    for worker, ports in seen.items():
        others = set().union(*(p for w, p in seen.items() if w != worker))
        assert not ports & others
        # (every worker found ports: free_port raises when it finds none)
        assert ports
