// Run by process.test.mjs: submits COUNT events with ACK, closes, prints the ids and
// the close report, and ends without process.exit (the event loop must empty).
const { Client, logs } = require('../index.js');

const [options, count, ack] = [JSON.parse(process.argv[2]), Number(process.argv[3]), process.argv[4]];
logs.on('log', () => {});
(async () => {
  const client = new Client(options);
  const ids = [];
  for (let i = 0; i < count; i++) {
    ids.push(await client.submit('search', `{"user_id":"u-${i % 31}","query":"child-${i}"}`, { ack }));
  }
  const report = await client.close(30_000);
  process.stdout.write(JSON.stringify({ ids, report }));
})().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
