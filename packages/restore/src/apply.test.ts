import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PageHashes, loadFormat } from '@walship/format';
import { PageFile } from './apply.js';

const PAGE = 512;
let dir: string;

before(async () => {
  await loadFormat();
  dir = mkdtempSync(join(tmpdir(), 'walship-pagefile-'));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('PageFile', () => {
  test('a page that later transactions rewrite is written once; every transaction is still checked; truncated pages never reach the file', () => {
    const file = new PageFile(join(dir, 'a.db'), PAGE, { create: true });
    const mirror = new PageHashes(PAGE);
    const image = new Map<number, Uint8Array>();
    let size = 0;
    const commit = (txid: number, pages: [number, number][], commitSize: number): void => {
      for (const [pgno, fill] of pages) {
        const data = new Uint8Array(PAGE).fill(fill);
        file.stagePage(pgno, data);
        mirror.set(pgno, data);
        image.set(pgno, data);
      }
      mirror.truncate(commitSize);
      for (const pgno of [...image.keys()]) if (pgno > commitSize) image.delete(pgno);
      size = commitSize;
      file.commit({ txid, commitSize, postChecksum: mirror.value }, 'test');
    };
    commit(1, [[1, 1], [2, 2], [3, 3]], 3);
    for (let t = 2; t <= 300; t++) commit(t, [[1, t & 0xff], [2, (t * 7) & 0xff]], 3);
    commit(301, [[4, 9], [5, 9]], 5);
    commit(302, [[1, 5]], 3);
    assert.throws(() => file.commit({ txid: 303, commitSize: 3, postChecksum: mirror.value ^ 1n }, 'test'), { code: 'ERR_CHAIN_MISMATCH' });
    file.finish(size);
    file.close();
    assert.equal(file.bytesWritten, 3 * PAGE, 'pages 1..3 once each; 4 and 5 were truncated away before they were written');
    const bytes = readFileSync(join(dir, 'a.db'));
    assert.equal(bytes.length, 3 * PAGE);
    for (const [pgno, data] of image) assert.ok(bytes.subarray((pgno - 1) * PAGE, pgno * PAGE).equals(data), `page ${pgno}`);
  });
});
