// Feature flags: the documented test vectors (docs/edge-agent.md, "Feature flags"), the
// same in every binding and on every agent. No Kafka needed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
const { ConfigError, Flags, InvalidArgumentError } = require('../index.js');

/** The test vectors' flags, with checkout_v2's two percentages filled in. */
function flagsText(control = 90, treatment = 10) {
  return `
[[flags]]
name = "checkout_v2"
variants = [{ name = "control", percent = ${control} }, { name = "treatment", percent = ${treatment} }]

[[flags]]
name = "search_ranking"
variants = [{ name = "bm25", percent = 50 }, { name = "learned", percent = 50 }]
`;
}

test('users get the documented variants', () => {
  const flags = Flags.fromToml(flagsText());
  assert.equal(flags.size, 2);
  // Buckets: checkout_v2/user-1 6666 and user-2 4270 (control owns 0-8999),
  // search_ranking/user-1 9624 (learned owns 5000-9999).
  assert.equal(flags.variant('checkout_v2', 'user-1'), 'control');
  assert.equal(flags.variant('checkout_v2', 'user-2'), 'control');
  assert.equal(flags.variant('search_ranking', 'user-1'), 'learned');
  assert.equal(flags.variant('no_such_flag', 'user-1'), null);
  assert.deepEqual(flags.assign('user-1'), { checkout_v2: 'control', search_ranking: 'learned' });
  assert.deepEqual(Object.keys(flags.assign('user-1')), ['checkout_v2', 'search_ranking']);
});

test('growing treatment from 10 to 40 percent moves the users of buckets 6000-8999', () => {
  const flags = Flags.fromToml(flagsText(60, 40));
  assert.equal(flags.variant('checkout_v2', 'user-1'), 'treatment');
  assert.equal(flags.variant('checkout_v2', 'user-2'), 'control');
});

test('JSON text assigns as TOML does', () => {
  const flags = Flags.fromJson(
    JSON.stringify({
      flags: [
        { name: 'checkout_v2', variants: [{ name: 'control', percent: 90 }, { name: 'treatment', percent: 10 }] },
        { name: 'search_ranking', variants: [{ name: 'bm25', percent: 50 }, { name: 'learned', percent: 50 }] },
      ],
    }),
  );
  const fromToml = Flags.fromToml(flagsText());
  for (const user of ['user-1', 'user-2', 'u-42', '']) {
    assert.deepEqual(flags.assign(user), fromToml.assign(user), user);
  }
});

test('bad flags throw a ConfigError naming where', () => {
  assert.throws(
    () => Flags.fromToml(flagsText(80, 10)),
    (error) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.kind, 'config');
      assert.equal(error.field, 'flags[0].variants');
      assert.equal(error.message, 'flags[0].variants: the percentages add up to 90, not 100');
      return true;
    },
  );
  assert.throws(
    () => Flags.fromToml('[[flags]]\nnme = "f"\n'),
    (error) => error instanceof ConfigError && error.field === 'flags file' && /line 2 column 1/.test(error.message),
  );
  assert.throws(() => Flags.fromJson('{'), ConfigError);
});

test('fromFile reads TOML, or JSON by the .json name, and names the file in errors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flags-'));
  try {
    const tomlFile = path.join(dir, 'flags.toml');
    fs.writeFileSync(tomlFile, flagsText());
    assert.deepEqual(Flags.fromFile(tomlFile).assign('user-1'), Flags.fromToml(flagsText()).assign('user-1'));
    const jsonFile = path.join(dir, 'flags.json');
    fs.writeFileSync(
      jsonFile,
      JSON.stringify({ flags: [{ name: 'checkout_v2', variants: [{ name: 'control', percent: 60 }, { name: 'treatment', percent: 40 }] }] }),
    );
    assert.equal(Flags.fromFile(jsonFile).variant('checkout_v2', 'user-1'), 'treatment');
    const missing = path.join(dir, 'missing.toml');
    assert.throws(
      () => Flags.fromFile(missing),
      (error) => error instanceof ConfigError && error.kind === 'config' && error.message.startsWith(`${missing}: flags file: cannot be read`),
    );
    const bad = path.join(dir, 'bad.toml');
    fs.writeFileSync(bad, flagsText(80, 10));
    assert.throws(
      () => Flags.fromFile(bad),
      (error) =>
        error instanceof ConfigError &&
        error.field === 'flags[0].variants' &&
        error.message === `${bad}: flags[0].variants: the percentages add up to 90, not 100`,
    );
    assert.throws(() => Flags.fromFile(42), InvalidArgumentError);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('misuse is an InvalidArgumentError', () => {
  assert.throws(() => Flags.fromToml(42), InvalidArgumentError);
  assert.throws(() => new Flags(), InvalidArgumentError);
  const flags = Flags.fromToml(flagsText());
  assert.throws(() => flags.assign(undefined), InvalidArgumentError);
  assert.throws(() => flags.variant('checkout_v2'), InvalidArgumentError);
});
