"""What a local sink (SMTP, SMS) has received: shared across threads, with a blocking wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Received(Generic[T]):
    """Messages in arrival order. ``lock`` is re-entrant, so a sink can hold it around a
    check-then-append (e.g. refusing a repeated idempotency key)."""

    def __init__(self, noun: str) -> None:
        self._noun = noun
        self._items: list[T] = []
        self.lock = threading.Condition()  # an RLock inside

    def snapshot(self) -> list[T]:
        with self.lock:
            return list(self._items)

    def clear(self) -> None:
        with self.lock:
            self._items.clear()

    def append(self, item: T) -> None:
        with self.lock:
            self._items.append(item)
            self.lock.notify_all()

    def wait_for(self, predicate: Callable[[T], bool], timeout: float) -> T:
        """The first item matching ``predicate``, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for item in self._items:
                    if predicate(item):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no matching {self._noun} within {timeout:.0f}s "
                        f"({len(self._items)} received)"
                    )
                self.lock.wait(remaining)
