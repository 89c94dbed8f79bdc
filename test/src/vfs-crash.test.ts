import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDatabase } from '@walship/vfs';
import { nativeSqlite, txnDigest } from './util/replay.js';

// kill -9 of a writer at random points, then recovery: integrity, every commit the writer saw is
// present, txids continue, and a transaction emitted again has the same bytes as before.

const writer = fileURLToPath(new URL('./fixtures/crash-writer.js', import.meta.url));
const SEQUENCES = Number(process.env.WALSHIP_CRASH_SEQUENCES ?? 6);
const KILLS_PER_SEQUENCE = Number(process.env.WALSHIP_CRASH_KILLS ?? 10);

interface ChildRun {
  lines: string[];
}

function runAndKill(path: string, seed: number, pageSize: number, afterMs: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, path, String(seed), String(pageSize)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let opened = false;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (!opened && /^O /m.test(stdout)) {
        opened = true;
        setTimeout(() => child.kill('SIGKILL'), afterMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') {
        reject(new Error(`writer exited on its own (code ${code}, signal ${signal}): ${stderr}`));
        return;
      }
      const lines = stdout.split('\n');
      lines.pop(); // a line cut by the kill is not a report
      resolve({ lines });
    });
  });
}

for (const pageSize of [512, 4096]) {
  test(`kill -9 at random points: recovery keeps every commit and re-emits identical bytes (page size ${pageSize})`, async () => {
    let kills = 0;
    let checkedReemits = 0;
    for (let s = 0; s < SEQUENCES / 2; s++) {
      const dir = mkdtempSync(join(tmpdir(), 'walship-crash-'));
      const path = join(dir, 'db.sqlite');
      const digests = new Map<number, string>();
      const committed = new Map<number, number>();
      let lastTxidSeen = 0;
      try {
        for (let k = 0; k < KILLS_PER_SEQUENCE; k++) {
          const seed = (pageSize * 7919 + s * 104729 + k * 1299709) | 0;
          const run = await runAndKill(path, seed, pageSize, 20 + ((seed >>> 3) % 400));
          kills++;
          for (const line of run.lines) {
            const [tag, a, b] = line.split(' ');
            // A new database gets txid 1 for walship's own table before the writer sees it.
            if (tag === 'O') assert.equal(Number(a), k === 0 ? 1 : lastTxidSeen, 'the writer reopens at the txid recovery reported');
            if (tag === 'E') {
              const prev = digests.get(Number(a));
              if (prev !== undefined) assert.equal(b, prev, `txid ${a} emitted again with the same bytes`);
              digests.set(Number(a), b!);
            }
            if (tag === 'C') committed.set(Number(a), Number(b));
          }
          const reemitted: { txid: number; digest: string }[] = [];
          const db = await openDatabase(path, { onCommit: (txn) => reemitted.push({ txid: txn.txid, digest: txnDigest(txn) }) });
          try {
            assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
            const maxCommittedTxid = Math.max(0, ...committed.values());
            assert.ok(db.txid >= maxCommittedTxid, `recovered txid ${db.txid} >= last commit the writer saw (${maxCommittedTxid})`);
            const present = new Set(db.prepare('SELECT seq FROM log').pluck().all() as number[]);
            for (const seq of committed.keys()) assert.ok(present.has(seq), `log row ${seq} (seen committed) survived`);
            for (let i = 0; i < reemitted.length; i++) {
              const r = reemitted[i]!;
              if (i > 0) assert.equal(r.txid, reemitted[i - 1]!.txid + 1, 're-emitted txids are contiguous');
              const before = digests.get(r.txid);
              if (before !== undefined) {
                assert.equal(r.digest, before, `re-emitted txid ${r.txid} is byte-identical`);
                checkedReemits++;
              }
              digests.set(r.txid, r.digest);
            }
            if (reemitted.length > 0) assert.equal(reemitted.at(-1)!.txid, db.txid, 're-emission ends at the last txid');
            lastTxidSeen = db.txid;
          } finally {
            db.close();
          }
          const copy = join(dir, 'copy.sqlite');
          copyFileSync(path, copy);
          if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${copy}-wal`);
          assert.equal(nativeSqlite(copy, 'PRAGMA integrity_check'), 'ok', 'the native sqlite3 shell agrees');
          rmSync(copy, { force: true });
          rmSync(`${copy}-wal`, { force: true });
          rmSync(`${copy}-shm`, { force: true });
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    assert.ok(kills >= (SEQUENCES / 2) * KILLS_PER_SEQUENCE);
    assert.ok(checkedReemits > 0, 'some re-emitted transactions were compared with their first emission');
  });
}
