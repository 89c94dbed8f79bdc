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
async function write(path: string, n: number, fs?: FsOps): Promise<{ bytes: Buffer; direct: number; written: number }> {
  const fd = openSync(path, 'w+');
  try {
    const w = new RunWriter(fd, PAGE, { directPath: path, ...(fs ? { fs } : {}) });
    try {
      for (let pgno = 1; pgno <= n; pgno++) w.append(pgno, page(pgno));
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

test('RunWriter: long runs go through O_DIRECT where the file system takes it, short ones through the page cache; the file is the same', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'walship-runwriter-'));
  try {
    const n = 2000; // 16 MiB: four full runs
    const got = await write(join(dir, 'a'), n);
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
      const n = 700;
      const got = await write(join(dir, name), n, fs);
      assert.ok(got.bytes.equals(expected(n)), `refused at ${name}: the file is whole`);
      assert.equal(got.direct, 0, `refused at ${name}: nothing went through O_DIRECT`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
