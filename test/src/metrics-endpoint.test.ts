// The `metrics` option of openReplicated: Prometheus scrapes the database over HTTP with no glue
// code. s3rver over HTTP, started here on a random loopback port; the scrapes are real HTTP.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openReplicated, type ReplicatedOptions } from '@walship/shipper';
import { loadFormat } from '@walship/format';
import { startS3rver, type S3Server } from './servers/index.js';
import { s3Location } from './util/s3.js';

let server: S3Server;
let dir: string;

before(async () => {
  await loadFormat();
  server = await startS3rver();
  dir = mkdtempSync(join(tmpdir(), 'walship-metrics-'));
});

after(async () => {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const options = (prefix: string, metrics: ReplicatedOptions['metrics']): ReplicatedOptions => ({
  lease: false,
  s3: s3Location(server, `metrics/${prefix}-${randomBytes(4).toString('hex')}`),
  batchWindowMs: 0,
  logLevel: 'silent',
  metrics,
});

/** The value of a sample line `name{...} value` in Prometheus text, or undefined. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('metrics endpoint', () => {
  test('serves the same Prometheus text as metrics() on GET /metrics, 404 elsewhere, and stops at close', async () => {
    const db = await openReplicated(join(dir, 'served.db'), options('served', { port: 0 }));
    let closed = false;
    try {
      assert.match(db.metricsUrl ?? '', /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
      for (let i = 0; i < 5; i++) db.prepare('INSERT INTO t (v) VALUES (?)').run(`row ${i}`);
      const { txid } = await db.flush();
      const res = await fetch(db.metricsUrl!);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      assert.equal(sample(text, 'walship_durable_txid'), txid, 'the scraped durable txid is the flushed one');
      assert.ok((sample(text, 'walship_transactions_durable_total') ?? 0) >= 6, 'every transaction counted as durable');
      const head = await fetch(db.metricsUrl!, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), '');
      const other = await fetch(new URL('/other', db.metricsUrl!));
      assert.equal(other.status, 404);
      assert.match(await other.text(), /metrics are at \/metrics/);
      const url = db.metricsUrl!;
      await db.close();
      closed = true;
      await assert.rejects(fetch(url), 'nothing listens after close()');
    } finally {
      if (!closed) await db.close();
    }
  });

  test('a port in use is ERR_METRICS_LISTEN at open, naming host and port, and nothing is left open', async () => {
    const first = await openReplicated(join(dir, 'first.db'), options('first', { port: 0, path: '/scrape' }));
    try {
      assert.match(first.metricsUrl ?? '', /\/scrape$/);
      const port = Number(new URL(first.metricsUrl!).port);
      const path = join(dir, 'second.db');
      await assert.rejects(openReplicated(path, options('second', { port })), (e: Error & { code?: string; details?: Record<string, unknown> }) => {
        assert.equal(e.code, 'ERR_METRICS_LISTEN');
        assert.deepEqual({ host: e.details?.host, port: e.details?.port, code: e.details?.code }, { host: '127.0.0.1', port, code: 'EADDRINUSE' });
        assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\)`));
        return true;
      });
      assert.equal(existsSync(path), false, 'the refused open created no database file');
      // The first database still serves.
      assert.equal((await fetch(first.metricsUrl!)).status, 200);
    } finally {
      await first.close();
    }
  });

  test('metrics options are checked before anything opens (ERR_INVALID_OPTION)', async () => {
    for (const [metrics, option] of [
      [{ port: -1 }, 'metrics.port'],
      [{ port: 70000 }, 'metrics.port'],
      [{ port: 1.5 }, 'metrics.port'],
      [{ port: 0, path: 'metrics' }, 'metrics.path'],
      [{ port: 0, host: '' }, 'metrics.host'],
      [7, 'metrics'],
    ] as const) {
      await assert.rejects(openReplicated(join(dir, 'never.db'), options('bad', metrics as unknown as ReplicatedOptions['metrics'])), (e: Error & { code?: string; details?: { option?: string } }) => {
        assert.equal(e.code, 'ERR_INVALID_OPTION');
        assert.equal(e.details?.option, option);
        return true;
      });
    }
  });
});
