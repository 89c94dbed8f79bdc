// The walship CLI is a process of its own: it must not print the AWS SDK's Node end-of-support
// warning (nine lines on stderr on Node 20, on every command that builds an S3 client), while a
// program that imports the library keeps every process warning, that one included.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startS3rver, type S3Server } from './servers/index.js';

const CLI = fileURLToPath(new URL('../../packages/restore/dist/cli.js', import.meta.url));
const RESTORE = new URL('../../packages/restore/dist/index.js', import.meta.url).href;
const WARNING = 'NodeVersionSupportWarning';

let server: S3Server;
let env: NodeJS.ProcessEnv;

before(async () => {
  server = await startS3rver();
  env = {
    PATH: process.env['PATH'],
    HOME: process.env['HOME'],
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_REGION: server.region,
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
  };
});

after(async () => {
  await server?.stop();
});

test('walship ls builds an S3 client and prints no SDK end-of-support warning', () => {
  const r = spawnSync(process.execPath, [CLI, 'ls', `s3://${server.bucket}/no-such-db`], { env, encoding: 'utf8', timeout: 60_000 });
  assert.ok(r.status !== null, `the CLI ran (${r.error?.message ?? r.signal})`);
  assert.ok(!r.stderr.includes(WARNING), `stderr has no ${WARNING}:\n${r.stderr}`);
  assert.ok(!r.stderr.includes('(node:'), `stderr has no process warning at all:\n${r.stderr}`);
});

test('the CLI hides that warning only: other process warnings still print', () => {
  // The CLI module with main() already run (usage error, no client): the filter is installed.
  const src = `await import(${JSON.stringify(new URL('../../packages/restore/dist/cli.js', import.meta.url).href)});
process.emitWarning('${WARNING}: from the SDK');
process.emitWarning('another warning', 'CustomWarning');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', src, '--', '--help'], { env, encoding: 'utf8', timeout: 60_000 });
  assert.ok(!r.stderr.includes(WARNING), `the SDK's warning is hidden:\n${r.stderr}`);
  assert.match(r.stderr, /CustomWarning: another warning/, `other warnings print:\n${r.stderr}`);
});

test('importing @walship/restore leaves process warnings alone', () => {
  const src = `await import(${JSON.stringify(RESTORE)});
process.emitWarning('${WARNING}: from the SDK');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', src], { env, encoding: 'utf8', timeout: 60_000 });
  assert.match(r.stderr, new RegExp(`${WARNING}: from the SDK`), `a library import does not filter warnings:\n${r.stderr}`);
});
