"""Running calls in threads at the same moment, and moto answering them as DynamoDB would, for race tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from moto.core.botocore_stubber import BotocoreStubber

from privend.errors import PrivendError


def run_together(*calls: Callable[[], Any], timeout: float = 120) -> list[str]:
    """Run each call in its own thread, released at the same moment; 'ok' or the error line each."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = [""] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            call()
            outcomes[index] = "ok"
        except PrivendError as error:
            outcomes[index] = f"{type(error).__name__}: {error}"

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a racing call did not finish"
    return outcomes


def moto_one_request_at_a_time(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    """Fake credentials, and moto answering one request at a time.

    DynamoDB applies each request atomically; moto does not lock its backend, so
    two threads' transactions could interleave inside moto and make it, not the
    registry, decide who wins. Serialising moto's request handling restores the
    per-request atomicity the registry's conditions rely on.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    lock = threading.Lock()
    handle_request = BotocoreStubber.process_request

    def one_at_a_time(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return handle_request(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", one_at_a_time)
