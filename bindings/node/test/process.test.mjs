// Child processes: what a process acknowledged before exiting is in Kafka (memory
// queue: accepted acks drained by close; disk buffer: persisted acks), and a process
// exits by itself after close (nothing the package made keeps the event loop alive).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { header, options, readTopic, tempDir } from './helpers.mjs';

const child = fileURLToPath(new URL('./child.cjs', import.meta.url));

function run(opts, count, ack) {
  const result = spawnSync(process.execPath, [child, JSON.stringify(opts), String(count), ack], {
    encoding: 'utf8',
    // Generous: a child that does not exit by itself is killed here and fails.
    timeout: 60_000,
  });
  assert.equal(result.signal, null, `the child exited by itself (stderr: ${result.stderr})`);
  assert.equal(result.status, 0, `child failed: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

for (const [label, extra, ack] of [
  ['memory queue, accepted acks', {}, 'accepted'],
  ['disk buffer, persisted acks', { bufferDir: null }, 'persisted'],
]) {
  test(`a child process that exits after close loses nothing acknowledged (${label})`, () => {
    const opts = options(extra.bufferDir === null ? { bufferDir: tempDir() } : extra);
    const started = Date.now();
    const { ids, report } = run(opts, 3000, ack);
    assert.equal(ids.length, 3000);
    assert.equal(report.lost, 0);
    assert.ok(Date.now() - started < 30_000, 'exited promptly after close');
    const arrived = new Set(readTopic(opts.topics.search.name).map((r) => header(r, 'event_id')));
    for (const id of ids) assert.ok(arrived.has(id), `acknowledged event ${id} is in Kafka`);
  });
}
