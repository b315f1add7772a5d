// Builds the native addon into ./ingest-core.node and writes its TypeScript
// declarations to ./binding.d.ts (napi-rs's generator).
//
//   node scripts/build.mjs [--profile dev|release-ffi] [--check]
//
// Unlike `napi build`, this runs a plain `cargo build -p ingest-node` for the host,
// so the addon shares the workspace's target directory (and its compiled
// ingest-core and librdkafka) with every other crate instead of rebuilding them all
// under target/<triple>/. --check fails when the generated declarations differ from
// the committed binding.d.ts.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateTypeDef } from '@napi-rs/cli';

const here = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const root = resolve(here, '../..');
const args = process.argv.slice(2);
const check = args.includes('--check');
const profileAt = args.indexOf('--profile');
const profile = profileAt >= 0 ? args[profileAt + 1] : 'dev';

const typeDefDir = mkdtempSync(join(tmpdir(), 'ingest-node-types-'));
try {
  execFileSync('cargo', ['build', '-p', 'ingest-node', '--profile', profile], {
    cwd: root,
    stdio: 'inherit',
    env: {
      ...process.env,
      NAPI_TYPE_DEF_TMP_FOLDER: typeDefDir,
      // A new value makes cargo re-run napi-build and recompile the crate, so the
      // declarations are written even when nothing else changed.
      NAPI_FORCE_BUILD_INGEST_NODE: String(Date.now()),
    },
  });
  const targetDir = process.env.CARGO_TARGET_DIR
    ? resolve(root, process.env.CARGO_TARGET_DIR)
    : join(root, 'target');
  const outDir = join(targetDir, profile === 'dev' ? 'debug' : profile);
  copyFileSync(join(outDir, 'libingest_node.so'), join(here, 'ingest-core.node'));

  const { dts } = await generateTypeDef({ typeDefDir, cwd: here, constEnum: true });
  const target = join(here, 'binding.d.ts');
  if (check) {
    if (readFileSync(target, 'utf8') !== dts) {
      writeFileSync(join(here, 'binding.d.ts.new'), dts);
      console.error(
        'binding.d.ts is out of date with src/*.rs: see binding.d.ts.new, or run ' +
          '`node scripts/build.mjs` in bindings/node and commit binding.d.ts',
      );
      process.exit(1);
    }
  } else {
    writeFileSync(target, dts);
  }
} finally {
  rmSync(typeDefDir, { recursive: true, force: true });
}
