"""Fixtures: the Kafka the tests write to, unique topics per test, a reader."""

from __future__ import annotations

import json
import os
import uuid
from typing import Dict, List, Tuple

import pytest

KINDS = ["product_view", "cart", "purchase", "search"]


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("KAFKA_BOOTSTRAP"):
        raise pytest.UsageError(
            "KAFKA_BOOTSTRAP is not set: these tests need a real Kafka. Start one with "
            "`KAFKA_STATE_DIR=/tmp/kafka-dev scripts/kafka start` and export "
            "KAFKA_BOOTSTRAP=<the address it prints> (scripts/test-bindings does all this)."
        )


@pytest.fixture(scope="session")
def brokers() -> str:
    return os.environ["KAFKA_BOOTSTRAP"]


@pytest.fixture
def topics() -> Dict[str, str]:
    """Fresh topic names for each kind and the dead-letter topic."""
    prefix = f"py-{uuid.uuid4().hex[:10]}"
    names = {kind: f"{prefix}-{kind}" for kind in KINDS + ["dead_letter"]}
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP"]})
    futures = admin.create_topics([NewTopic(t, 2, 1) for t in names.values()])
    for future in futures.values():
        future.result(30)
    return names


@pytest.fixture
def options(brokers: str, topics: Dict[str, str]) -> Dict[str, object]:
    """Client keyword arguments: the test broker, the fresh topics, a short linger."""
    opts: Dict[str, object] = {"brokers": brokers, "source": "python-test", "kafka__linger_ms": 2}
    for kind, name in topics.items():
        opts[f"topics__{kind}__name"] = name
    return opts


def read_topic(brokers: str, topic: str, count: int, timeout: float = 30.0) -> List[Tuple[bytes, Dict[str, bytes], bytes]]:
    """Reads `count` records (key, headers, value) from the start of `topic`."""
    import time

    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"py-test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            headers = {k: v for k, v in (message.headers() or [])}
            records.append((message.key(), headers, message.value()))
    finally:
        consumer.close()
    return records


def event(kind: str, user: str = "u-1", **extra: object) -> bytes:
    """A valid event of `kind` as JSON bytes."""
    body: Dict[str, object] = {"user_id": user, "event_id": str(uuid.uuid4())}
    if kind == "product_view":
        body.update(product_id="sku-1")
    elif kind == "cart":
        body.update(action="add", product_id="sku-1", quantity=1)
    elif kind == "purchase":
        body.update(
            order_id="o-1",
            items=[{"product_id": "sku-1", "quantity": 1, "price": 9.99}],
            total=9.99,
            currency="EUR",
        )
    elif kind == "search":
        body.update(query="shoes")
    body.update(extra)
    return json.dumps(body).encode()
