import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, openPageDatabase, type PageSource } from './index.js';
import { WalshipError } from './errors.js';

/** A WAL-mode database file written by walship (8 KiB pages), and a PageSource over its bytes that counts reads. */
async function fixture(): Promise<{ bytes: Uint8Array; source: PageSource & { reads: number }; cleanup: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'walship-pagevfs-'));
  const path = join(dir, 'a.db');
  const db = await openDatabase(path, { onCommit: () => undefined });
  db.exec('CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT); CREATE INDEX t_b ON t(b)');
  const insert = db.prepare('INSERT INTO t VALUES (?, ?)');
  db.transaction(() => {
    for (let i = 0; i < 3000; i++) insert.run(i, `row ${i} ${'x'.repeat(i % 200)}`);
  })();
  db.acknowledge(db.txid);
  db.checkpoint();
  db.close();
  const bytes = new Uint8Array(readFileSync(path));
  const pageSize = 8192;
  const source = {
    pageSize,
    pageCount: bytes.length / pageSize,
    reads: 0,
    readPage(pgno: number, out: Uint8Array): void {
      this.reads++;
      out.set(bytes.subarray((pgno - 1) * pageSize, pgno * pageSize));
    },
  };
  return { bytes, source, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

test('openPageDatabase serves a WAL-mode database page by page, read-only, with the query API', async () => {
  const f = await fixture();
  try {
    const db = await openPageDatabase(f.source);
    assert.deepEqual(db.prepare('SELECT count(*) AS n, sum(a) AS s FROM t').get(), { n: 3000, s: (2999 * 3000) / 2 });
    assert.deepEqual(db.prepare('SELECT a FROM t WHERE b = ?').pluck().get('row 1234 ' + 'x'.repeat(1234 % 200)), 1234);
    assert.equal([...db.prepare('SELECT a FROM t ORDER BY b DESC LIMIT 3').iterate()].length, 3, 'a sort needs no temp file');
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    assert.ok(f.source.reads > 0);
    assert.throws(() => db.exec('INSERT INTO t VALUES (99999, 1)'), { code: 'SQLITE_READONLY' });
    db.close();
  } finally {
    f.cleanup();
  }
});

test('an error the page source throws is the statement\u2019s error, class and code kept', async () => {
  const f = await fixture();
  try {
    let fail = false;
    const source: PageSource = {
      pageSize: f.source.pageSize,
      pageCount: f.source.pageCount,
      readPage(pgno, out) {
        if (fail && pgno > 1) throw new WalshipError('ERR_TEST_PAGE', `page ${pgno} is unavailable`, { details: { pgno } });
        f.source.readPage(pgno, out);
      },
    };
    const db = await openPageDatabase(source);
    fail = true;
    assert.throws(() => db.prepare('SELECT count(*) FROM t').get(), (e: Error & { code?: string }) => e instanceof WalshipError && e.code === 'ERR_TEST_PAGE');
    fail = false;
    assert.equal(db.prepare('SELECT count(*) AS n FROM t').get()?.n, 3000, 'the next statement reads again');
    db.close();
    await assert.rejects(
      openPageDatabase({ ...source, readPage: () => { throw new WalshipError('ERR_TEST_PAGE', 'page 1 is unavailable'); } }),
      { code: 'ERR_TEST_PAGE' },
      'a failure at open is the source\u2019s error too',
    );
  } finally {
    f.cleanup();
  }
});
