// kill -9 of a replicated writer at random moments, most of them mid-upload (a fault proxy delays
// and resets requests in front of s3rver), then a restart on the same file. After every kill the
// replica must be an exact prefix of what the writer committed (P), at least what flush() reported
// durable (D), with a linked checksum chain (C) and integrity ok (I); every restart must continue
// the same generation; at the end the replica rebuilds the local file byte for byte.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openOracle } from './util/oracle-sqlite.js';
import { openReplicated } from '@walship/shipper';
import { createS3Storage } from '@walship/storage';
import { loadFormat } from '@walship/format';
import { startS3rver, startFaultProxy } from './servers/index.js';
import { rebuildFromReplica } from './util/replica.js';

const KILLS = Number(process.env.WALSHIP_SHIP_KILLS ?? 12);
const writer = fileURLToPath(new URL('./fixtures/ship-writer.js', import.meta.url));

function expectedValue(n: number, v: string): boolean {
  return v.startsWith(`${n}:`) && v.slice(`${n}:`.length).split('').every((c) => c === String.fromCharCode(97 + (n % 26)));
}

/** Checks that a database image is exactly the writer's state after some commit m; returns m. */
function checkPrefix(bytes: Uint8Array, dir: string): number {
  const file = join(dir, `check-${process.hrtime.bigint()}.db`);
  writeFileSync(file, bytes);
  const db = openOracle(file, { readonly: true });
  try {
    assert.equal(db.pragmaValue('integrity_check'), 'ok');
    // Before the writer's schema: the state after txid 1 of a new database (its generation's
    // snapshot), which is commit 0.
    const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name IN ('rows', 'meta')").pluck().all();
    if (tables.length === 0) return 0;
    const m = db.prepare('SELECT n FROM meta').pluck().get() as number;
    const rows = db.prepare('SELECT n, v FROM rows ORDER BY n').all() as { n: number; v: string }[];
    assert.equal(rows.length, m, 'one row per commit up to meta.n');
    rows.forEach((r, i) => {
      assert.equal(r.n, i + 1);
      assert.ok(expectedValue(r.n, r.v), `row ${r.n} has its own value`);
    });
    return m;
  } finally {
    db.close();
    rmSync(file, { force: true });
  }
}

test(`kill -9 of a replicated writer ${KILLS} times mid-upload: the replica is always an exact, durable prefix, and restarts continue the lineage`, { timeout: 600_000 }, async () => {
  await crashRounds('bursts', KILLS);
});

test(`writes without pauses checkpoint through the spool; kill -9 ${Math.ceil(KILLS / 2)} times keeps the replica an exact, durable prefix`, { timeout: 600_000 }, async () => {
  const spooled = await crashRounds('steady', Math.ceil(KILLS / 2));
  assert.ok(spooled > 0, 'the spool was used');
});

async function crashRounds(mode: 'bursts' | 'steady', kills: number): Promise<number> {
  await loadFormat();
  const server = await startS3rver();
  const proxy = await startFaultProxy({ target: server.endpoint, seed: 5, delayMs: 300, faultRate: 0.15, kinds: ['delay', 'reset-before', 'reset-after', 'error-503'] });
  const dir = mkdtempSync(join(tmpdir(), 'walship-shipcrash-'));
  const path = join(dir, 'w.db');
  const prefix = `crash/${Date.now()}`;
  const storage = createS3Storage({ bucket: server.bucket, endpoint: server.endpoint, region: server.region, forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
  let maxCommitted = 0;
  let maxDurable = 0;
  const generations = new Set<string>();
  let rnd = 12345;
  let spooled = 0;
  const next = (n: number): number => {
    rnd = (rnd * 1103515245 + 12345) & 0x7fffffff;
    return rnd % n;
  };
  try {
    for (let round = 0; round < kills; round++) {
      const child = spawn(process.execPath, [writer, path, proxy.endpoint, server.bucket, prefix, server.region, server.accessKeyId, server.secretAccessKey, String(round + 1), mode], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let buf = '';
      let stderr = '';
      let opened = false;
      let sawDurable!: () => void;
      const durableP = new Promise<void>((r) => (sawDurable = r));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<void>((r) => child.on('exit', () => r()));
      const openedP = new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const [kind, a, b] = buf.slice(0, i).split(' ');
            buf = buf.slice(i + 1);
            if (kind === 'O') {
              opened = true;
              generations.add(b!);
              resolve();
            } else if (kind === 'C') maxCommitted = Math.max(maxCommitted, Number(a));
            else if (kind === 'D') {
              maxDurable = Math.max(maxDurable, Number(a));
              sawDurable();
            } else if (kind === 'S') spooled = Math.max(spooled, Number(a));
          }
        });
        child.on('exit', (code) => {
          if (!opened) reject(new Error(`writer exited (${code}) before opening: ${stderr}`));
        });
      });
      await openedP;
      // Until something is durable, a round first waits for the writer's first durable report
      // (bounded): on a loaded machine every writer could otherwise die before its generation's
      // first snapshot lands, and the lineage the test is about would never start.
      if (maxDurable === 0) {
        let bound: NodeJS.Timeout | undefined;
        await Promise.race([durableP, exited, new Promise((r) => (bound = setTimeout(r, 30_000)))]);
        clearTimeout(bound);
      }
      await new Promise((r) => setTimeout(r, (mode === 'steady' ? 600 : 150) + next(600)));
      child.kill('SIGKILL');
      await exited;
      let rebuilt;
      try {
        rebuilt = await rebuildFromReplica(storage, prefix);
      } catch (e) {
        // Killed before its generation's first snapshot landed: nothing was durable, nothing is
        // restorable, and the next writer starts the lineage afresh.
        if (/no restorable generation/.test((e as Error).message) && maxDurable === 0) {
          generations.clear();
          continue;
        }
        throw e;
      }
      const m = checkPrefix(rebuilt.bytes, dir);
      assert.ok(m >= maxDurable, `round ${round}: replica holds commit ${m}, flush() had reported ${maxDurable} durable`);
      assert.ok(m <= maxCommitted, `round ${round}: replica holds ${m}, more than the ${maxCommitted} committed`);
    }
    assert.equal(generations.size, 1, `every restart continued the first generation (${[...generations].join(', ')})`);
    const db = await openReplicated(path, {
      lease: false,
      s3: { bucket: server.bucket, prefix, endpoint: server.endpoint, region: server.region, forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } },
      logLevel: 'silent',
    });
    assert.equal(db.status().generation, [...generations][0]);
    const n = db.prepare('SELECT n FROM meta').pluck().get() as number;
    assert.ok(n >= maxCommitted, `the local database kept every commit the writer saw return (${n} >= ${maxCommitted})`);
    await db.close();
    const rebuilt = await rebuildFromReplica(storage, prefix);
    const local = readFileSync(path);
    if (!Buffer.from(rebuilt.bytes).equals(local)) {
      const firstDiff = local.findIndex((b, i) => b !== rebuilt.bytes[i]);
      assert.fail(`the replica rebuilds the local file byte for byte: rebuilt ${rebuilt.bytes.length} bytes at txid ${rebuilt.txid} from ${rebuilt.objects.length} objects (${rebuilt.objects.slice(-3).join(', ')}), local ${local.length} bytes at txid ${db.txid}; first difference at byte ${firstDiff} (page ${Math.floor(firstDiff / rebuilt.pageSize) + 1})`);
    }
    assert.equal(checkPrefix(rebuilt.bytes, dir), n);
    return spooled;
  } finally {
    await proxy.stop();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
