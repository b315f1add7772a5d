"""Events/s from one Python thread: ingest_core's submit and submit_batch vs
confluent-kafka's produce loop, with the same events, keys, headers and producer
properties, to the same topic.

    python bench.py --brokers B --topic T --events N --properties FILE --results FILE

FILE of --properties holds the producer properties ingest-core uses, as
`produce-bench properties` prints them (`-X` lines and `key=value` lines); the
confluent-kafka producer gets exactly these. Each run counts from the first call to the
moment every event is acknowledged by Kafka (`flush`), after a warm-up event, and
appends one JSON line to --results: label, tool, events, bytes, seconds, events_per_s,
mb_per_s (the fields of produce-bench's lines).

The events are those of produce-bench (testkit's fixed_size_view): 300-byte product
views with `type`, `event_id` and `user_id` (key `user-<seq % 10000>`); the
confluent-kafka loop sends the five headers ingest-core writes (`event_type`,
`event_id`, `received_at`, `source`, `schema`), and a delivery callback that counts
failures, as an application that wants to know what was lost needs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from typing import Callable, Dict, List, Tuple

RECEIVED_AT = b"2026-11-24T10:00:00.000Z"


def view(run: int, seq: int, size: int) -> Tuple[str, bytes, bytes]:
    """Event `seq` of run `run`: (its id, its key, its body of `size` bytes)."""
    event_id = str(uuid.UUID(int=(run << 64) | seq))
    head = (
        '{"type":"product_view","event_id":"%s","user_id":"user-%d","product_id":"sku-%d",'
        '"price":19.99,"currency":"EUR","pad":"' % (event_id, seq % 10_000, seq % 2_000)
    ).encode()
    tail = b'"}'
    pad = max(0, size - len(head) - len(tail))
    return event_id, b"user-%d" % (seq % 10_000), head + b"x" * pad + tail


def properties(path: str) -> Dict[str, str]:
    props = {}
    for line in open(path, encoding="utf-8").read().split():
        if line != "-X" and "=" in line:
            key, value = line.split("=", 1)
            props[key] = value
    return props


def timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def ingest_submit(args: argparse.Namespace, events: List[Tuple[str, bytes, bytes]]) -> float:
    import ingest_core

    with ingest_core.Client(
        brokers=args.brokers, source="python-bench", topics__product_view__name=args.topic
    ) as client:
        client.submit("product_view", view(0, 1 << 40, args.size)[2], ack="delivered", timeout=30)
        submit = client.submit
        queue_full = ingest_core.QueueFullError

        def run() -> None:
            for _, _, body in events:
                while True:
                    try:
                        submit("product_view", body)
                        break
                    except queue_full:
                        time.sleep(0.0005)
            client.flush(timeout=300)

        seconds = timed(run)
        stats = client.stats()
    assert stats["failed"] == 0 and stats["delivered"] >= len(events), stats
    return seconds


def ingest_batch(args: argparse.Namespace, events: List[Tuple[str, bytes, bytes]]) -> float:
    import ingest_core

    bodies = [
        b"\n".join(body for _, _, body in events[i : i + args.batch])
        for i in range(0, len(events), args.batch)
    ]
    with ingest_core.Client(
        brokers=args.brokers, source="python-bench", topics__product_view__name=args.topic
    ) as client:
        client.submit("product_view", view(0, 1 << 40, args.size)[2], ack="delivered", timeout=30)
        submit_batch = client.submit_batch
        queue_full = ingest_core.QueueFullError

        def run() -> None:
            for body in bodies:
                while True:
                    try:
                        result = submit_batch(body)
                        break
                    except queue_full:
                        time.sleep(0.0005)
                if result.rejections:
                    raise RuntimeError(result.rejections[0])
            client.flush(timeout=300)

        seconds = timed(run)
        stats = client.stats()
    assert stats["failed"] == 0 and stats["delivered"] >= len(events), stats
    return seconds


def confluent(args: argparse.Namespace, events: List[Tuple[str, bytes, bytes]]) -> float:
    from confluent_kafka import Producer

    config = properties(args.properties)
    config["bootstrap.servers"] = args.brokers
    producer = Producer(config)
    failed = [0]

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failed[0] += 1

    topic = args.topic
    produce, poll = producer.produce, producer.poll

    def send(event_id: str, key: bytes, body: bytes) -> None:
        headers = [
            ("event_type", b"product_view"),
            ("event_id", event_id.encode()),
            ("received_at", RECEIVED_AT),
            ("source", b"python-bench"),
            ("schema", b"json:product_view/v1"),
        ]
        while True:
            try:
                produce(topic, body, key, headers=headers, on_delivery=delivered)
                break
            except BufferError:
                poll(0.0005)
        poll(0)

    send(*view(0, 1 << 40, args.size))
    producer.flush(30)

    def run() -> None:
        for event_id, key, body in events:
            send(event_id, key, body)
        left = producer.flush(300)
        if left:
            raise RuntimeError(f"{left} records not delivered")

    seconds = timed(run)
    assert failed[0] == 0, f"{failed[0]} records failed"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--properties", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--label", default="bindings-python")
    parser.add_argument("--runs", default="confluent-kafka,submit,submit_batch")
    args = parser.parse_args()
    run = int.from_bytes(os.urandom(6), "big")
    events = [view(run, seq, args.size) for seq in range(args.events)]
    size = sum(len(body) for _, _, body in events)
    tools = {
        "confluent-kafka": ("confluent-kafka", confluent),
        "submit": ("ingest-core-python", ingest_submit),
        "submit_batch": ("ingest-core-python", ingest_batch),
    }
    for name in args.runs.split(","):
        tool, measure = tools[name]
        label = f"{args.label}-{name}" + (f"-{args.batch}" if name == "submit_batch" else "")
        # Fresh events ids per run: the topic is shared.
        run = int.from_bytes(os.urandom(6), "big")
        events = [view(run, seq, args.size) for seq in range(args.events)]
        seconds = max(measure(args, events), 1e-9)
        line = {
            "label": label,
            "tool": tool,
            "events": args.events,
            "bytes": size,
            "seconds": round(seconds, 3),
            "events_per_s": round(args.events / seconds, 1),
            "mb_per_s": round(size / seconds / 1e6, 2),
        }
        print(f"{label} ({tool}): {args.events} events in {seconds:.2f} s, {line['events_per_s']:.0f} events/s")
        with open(args.results, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
