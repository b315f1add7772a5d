// The package against a real broker: create, submit each kind, errors, acks, batch,
// close draining everything, health, stats and logs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';
import { KEYS, SAMPLES, header, options, readTopic, tempDir } from './helpers.mjs';

const require = createRequire(import.meta.url);
const ingest = require('../index.js');
const { Client, ValidationError, ConfigError, IngestError, logs } = ingest;

test('each event kind arrives in Kafka byte for byte, with the documented key and headers', async () => {
  const opts = options();
  const client = new Client(opts);
  const ids = {};
  for (const [kind, body] of Object.entries(SAMPLES)) {
    // Buffer, Uint8Array and string payloads all work.
    const payload =
      kind === 'cart' ? new Uint8Array(Buffer.from(body)) : kind === 'search' ? body : Buffer.from(body);
    ids[kind] = await client.submit(kind, payload, { ack: 'delivered' });
    assert.match(ids[kind], /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  }
  const report = await client.close(10_000);
  assert.deepEqual({ ...report, elapsedMs: 0 }, { undelivered: 0, keptInBuffer: 0, lost: 0, elapsedMs: 0 });

  const topicOf = {
    product_view: opts.topics.productView.name,
    cart: opts.topics.cart.name,
    purchase: opts.topics.purchase.name,
    search: opts.topics.search.name,
  };
  for (const [kind, body] of Object.entries(SAMPLES)) {
    const records = readTopic(topicOf[kind]);
    assert.equal(records.length, 1, `one ${kind} record`);
    const [record] = records;
    assert.equal(record.payload, body, 'value byte for byte');
    assert.equal(record.key, KEYS[kind], 'keyed by user_id, else anonymous_id');
    assert.deepEqual(
      record.headers.map(([name]) => name),
      ['event_type', 'event_id', 'received_at', 'source', 'schema'],
    );
    assert.equal(header(record, 'event_type'), kind);
    assert.equal(header(record, 'event_id'), ids[kind]);
    assert.match(header(record, 'received_at'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(header(record, 'source'), 'node-test');
    assert.equal(header(record, 'schema'), `json:${kind}/v1`);
  }
});

test('a validation error is a ValidationError with code, number, field and message', async () => {
  const client = new Client(options());
  await assert.rejects(client.submit('purchase', '{"user_id":"u-1"}'), (error) => {
    assert.ok(error instanceof ValidationError);
    assert.ok(error instanceof IngestError);
    assert.ok(error instanceof Error);
    assert.equal(error.name, 'ValidationError');
    assert.equal(error.code, 'missing_field');
    assert.equal(error.codeNumber, 9);
    assert.equal(error.kind, 'invalid');
    assert.equal(error.field, 'order_id');
    assert.equal(error.message, 'order_id is required');
    assert.equal(error.retryable, false);
    return true;
  });
  await assert.rejects(client.submit('product_view', '{"user_id":"u-1","product_id":"p","currency":"EURO"}'), {
    name: 'ValidationError',
    code: 'invalid_currency',
    field: 'currency',
  });
  await assert.rejects(client.submit('search', '{not json'), { name: 'ValidationError', code: 'invalid_json' });
  assert.equal(client.stats().rejected, 3);
  await client.close();
});

test('configuration: unknown keys name the key; a whole TOML or JSON text is accepted', async () => {
  assert.throws(() => new Client({ brokers: '127.0.0.1:1', kafka: { lingerMss: 5 } }), (error) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.code, 'config');
    assert.match(error.message, /kafka\.linger_mss/);
    return true;
  });
  assert.throws(() => new Client({ brokers: '127.0.0.1:1', colour: 'red' }), { name: 'ConfigError', message: /colour/ });
  assert.throws(() => Client.fromConfig('[kafka]\nbrokers = 1', 'toml'), { name: 'ConfigError', message: /kafka\.brokers/ });
  const opts = options();
  const toml = Client.fromConfig(
    `source = "node-toml"\n[kafka]\nbrokers = "${opts.brokers}"\n[topics.search]\nname = "${opts.topics.search.name}"\npartitions = 1\nreplication_factor = 1\n`,
  );
  await toml.submit('search', SAMPLES.search, { ack: 'delivered' });
  await toml.close();
  const records = readTopic(opts.topics.search.name);
  assert.equal(records.length, 1);
  assert.equal(header(records[0], 'source'), 'node-toml');
  const json = Client.fromConfig(JSON.stringify({ kafka: { brokers: opts.brokers } }), 'json');
  assert.equal(json.health().shuttingDown, false);
  await json.close();
});

test('persisted acks with a disk buffer, then delivered; health shows the buffer', async () => {
  const opts = options({ bufferDir: tempDir() });
  const client = new Client(opts);
  const persisted = [];
  for (let i = 0; i < 50; i++) {
    persisted.push(client.submit('search', `{"user_id":"u-${i}","query":"q${i}"}`, { ack: 'persisted' }));
  }
  const ids = await Promise.all(persisted);
  assert.equal(new Set(ids).size, 50);
  const health = client.health();
  assert.ok(health.buffer, 'a disk buffer is reported');
  assert.ok(health.buffer.maxBytes > 0);
  const last = await client.submit('search', '{"user_id":"u-x","query":"last"}', { ack: 'delivered' });
  await client.flush(10_000);
  assert.equal((await client.close(10_000)).lost, 0);
  const records = readTopic(opts.topics.search.name);
  assert.deepEqual(new Set(records.map((r) => header(r, 'event_id'))), new Set([...ids, last]));
});

test('submitBatch returns the accepted ids and the rejections with index, code and field', async () => {
  const opts = options();
  const client = new Client(opts);
  const body = [
    '{"type":"search","user_id":"u-1","query":"a"}',
    '{"type":"purchase","user_id":"u-1"}',
    '{"type":"product_view","user_id":"u-2","product_id":"sku-2"}',
    '{"type":"nope","user_id":"u-3"}',
  ].join('\n');
  const outcome = await client.submitBatch(Buffer.from(body), { ack: 'delivered' });
  assert.equal(outcome.ids.length, 2);
  assert.deepEqual(
    outcome.rejections.map((r) => [r.index, r.code, r.field]),
    [
      [1, 'missing_field', 'order_id'],
      [3, 'unknown_event_type', 'type'],
    ],
  );
  assert.equal(outcome.rejections[0].codeNumber, 9);
  assert.equal(typeof outcome.rejections[0].message, 'string');
  await assert.rejects(client.submitBatch(''), { name: 'ValidationError', code: 'empty_body' });
  await client.close();
  assert.equal(header(readTopic(opts.topics.search.name)[0], 'event_id'), outcome.ids[0]);
  assert.equal(header(readTopic(opts.topics.productView.name)[0], 'event_id'), outcome.ids[1]);
});

test('close drains everything accepted', async () => {
  const opts = options();
  const client = new Client(opts);
  const ids = [];
  for (let i = 0; i < 2000; i++) {
    ids.push(await client.submit('cart', `{"user_id":"u-${i % 17}","action":"add","product_id":"p-${i}","quantity":1}`));
  }
  const report = await client.close(30_000);
  assert.equal(report.undelivered, 0);
  assert.equal(report.lost, 0);
  const arrived = readTopic(opts.topics.cart.name).map((r) => header(r, 'event_id'));
  assert.equal(arrived.length, 2000);
  assert.deepEqual(new Set(arrived), new Set(ids));
});

test('health and stats report the running state', async () => {
  const client = new Client(options());
  await client.submit('search', SAMPLES.search, { ack: 'delivered' });
  const health = client.health();
  assert.equal(health.ready, true);
  assert.equal(health.kafkaReachable, true);
  assert.equal(health.breaker, 'closed');
  assert.equal(health.buffer, undefined);
  assert.deepEqual(health.deadThreads, []);
  const stats = client.stats();
  assert.equal(stats.accepted, 1);
  assert.equal(stats.delivered, 1);
  await client.close();
  assert.equal(client.health().shuttingDown, true);
});

test('logs reach the host as log events', async () => {
  const records = [];
  const listener = (record) => records.push(record);
  logs.on('log', listener);
  const client = new Client(options());
  await client.close();
  // Records come through the event loop: give them a turn.
  await new Promise((resolve) => setTimeout(resolve, 100));
  logs.off('log', listener);
  const started = records.find((r) => r.message.startsWith('ingestor started'));
  assert.ok(started, `an 'ingestor started' record among ${JSON.stringify(records)}`);
  assert.equal(started.level, 'info');
  assert.equal(started.target, 'ingest_core::ingestor');
  assert.throws(() => {
    logs.level = 'loud';
  }, { name: 'InvalidArgumentError' });
});
