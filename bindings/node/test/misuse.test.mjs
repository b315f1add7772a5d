// Misuse gives a clear error and never crashes or hangs the process.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';
import { BOOTSTRAP, SAMPLES, header, options, readTopic } from './helpers.mjs';

const require = createRequire(import.meta.url);
const { Client, ClosedError, InvalidArgumentError, QueueFullError, TimeoutError, ValidationError } = require('../index.js');

test('double close and use after close reject with ClosedError', async () => {
  const client = new Client(options());
  await client.close();
  for (const call of [
    () => client.close(),
    () => client.submit('search', SAMPLES.search),
    () => client.submit('search', SAMPLES.search, { ack: 'delivered' }),
    () => client.submitBatch('{"type":"search","user_id":"u","query":"q"}'),
    () => client.flush(100),
  ]) {
    await assert.rejects(call(), (error) => {
      assert.ok(error instanceof ClosedError);
      assert.equal(error.code, 'shutting_down');
      assert.match(error.message, /closed/);
      return true;
    });
  }
  // Reading state stays possible.
  assert.equal(client.health().shuttingDown, true);
  assert.equal(typeof client.stats().accepted, 'number');
});

test('closing twice at once: one close wins, the other rejects', async () => {
  const client = new Client(options());
  const results = await Promise.allSettled([client.close(), client.close()]);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  assert.ok(results.find((r) => r.status === 'rejected').reason instanceof ClosedError);
});

test('null, undefined and wrong types are InvalidArgumentErrors naming the argument', async () => {
  for (const bad of [undefined, null, 42, 'brokers', []]) {
    assert.throws(() => new Client(bad), { name: 'InvalidArgumentError', message: /options must be an object/ });
  }
  assert.throws(() => new Client({ brokers: 42 }), { name: 'InvalidArgumentError', message: /brokers/ });
  assert.throws(() => new Client({ brokers: BOOTSTRAP, bufferDir: 7 }), { name: 'InvalidArgumentError', message: /bufferDir/ });
  assert.throws(() => Client.fromConfig(null), { name: 'InvalidArgumentError', message: /config text/ });
  assert.throws(() => Client.fromConfig('', 'yaml'), { name: 'InvalidArgumentError', message: /format/ });

  const client = new Client(options());
  const cases = [
    [() => client.submit(), /kind must be one of/],
    [() => client.submit(null, SAMPLES.search), /kind must be one of/],
    [() => client.submit('checkout', SAMPLES.search), /kind must be one of .*"checkout"/],
    [() => client.submit('search'), /payload must be a Buffer, a Uint8Array or a string, got undefined/],
    [() => client.submit('search', null), /got null/],
    [() => client.submit('search', 12), /got number/],
    [() => client.submit('search', { user_id: 'u' }), /got object/],
    [() => client.submit('search', new Float64Array(2)), /got Float64Array/],
    [() => client.submit('search', SAMPLES.search, 'delivered'), /options must be an object/],
    [() => client.submit('search', SAMPLES.search, { ack: 'eventually' }), /ack must be one of/],
    [() => client.submitBatch(undefined), /batch payload must be/],
    [() => client.flush(-1), /timeoutMs/],
    [() => client.flush('soon'), /timeoutMs/],
    [() => client.close(Number.NaN), /timeoutMs/],
  ];
  for (const [call, message] of cases) {
    const promise = call();
    assert.ok(promise instanceof Promise, 'async methods never throw synchronously');
    await assert.rejects(promise, (error) => {
      assert.ok(error instanceof InvalidArgumentError, `${error}`);
      assert.equal(error.code, 'invalid_argument');
      assert.match(error.message, message);
      return true;
    });
  }
  // The misuse of close above did not close the client.
  await client.submit('search', SAMPLES.search, { ack: 'delivered' });
  await client.close();
});

test('a 64 MiB payload is a ValidationError (event_too_large), and the client goes on', async () => {
  const client = new Client(options());
  const huge = Buffer.alloc(64 * 1024 * 1024, 'a');
  await assert.rejects(client.submit('search', huge), (error) => {
    assert.ok(error instanceof ValidationError);
    assert.equal(error.code, 'event_too_large');
    return true;
  });
  await assert.rejects(client.submitBatch(huge), { name: 'ValidationError', code: 'batch_too_large' });
  assert.match(await client.submit('search', SAMPLES.search, { ack: 'delivered' }), /^[0-9a-f-]{36}$/);
  await client.close();
});

test('many concurrent submits with delivered acks all resolve, and all arrive', async () => {
  const opts = options();
  const client = new Client(opts);
  const submits = [];
  for (let i = 0; i < 20_000; i++) {
    submits.push(client.submit('search', `{"user_id":"u-${i % 97}","query":"q-${i}"}`, { ack: i % 2 ? 'delivered' : 'accepted' }));
  }
  const ids = await Promise.all(submits);
  assert.equal(new Set(ids).size, 20_000);
  assert.equal((await client.close(30_000)).lost, 0);
  assert.equal(readTopic(opts.topics.search.name).length, 20_000);
});

test('a full queue is a QueueFullError (retryable); an unreachable Kafka times out flush', async () => {
  const client = new Client({
    brokers: '127.0.0.1:1',
    queue: { maxEvents: 10 },
    limits: { maxBatchEvents: 10 },
    // Kafka's client holds few records, so the rest waits in the bounded queue.
    kafka: { messageTimeoutMs: 30_000, producerQueueMaxRecords: 10 },
  });
  const outcomes = await Promise.allSettled(
    Array.from({ length: 200 }, (_, i) => client.submit('search', `{"user_id":"u","query":"q${i}"}`)),
  );
  const errors = outcomes.filter((o) => o.status === 'rejected').map((o) => o.reason);
  assert.ok(errors.length > 0, 'some submissions were refused');
  for (const error of errors) {
    assert.ok(error instanceof QueueFullError, `${error}`);
    assert.equal(error.code, 'queue_full');
    assert.equal(error.retryable, true);
  }
  const flushing = Date.now();
  await assert.rejects(client.flush(200), (error) => error instanceof TimeoutError && error.code === 'timeout');
  assert.ok(Date.now() - flushing < 5_000, `flush(200) settled after ${Date.now() - flushing} ms`);
  const report = await client.close(200);
  assert.ok(report.undelivered > 0);
  assert.equal(report.lost, report.undelivered);
});

test('a delivered ack pending at close settles (rejects) instead of hanging', async () => {
  const client = new Client({ brokers: '127.0.0.1:1', kafka: { messageTimeoutMs: 60_000 } });
  const pending = assert.rejects(
    client.submit('search', SAMPLES.search, { ack: 'delivered' }),
    (error) => error.name === 'DeliveryError' && error.code === 'delivery' && /not delivered/.test(error.message),
  );
  await client.close(200);
  await pending;
});
