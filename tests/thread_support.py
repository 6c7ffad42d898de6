"""Running calls in threads at the same moment, for the registry's race tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

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
