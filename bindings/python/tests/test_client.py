"""ingest_core against a real Kafka: every test reads back what it expects."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Dict

import pytest

import ingest_core
from conftest import KINDS, event, read_topic


def test_each_kind_arrives_byte_for_byte_with_key_and_headers(options, topics, brokers):
    sent = {}
    with ingest_core.Client(**options) as client:
        for i, kind in enumerate(KINDS):
            body = event(kind, user=f"py-u{i}")
            # bytes, bytearray and memoryview payloads all work
            payload = [body, bytearray(body), memoryview(body), body][i]
            event_id = client.submit(kind, payload, ack="delivered", timeout=30)
            assert event_id == json.loads(body)["event_id"]
            sent[kind] = (f"py-u{i}".encode(), event_id, body)
    for kind, (key, event_id, body) in sent.items():
        [(got_key, headers, value)] = read_topic(brokers, topics[kind], 1)
        assert value == body, "the payload arrives byte for byte"
        assert got_key == key, "keyed by user_id"
        assert headers["event_type"] == kind.encode()
        assert headers["event_id"] == event_id.encode()
        assert headers["schema"] == f"json:{kind}/v1".encode()
        assert headers["source"] == b"python-test"
        assert headers["received_at"]


def test_a_generated_event_id_is_returned_and_sent(options, topics, brokers):
    body = b'{"anonymous_id":"anon-7","product_id":"sku-9"}'
    with ingest_core.Client(**options) as client:
        event_id = client.submit("product_view", body, ack="delivered", timeout=30)
    assert uuid.UUID(event_id).version == 7
    [(key, headers, value)] = read_topic(brokers, topics["product_view"], 1)
    assert (key, headers["event_id"], value) == (b"anon-7", event_id.encode(), body)


def test_validation_error_has_code_field_and_message(options, topics, brokers):
    with ingest_core.Client(**options) as client:
        with pytest.raises(ingest_core.ValidationError) as caught:
            client.submit("product_view", b'{"user_id":"u-1"}')
        error = caught.value
        assert isinstance(error, ingest_core.IngestError) and isinstance(error, ValueError)
        assert (error.code, error.code_name, error.field) == (9, "missing_field", "product_id")
        assert error.message == "product_id is required"
        assert str(error) == "invalid event: missing_field: product_id: product_id is required"
        assert error.kind == "invalid"
        with pytest.raises(ingest_core.ValidationError) as caught:
            client.submit("purchase", event("purchase", currency="EUX"))
        assert (caught.value.code_name, caught.value.field) == ("invalid_currency", "currency")
        assert client.stats()["rejected"] == 2
    # rejected events go to the dead-letter topic with the reason in headers
    dead = read_topic(brokers, topics["dead_letter"], 2)
    assert sorted(h["error_code"] for _, h, _ in dead) == [b"invalid_currency", b"missing_field"]


def test_persisted_with_a_disk_buffer_then_delivered(options, topics, brokers, tmp_path):
    with ingest_core.Client(buffer_dir=tmp_path / "buffer", **options) as client:
        assert client.health()["buffer"] is not None
        ids = [
            client.submit(kind, event(kind, user=f"d-{kind}"), ack="persisted", timeout=30)
            for kind in KINDS
        ]
        client.flush(timeout=30)
        report = client.close()
    assert report["lost"] == 0 and report["undelivered"] == 0
    for kind, event_id in zip(KINDS, ids):
        [(_, headers, _)] = read_topic(brokers, topics[kind], 1)
        assert headers["event_id"] == event_id.encode()


def test_batch_lists_accepted_ids_and_rejections(options, topics, brokers):
    lines = [
        json.dumps({"type": "search", "user_id": "b-1", "query": "red shoes"}),
        json.dumps({"type": "cart", "user_id": "b-2", "action": "add", "product_id": "x"}),
        json.dumps({"type": "product_view", "user_id": "b-3", "product_id": "sku-3"}),
    ]
    with ingest_core.Client(**options) as client:
        result = client.submit_batch("\n".join(lines).encode(), ack="delivered", timeout=30)
        assert result.accepted == 2 and len(result.event_ids) == 2
        [rejection] = result.rejections
        assert (rejection.index, rejection.code_name, rejection.field) == (1, "missing_field", "quantity")
        assert rejection.code == 9 and rejection.message
        with pytest.raises(ingest_core.ValidationError) as caught:
            client.submit_batch(b"")
        assert caught.value.code_name == "empty_body"
    [(key, headers, value)] = read_topic(brokers, topics["search"], 1)
    assert (key, value) == (b"b-1", lines[0].encode())
    assert headers["event_id"] == result.event_ids[0].encode()


def test_close_drains_everything(options, topics, brokers):
    client = ingest_core.Client(**options)
    ids = {client.submit("search", event("search", user=f"c-{i}")) for i in range(500)}
    report = client.close(timeout=30)
    assert report == {**report, "undelivered": 0, "kept_in_buffer": 0, "lost": 0}
    assert client.closed
    got = read_topic(brokers, topics["search"], 500)
    assert {h["event_id"].decode() for _, h, _ in got} == ids


def test_a_process_exiting_after_close_loses_nothing_acknowledged(options, topics, brokers, tmp_path):
    script = textwrap.dedent(
        """
        import json, sys, ingest_core
        options = json.loads(sys.argv[1])
        client = ingest_core.Client(**options)
        for i in range(300):
            print(client.submit("cart", json.dumps({"user_id": f"p-{i}", "action": "add",
                  "product_id": "sku", "quantity": 1}).encode()), flush=True)
        client.close(timeout=30)
        sys.exit(0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(options)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    acknowledged = set(done.stdout.split())
    assert len(acknowledged) == 300
    got = read_topic(brokers, topics["cart"], 300)
    assert {h["event_id"].decode() for _, h, _ in got} == acknowledged


def test_a_client_never_closed_delivers_at_exit(options, topics, brokers):
    script = (
        "import json, sys, ingest_core\n"
        "client = ingest_core.Client(**json.loads(sys.argv[1]))\n"
        "print(client.submit('search', b'{\"user_id\":\"gc-1\",\"query\":\"q\"}'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, json.dumps(options)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [(_, headers, _)] = read_topic(brokers, topics["search"], 1)
    assert headers["event_id"].decode() == done.stdout.strip()


def test_misuse_raises_clear_errors(options):
    client = ingest_core.Client(**options)
    with pytest.raises(TypeError, match="bytes-like"):
        client.submit("search", None)
    with pytest.raises(TypeError, match="encode it first"):
        client.submit("search", '{"user_id":"u","query":"q"}')
    with pytest.raises(TypeError):
        client.submit(None, b"{}")
    with pytest.raises(TypeError, match="bytes-like"):
        client.submit_batch(12)
    with pytest.raises(ValueError, match='unknown event kind "click"'):
        client.submit("click", b"{}")
    with pytest.raises(ValueError, match="unknown acknowledgement level"):
        client.submit("search", event("search"), ack="sometime")
    with pytest.raises(ValueError, match="timeout"):
        client.submit("search", event("search"), timeout=-1)
    huge = b'{"user_id":"u","query":"' + b"x" * (64 << 20) + b'"}'
    with pytest.raises(ingest_core.ValidationError) as caught:
        client.submit("search", huge)
    assert caught.value.code_name == "event_too_large"
    with pytest.raises(ingest_core.ValidationError) as caught:
        client.submit_batch(bytearray(huge))
    assert caught.value.code_name == "batch_too_large"
    client.close()
    with pytest.raises(ingest_core.ClosedError):
        client.close()
    with pytest.raises(ingest_core.ClosedError):
        client.submit("search", event("search"))
    with pytest.raises(ingest_core.ClosedError):
        client.submit_batch(event("search", type="search"))
    with pytest.raises(ingest_core.ClosedError):
        client.flush(timeout=1)
    assert client.health()["shutting_down"]
    with client:  # entering and leaving a closed client is harmless
        pass


def test_submit_from_many_threads_at_once(options, topics, brokers):
    threads, per_thread = 16, 100
    ids, errors = [], []
    with ingest_core.Client(**options) as client:
        def work(t: int) -> None:
            try:
                for i in range(per_thread):
                    ids.append(client.submit("product_view", event("product_view", user=f"t{t}-{i}")))
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert not errors
        client.flush(timeout=30)
        assert client.stats()["accepted"] == threads * per_thread
    assert len(set(ids)) == threads * per_thread
    got = read_topic(brokers, topics["product_view"], threads * per_thread)
    assert len(got) == threads * per_thread


def test_options_map_to_configuration_keys(options, tmp_path):
    with pytest.raises(ingest_core.ConfigError) as caught:
        ingest_core.Client(**options, kafka__lingr_ms=3)
    assert caught.value.key == "kafka.lingr_ms" and "kafka__lingr_ms" in caught.value.message
    with pytest.raises(ingest_core.ConfigError, match="frobnicate"):
        ingest_core.Client(frobnicate=True)
    with pytest.raises(ingest_core.ConfigError) as caught:
        ingest_core.Client(**{**options, "kafka__linger_ms": "soon"})
    assert "kafka.linger_ms" in str(caught.value)
    with pytest.raises(ingest_core.ConfigError) as caught:
        ingest_core.Client(config="[kafka]\nbrokerz = 'x'\n")
    assert "brokerz" in str(caught.value)
    with pytest.raises(TypeError, match="config must be"):
        ingest_core.Client(config=42)
    with pytest.raises(TypeError, match="brokers must be a str"):
        ingest_core.Client(brokers=9092)
    toml = f'source = "from-toml"\n[kafka]\nbrokers = "{options["brokers"]}"\n'
    with ingest_core.Client(config=toml, kafka__linger_ms=1) as client:
        assert "Client(brokers=" in repr(client)
        client.submit("search", event("search"), ack="delivered", timeout=30)
    as_json = json.dumps({"kafka": {"brokers": options["brokers"]}, "queue": {"max_events": 5}})
    with ingest_core.Client(config=as_json, queue__max_events=50000) as client:
        for _ in range(100):
            client.submit("search", event("search"))
    with ingest_core.Client(config={"kafka": {"brokers": options["brokers"]}},
                            kafka__properties={"socket.keepalive.enable": "true"}) as client:
        assert client.health()["ready"]


def test_waits_time_out_as_timeout_error_and_release_the_gil():
    counter = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            counter[0] += 1

    with ingest_core.Client(brokers="127.0.0.1:1", kafka__message_timeout_ms=60000) as client:
        spinner = threading.Thread(target=spin)
        spinner.start()
        started = time.monotonic()
        with pytest.raises(ingest_core.IngestTimeoutError) as caught:
            client.submit("search", event("search"), ack="delivered", timeout=0.5)
        stop.set()
        spinner.join()
        assert isinstance(caught.value, TimeoutError) and caught.value.kind == "timeout"
        assert 0.4 < time.monotonic() - started < 5
        assert counter[0] > 10_000, "another thread ran while submit waited"
        with pytest.raises(TimeoutError):
            client.flush(timeout=0.2)
        report = client.close(timeout=0.5)
        assert report["undelivered"] == 1 and report["lost"] == 1


def test_logs_reach_python_logging(options, caplog):
    caplog.set_level(logging.INFO, logger="ingest_core")
    ingest_core.refresh_log_level()
    with ingest_core.Client(**options):
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("ingestor stopped" in r.getMessage() for r in caplog.records):
        time.sleep(0.05)
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("ingest_core")]
    assert any(level == logging.INFO and "ingestor started" in text for _, level, text in messages), messages
    assert any("ingestor stopped" in text for _, _, text in messages), messages


def test_asyncio_acknowledgements(options, topics, brokers, tmp_path):
    async def main() -> Dict[str, object]:
        with ingest_core.Client(buffer_dir=tmp_path / "buffer", **options) as client:
            ids = await asyncio.gather(
                *(client.submit_async("search", event("search", user=f"a-{i}")) for i in range(100))
            )
            persisted = await client.submit_async("cart", event("cart"), ack="persisted")
            batch = await client.submit_batch_async(
                json.dumps([{"type": "product_view", "user_id": "a", "product_id": "p"}]).encode()
            )
            await client.flush_async(timeout=30)
            with pytest.raises(ingest_core.ValidationError):
                await client.submit_async("search", b'{"user_id":"x"}')
            return {"ids": ids, "persisted": persisted, "batch": batch}

    got = asyncio.run(main())
    assert len(set(got["ids"])) == 100
    assert got["batch"].accepted == 1
    records = read_topic(brokers, topics["search"], 100)
    assert {h["event_id"].decode() for _, h, _ in records} == set(got["ids"])


def test_asyncio_timeout_is_a_timeout_error():
    async def main() -> None:
        with ingest_core.Client(brokers="127.0.0.1:1") as client:
            with pytest.raises(TimeoutError):
                await client.submit_async("search", event("search"), timeout=0.3)
            client.close(timeout=0.2)

    asyncio.run(main())


def test_back_pressure_is_queue_full_error():
    with ingest_core.Client(
        brokers="127.0.0.1:1", queue__max_events=5, limits__max_batch_events=5,
        kafka__producer_queue_max_records=1,
    ) as client:
        with pytest.raises(ingest_core.QueueFullError) as caught:
            for _ in range(10_000):
                client.submit("search", event("search"))
        assert caught.value.kind == "queue_full"
        client.close(timeout=0.2)
