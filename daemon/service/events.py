"""The daemon's in-process event bus: what happened to which file, for `imgd events` and the saved searches.

Publishing never waits: each subscriber has a bounded buffer, and when it is full the event is counted
instead of kept; the subscriber's next read then starts with a `dropped` event saying how many it missed.
A slow reader therefore never slows indexing, and a reader that keeps up loses nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

DEFAULT_BUFFER = 1000  # events a subscriber may fall behind before it is told it missed some

Event = dict[str, Any]


class Subscription:
    """One reader's buffer: events in order, and how many were dropped since its last read."""

    def __init__(self, bus: EventBus, size: int) -> None:
        self._bus = bus
        self.size = size
        self._events: deque[Event] = deque()
        self._dropped = 0
        self._ready = threading.Condition()

    def put(self, event: Event) -> None:
        with self._ready:
            if len(self._events) >= self.size:
                self._dropped += 1
                return
            self._events.append(event)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event (a `dropped` one first if some were missed), or None after `timeout` seconds."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._events or self._dropped, timeout):
                return None
            if self._dropped:
                count, self._dropped = self._dropped, 0
                return {"event": "dropped", "count": count, "at": time.time()}
            return self._events.popleft()

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    """Fan each published event out to every subscriber, without ever blocking the publisher."""

    def __init__(self, buffer: int = DEFAULT_BUFFER) -> None:
        self.buffer = buffer
        self._subscribers: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, buffer: int | None = None) -> Subscription:
        subscription = Subscription(self, buffer or self.buffer)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    def publish(self, kind: str, **fields: Any) -> None:
        """Tell every subscriber; `kind` is indexed, updated, moved, removed, failed or matched."""
        event = {"event": kind, **fields, "at": time.time()}
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.put(event)
