// Shared by the tests: the broker's address, per-run topics, sample events, and
// reading back what reached Kafka (with kcat, as the other bindings' tests do).
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BOOTSTRAP = process.env.KAFKA_BOOTSTRAP;
if (!BOOTSTRAP) {
  throw new Error(
    'KAFKA_BOOTSTRAP is not set: these tests need a real Kafka. Start one with ' +
      '`KAFKA_STATE_DIR=/tmp/kafka-dev scripts/kafka start` (from the repository root) and ' +
      'export KAFKA_BOOTSTRAP=<the address it prints>; or run scripts/test-bindings.',
  );
}

let serial = 0;

/** Topics of its own for one client, so tests never read each other's records. */
export function topics() {
  const prefix = `node-${process.pid}-${Date.now()}-${serial++}`;
  const topic = (name) => ({ name: `${prefix}-${name}`, partitions: 2, replicationFactor: 1 });
  return {
    productView: topic('product-views'),
    cart: topic('cart-events'),
    purchase: topic('purchases'),
    search: topic('search-events'),
    deadLetter: topic('events-dlq'),
  };
}

/** Client options for the test broker with fresh topics. */
export function options(extra = {}) {
  return { brokers: BOOTSTRAP, source: 'node-test', topics: topics(), kafka: { lingerMs: 5 }, ...extra };
}

export function tempDir() {
  return mkdtempSync(join(tmpdir(), 'ingest-node-test-'));
}

/** One valid event of each kind (docs/events.md), keyed by a non-ASCII user id. */
export const SAMPLES = {
  product_view: '{"user_id":"u-\u00e9-1","product_id":"sku-1","price":19.99,"currency":"EUR"}',
  cart: '{"anonymous_id":"a-1","action":"add","product_id":"sku-1","quantity":2}',
  purchase:
    '{"user_id":"u-2","order_id":"o-1","items":[{"product_id":"sku-1","quantity":2,"price":19.99}],"total":39.98,"currency":"EUR"}',
  search: '{"user_id":"u-3","query":"red shoes","results_count":0}',
};
export const KEYS = { product_view: 'u-\u00e9-1', cart: 'a-1', purchase: 'u-2', search: 'u-3' };

/**
 * Every record of `topic`, from the beginning to the current end: `{ key, payload,
 * headers }`, headers as [name, value] pairs in record order.
 */
export function readTopic(topic) {
  const out = execFileSync(
    'kcat',
    ['-C', '-b', BOOTSTRAP, '-t', topic, '-o', 'beginning', '-e', '-q', '-J'],
    { encoding: 'utf8', timeout: 60_000, maxBuffer: 512 * 1024 * 1024 },
  );
  return out
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => {
      const record = JSON.parse(line);
      const headers = [];
      for (let i = 0; i < (record.headers ?? []).length; i += 2) {
        headers.push([record.headers[i], record.headers[i + 1]]);
      }
      return { key: record.key, payload: record.payload, headers };
    });
}

/** The value of header `name` of a record read by readTopic. */
export function header(record, name) {
  return record.headers.find(([n]) => n === name)?.[1];
}
