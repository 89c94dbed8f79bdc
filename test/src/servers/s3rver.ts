// s3rver (npm 3.7.1) in a child Node process: its CPU work does not stall the test process, and the
// child runs with --openssl-legacy-provider (s3rver's ListObjectsV2 continuation token uses DES,
// which OpenSSL 3 only has in the legacy provider: without it pagination answers 500 on Node >= 17).

import { mkdtemp } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import {
  LOOPBACK,
  ManagedProcess,
  ServerUnavailableError,
  createBucketUntil,
  makeS3ClientConfig,
  recordPorts,
  removeTempDir,
  serverDebug,
  startTimeoutMs,
  toUnavailable,
  trackTempDir,
  type S3Server,
} from './index.js';

const require = createRequire(import.meta.url);

const NAME = 's3rver';
const INSTALL = 'pnpm install in /work/main (test/package.json depends on s3rver 3.7.1)';

// argv: [node, modulePath, directory, silent]
const CHILD_SRC = `
const S3rver = require(process.argv[1]);
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  directory: process.argv[2],
  silent: process.argv[3] === '1',
  vhostBuckets: false,
});
server.run().then(
  ({ port }) => process.stdout.write('WALSHIP_READY ' + JSON.stringify({ port }) + '\\n'),
  (err) => { console.error((err && err.stack) || String(err)); process.exit(1); },
);
`;

export async function startS3rver(opts: { bucket?: string; dir?: string } = {}): Promise<S3Server> {
  const bucket = opts.bucket ?? 'walship-test';
  let modulePath: string;
  try {
    modulePath = require.resolve('s3rver');
  } catch (e) {
    throw new ServerUnavailableError({ server: NAME, reason: 'the npm package s3rver cannot be resolved', install: INSTALL, cause: e });
  }
  const deadline = Date.now() + startTimeoutMs();
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'walship-s3rver-')));
  if (ownsDir) trackTempDir(dir);

  const args = ['--openssl-legacy-provider', '-e', CHILD_SRC, modulePath, dir, serverDebug() ? '0' : '1'];
  const proc = new ManagedProcess(NAME, process.execPath, args, {
    displayArgs: ['--openssl-legacy-provider', '-e', '<s3rver launcher>', modulePath, dir],
  });
  try {
    const m = await proc.waitForLine(/^WALSHIP_READY (\{.*\})$/, deadline, 's3rver to listen');
    const port = (JSON.parse(m[1]!) as { port: number }).port;
    const endpoint = `http://${LOOPBACK}:${port}`;
    const creds = { endpoint, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    await createBucketUntil(makeS3ClientConfig(creds), bucket, deadline, [proc], proc);

    let stopped: Promise<void> | undefined;
    const server: S3Server = {
      ...creds,
      bucket,
      kind: 's3rver',
      s3ClientConfig: () => makeS3ClientConfig(creds),
      stop: () =>
        (stopped ??= (async () => {
          await proc.stop();
          if (ownsDir) await removeTempDir(dir);
        })()),
    };
    recordPorts(server, [port]);
    return server;
  } catch (e) {
    await proc.stop();
    if (ownsDir) await removeTempDir(dir);
    throw toUnavailable(NAME, e, [proc], INSTALL);
  }
}
