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
//
// s3rver 3.7.1 answers a PUT when its hashing stream finishes, before the file stream has written the
// bytes, and writes over the object's file in place: a GET right after the PUT's answer can read a
// truncated object (seen in CI: a database.json just written read back as invalid JSON). S3 is
// read-after-write consistent and replaces an object atomically, so the launcher replaces the store's
// putObject with one that writes a temporary file, waits for it to close, and renames it into place.
const CHILD_SRC = `
const path = require('node:path');
const fs = require('node:fs');
const crypto = require('node:crypto');
const { Transform } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const S3rver = require(process.argv[1]);
const FilesystemStore = require(path.join(path.dirname(process.argv[1]), 'stores', 'filesystem.js'));
let putSeq = 0;
FilesystemStore.prototype.putObject = async function putObject(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await fs.promises.mkdir(path.dirname(objectPath), { recursive: true });
  const temp = objectPath + '.walship-put-' + (++putSeq);
  const md5 = crypto.createHash('md5');
  let size = 0;
  const count = new Transform({ transform(chunk, encoding, done) { md5.update(chunk); size += chunk.length; done(null, chunk); } });
  const source = Buffer.isBuffer(object.content) ? [object.content] : object.content;
  try {
    await pipeline(source, count, fs.createWriteStream(temp));
    await fs.promises.rename(temp, objectPath);
  } catch (e) {
    await fs.promises.rm(temp, { force: true });
    throw e;
  }
  const digest = md5.digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, digest);
  return { size, md5: digest };
};
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
