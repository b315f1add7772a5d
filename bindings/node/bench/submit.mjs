// The Node.js binding's benchmark: N storefront-like events of 300 bytes with the same
// keys and headers, first submitted with ingest-core (a `submit` loop at the `accepted`
// level, then `flush`: every event acknowledged by Kafka with acks=all), then produced
// with KafkaJS (idempotent, acks=all, batches of up to --batch events with up to five
// requests in flight, the way KafkaJS is fastest). Each run appends one JSON line to
// --json: {"label", "tool", "events", "seconds", "events_per_s"}.
//
//   node bench/submit.mjs --brokers 127.0.0.1:9092 --topic bench-node [--events 100000]
//     [--json results.jsonl] [--label-prefix bindings] [--tools ingest-core,kafkajs]
//
// The topic should exist (scripts/bench creates it with produce-bench create-topic);
// both tools write to the same one. KafkaJS has no LZ4 codec of its own, so it sends
// uncompressed where ingest-core uses its default (lz4); see BENCHMARKS.md.
import { appendFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';

const require = createRequire(import.meta.url);

function arg(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : fallback;
}
const brokers = arg('brokers', process.env.KAFKA_BOOTSTRAP);
const topic = arg('topic');
const events = Number(arg('events', '100000'));
const json = arg('json');
const prefix = arg('label-prefix', 'bindings-node');
const tools = arg('tools', 'ingest-core,kafkajs').split(',');
const batch = Number(arg('batch', '1000'));
if (!brokers || !topic) {
  console.error('usage: node bench/submit.mjs --brokers HOST:PORT --topic TOPIC [--events N] [--json FILE]');
  process.exit(2);
}

/** Event i: a product view of 300 bytes, keyed by one of 1,000 users. */
function event(i) {
  const head = `{"user_id":"u-${i % 1000}","session_id":"s-${i % 5000}","product_id":"sku-${i % 20000}","category":"shoes","brand":"Acme","price":19.99,"currency":"EUR","context":{"locale":"de-DE","pad":"`;
  return Buffer.from(head + 'x'.repeat(300 - head.length - 3) + '"}}');
}
const bodies = Array.from({ length: Math.min(events, 10_000) }, (_, i) => event(i));

function record(label, tool, seconds) {
  const line = { label: `${prefix}-${label}`, tool, events, seconds: Number(seconds.toFixed(3)), events_per_s: Number((events / seconds).toFixed(1)) };
  console.log(JSON.stringify(line));
  if (json) appendFileSync(json, `${JSON.stringify(line)}\n`);
}

async function ingestCore() {
  const { Client } = require('../index.js');
  const client = new Client({
    brokers,
    source: 'bench',
    topics: { productView: { name: topic, partitions: 6, replicationFactor: 1 } },
  });
  // Warm-up: connection and metadata, outside the measurement.
  await client.submit('product_view', bodies[0], { ack: 'delivered' });
  const started = process.hrtime.bigint();
  for (let i = 0; i < events; i++) {
    let done = false;
    while (!done) {
      try {
        await client.submit('product_view', bodies[i % bodies.length]);
        done = true;
      } catch (error) {
        if (error.code !== 'queue_full') throw error;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }
  await client.flush(600_000);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const stats = client.stats();
  await client.close();
  if (stats.delivered < events + 1) throw new Error(`ingest-core delivered ${stats.delivered} of ${events + 1}`);
  record('ingest-core', 'ingest-core (Node.js binding)', seconds);
}

async function kafkajs() {
  const { Kafka, logLevel } = require('kafkajs');
  const kafka = new Kafka({ clientId: 'bench', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
  await producer.connect();
  const source = hostname();
  const message = (i) => ({
    key: `u-${i % 1000}`,
    value: bodies[i % bodies.length],
    headers: {
      event_type: 'product_view',
      event_id: randomUUID(),
      received_at: new Date().toISOString(),
      source,
      schema: 'json:product_view/v1',
    },
  });
  await producer.send({ topic, acks: -1, messages: [message(0)] });
  const started = process.hrtime.bigint();
  const inFlight = new Set();
  for (let i = 0; i < events; i += batch) {
    const messages = [];
    for (let j = i; j < Math.min(events, i + batch); j++) messages.push(message(j));
    const sent = producer.send({ topic, acks: -1, messages });
    inFlight.add(sent);
    sent.finally(() => inFlight.delete(sent));
    if (inFlight.size >= 5) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await producer.disconnect();
  record('kafkajs', 'KafkaJS', seconds);
}

for (const tool of tools) {
  if (tool === 'ingest-core') await ingestCore();
  else if (tool === 'kafkajs') await kafkajs();
  else throw new Error(`unknown tool ${tool}`);
}
