"""Types of the values ingest_core returns as dicts (for type checkers)."""

from __future__ import annotations

from typing import List, Literal, Optional, TypedDict

EventKind = Literal["product_view", "cart", "purchase", "search"]
AckLevel = Literal["accepted", "persisted", "delivered"]


class BufferLevel(TypedDict):
    entries: int
    bytes: int
    max_bytes: int


class ShutdownReport(TypedDict):
    undelivered: int
    kept_in_buffer: int
    lost: int
    elapsed: float


class Health(TypedDict):
    ready: bool
    kafka_reachable: bool
    shutting_down: bool
    breaker: Literal["closed", "half_open", "open"]
    dead_threads: List[str]
    queue_events: int
    queue_bytes: int
    buffer: Optional[BufferLevel]


class Stats(TypedDict):
    accepted: int
    rejected: int
    delivered: int
    failed: int
    dead_letters_dropped: int
    queue_events: int
    queue_bytes: int
    buffer: Optional[BufferLevel]
