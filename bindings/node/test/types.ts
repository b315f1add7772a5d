// Compiled (not run) by scripts/test-bindings with `tsc --noEmit`: the declarations
// describe the API as the tests and README use it.
import { ACK_LEVELS, Client, Flags, IngestError, ValidationError, logs } from '../index';
import type { HealthSnapshot, ShutdownReport } from '../index';

async function example(): Promise<void> {
  const client = new Client({ brokers: '127.0.0.1:9092', bufferDir: '/tmp/x', kafka: { lingerMs: 5 } });
  const id: string = await client.submit('cart', Buffer.from('{}'), { ack: 'delivered' });
  const batch = await client.submitBatch('{"type":"search"}');
  const first: number | undefined = batch.rejections[0]?.index;
  const health: HealthSnapshot = client.health();
  const maxBytes: number | undefined = health.buffer?.maxBytes;
  logs.level = 'debug';
  logs.on('log', (record) => console.log(record.level, record.target, record.message));
  await client.flush(1000);
  const report: ShutdownReport = await client.close();
  try {
    await client.submit('search', new Uint8Array(1));
  } catch (error) {
    if (error instanceof ValidationError) console.log(error.code, error.field);
    else if (error instanceof IngestError) console.log(error.kind, error.retryable);
  }
  console.log(id, first, maxBytes, report.keptInBuffer, ACK_LEVELS.length, Client.fromConfig('', 'toml'));
  const flags = Flags.fromToml('');
  const assigned: Record<string, string> = flags.assign('user-1');
  const variant: string | null = Flags.fromJson('{}').variant('checkout_v2', 'user-1');
  const fromFile: Flags = Flags.fromFile('flags.toml');
  console.log(assigned, variant, flags.size, fromFile.size);
}
void example;
