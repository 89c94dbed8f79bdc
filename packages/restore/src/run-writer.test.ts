import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { O_DIRECT, nodeFs, openDirect, type FsOps } from '@walship/vfs/direct-io';
import { DIRECT_RUN_BYTES, RunWriter } from './run-writer.js';

const PAGE = 8192;

function page(pgno: number): Uint8Array {
  return new Uint8Array(PAGE).map((_, i) => (pgno * 131 + i) & 0xff);
}

/** Writes pages 1..n as one stream and a few scattered ones (short runs) after; returns the file's bytes. */
async function write(path: string, n: number, fs?: FsOps, background = 0): Promise<{ bytes: Buffer; direct: number; written: number }> {
  const fd = openSync(path, 'w+');
  try {
    const w = new RunWriter(fd, PAGE, { directPath: path, background, ...(fs ? { fs } : {}) });
    try {
      for (let pgno = 1; pgno <= n; pgno++) {
        w.append(pgno, page(pgno));
        if (background > 0 && pgno % 100 === 0) {
          await w.room();
          assert.ok(w.waiting < background, `room() resolved with ${w.waiting} runs waiting`);
        }
      }
      w.flush();
      for (const pgno of [3, n - 1]) w.append(pgno, page(pgno + 1000));
      w.flush();
      await w.settle();
      return { bytes: readFileSync(path), direct: w.directBytesWritten, written: w.bytesWritten };
    } finally {
      w.close();
    }
  } finally {
    closeSync(fd);
  }
}

function expected(n: number): Buffer {
  const out = Buffer.alloc(n * PAGE);
  for (let pgno = 1; pgno <= n; pgno++) out.set(page(pgno), (pgno - 1) * PAGE);
  for (const pgno of [3, n - 1]) out.set(page(pgno + 1000), (pgno - 1) * PAGE);
  return out;
}

/** Whether this temporary directory's file system takes O_DIRECT at all (tmpfs does not). */
function directWorks(dir: string): boolean {
  const probe = join(dir, 'probe');
  closeSync(openSync(probe, 'w'));
  const fd = openDirect(nodeFs, probe, 1);
  if (fd === null) return false;
  closeSync(fd);
  return true;
}

for (const background of [0, 2]) {
  test(`RunWriter${background > 0 ? ' (writes in the background)' : ''}: long runs go through O_DIRECT where the file system takes it, short ones through the page cache; the file is the same`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'walship-runwriter-'));
    try {
      const n = 2000; // 16 MiB: four full runs
      const got = await write(join(dir, 'a'), n, undefined, background);
      assert.ok(got.bytes.equals(expected(n)), 'the file holds every page as appended, later writes last');
      assert.equal(got.written, (n + 2) * PAGE);
      if (O_DIRECT !== undefined && directWorks(dir)) {
        assert.ok(got.direct >= n * PAGE - DIRECT_RUN_BYTES, `direct bytes ${got.direct}`);
        assert.ok(got.direct <= n * PAGE, 'the two single-page runs went through the page cache');
      } else {
        assert.equal(got.direct, 0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('RunWriter: O_DIRECT refused at open or at the first write falls back to buffered writes, nothing lost', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-runwriter-'));
  try {
    const einval = (): never => {
      throw Object.assign(new Error('EINVAL: invalid argument'), { code: 'EINVAL' });
    };
    const directFds = new Set<number>();
    const refuseOpen: FsOps = { ...nodeFs, openSync: (p, flags, mode) => (O_DIRECT !== undefined && flags & O_DIRECT ? einval() : nodeFs.openSync(p, flags, mode)) };
    const refuseWrite: FsOps = {
      ...nodeFs,
      openSync: (p, flags, mode) => {
        const fd = nodeFs.openSync(p, flags, mode);
        if (O_DIRECT !== undefined && flags & O_DIRECT) directFds.add(fd);
        return fd;
      },
      writeSync: (fd, buffer, offset, length, position) => (directFds.has(fd) ? einval() : nodeFs.writeSync(fd, buffer, offset, length, position)),
    };
    for (const [name, fs] of [['open', refuseOpen], ['write', refuseWrite]] as const) {
      for (const background of [0, 2]) {
        const n = 700;
        const got = await write(join(dir, `${name}-${background}`), n, fs, background);
        assert.ok(got.bytes.equals(expected(n)), `refused at ${name}, background ${background}: the file is whole`);
        assert.equal(got.direct, 0, `refused at ${name}, background ${background}: nothing went through O_DIRECT`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('RunWriter (writes in the background): a failed write fails room() and settle(), and nothing after it is written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-runwriter-'));
  try {
    const path = join(dir, 'eio');
    let writes = 0;
    const eio: FsOps = {
      ...nodeFs,
      openSync: (p, flags, mode) => nodeFs.openSync(p, flags & ~(O_DIRECT ?? 0), mode),
      writeSync: (fd, buffer, offset, length, position) => {
        if (++writes === 2) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
        return nodeFs.writeSync(fd, buffer, offset, length, position);
      },
    };
    const fd = openSync(path, 'w+');
    const w = new RunWriter(fd, PAGE, { directPath: path, background: 2, fs: eio });
    try {
      let failed: unknown = null;
      try {
        for (let pgno = 1; pgno <= 3000; pgno++) {
          w.append(pgno, page(pgno));
          if (pgno % 100 === 0) await w.room();
        }
      } catch (e) {
        failed = e;
      }
      assert.equal((failed as { code?: string } | null)?.code, 'EIO', 'room() throws the failed write');
      await assert.rejects(w.settle(), { code: 'EIO' });
      assert.equal(writes, 2, 'no write after the failed one');
      assert.equal(w.bytesWritten, 512 * PAGE, 'only the first run counts as written');
    } finally {
      w.discard();
      await w.idle();
      w.close();
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('RunWriter (writes in the background): room() returns only once fewer than `background` runs wait', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-runwriter-'));
  try {
    const path = join(dir, 'room');
    const fd = openSync(path, 'w+');
    // An injected fs: each write happens a tick later, so runs pile up while pages are appended.
    const w = new RunWriter(fd, PAGE, { directPath: path, background: 2, fs: { ...nodeFs } });
    try {
      const runPages = 512;
      for (let round = 0; round < 3; round++) {
        for (let i = 1; i <= 4 * runPages; i++) w.append(round * 4 * runPages + i, page(round * 4 * runPages + i));
        assert.ok(w.waiting >= 3, `round ${round}: ${w.waiting} runs waiting after four were filled`);
        await w.room();
        assert.ok(w.waiting < 2, `round ${round}: room() resolved with ${w.waiting} runs waiting`);
      }
      w.flush();
      await w.settle();
      assert.ok(readFileSync(path).equals(Buffer.concat(Array.from({ length: 12 * runPages }, (_, i) => page(i + 1)))));
    } finally {
      w.close();
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
