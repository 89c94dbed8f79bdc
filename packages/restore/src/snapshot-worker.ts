// The thread that decodes a large snapshot and writes its pages while the restore's thread downloads
// (see snapshot-thread.ts for the protocol). It imports only @walship/format and node:fs, so it
// starts in ~0.1 s, and it never sees a key: encrypted snapshots are decoded on the restore's thread.
import { closeSync, openSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { decodeObject, isFormatError, loadChecksum, loadFormat } from '@walship/format';
import { RunWriter } from './run-writer.js';
import type { FromSnapshotThread, SnapshotWorkerData, ToSnapshotThread } from './snapshot-thread.js';

/** Runs (4 MiB each) that may wait for the device while the next ones are decoded. */
const WRITES_BEHIND = 2;

const data = workerData as SnapshotWorkerData;
const port = parentPort as NonNullable<typeof parentPort>;
const post = (m: FromSnapshotThread, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);

// Pieces posted by the restore's thread, consumed in order by the decoder.
const queue: (Uint8Array | null)[] = [];
let wake: (() => void) | null = null;
port.on('message', (m: ToSnapshotThread) => {
  queue.push(m.type === 'piece' ? m.bytes : null);
  wake?.();
  wake = null;
});

async function* pieces(): AsyncGenerator<Uint8Array> {
  for (;;) {
    while (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    const piece = queue.shift() as Uint8Array | null;
    if (piece === null) return;
    post({ type: 'consumed' });
    yield piece;
  }
}

async function run(): Promise<void> {
  await loadFormat();
  const sums = await loadChecksum();
  let pgnos = new Uint32Array(1024);
  let hashes = new BigUint64Array(1024);
  let count = 0;
  let ended = false;
  const fd = openSync(data.path, 'r+');
  let writer: RunWriter | null = null;
  try {
    // Long runs bypass the page cache (see RunWriter): nothing reads the scratch file until it is
    // finished. They are written in the background, so decoding goes on while the device writes.
    writer = new RunWriter(fd, data.pageSize, { directPath: data.path, background: WRITES_BEHIND });
    // A piece's buffer goes back to the restore's thread once the decoder is done with it, to be
    // read into again (whole: every piece the thread gets owns its buffer).
    const onPieceDone = (piece: Uint8Array): void => {
      const buffer = piece.buffer as ArrayBuffer;
      if (buffer.byteLength === data.pieceSize) post({ type: 'free', buffer }, [buffer]);
    };
    for await (const event of decodeObject(pieces(), { name: data.name, objectSize: data.objectSize, maxPagesPerEvent: data.pagesPerEvent, reuseBuffers: true, onPieceDone })) {
      if (event.type === 'header') {
        post({ type: 'header', header: event.header });
      } else if (event.type === 'transaction') {
        for (const p of event.pages) {
          writer.append(p.pgno, p.data);
          if (count === pgnos.length) {
            const morePgnos = new Uint32Array(count * 2);
            morePgnos.set(pgnos);
            pgnos = morePgnos;
            const moreHashes = new BigUint64Array(count * 2);
            moreHashes.set(hashes);
            hashes = moreHashes;
          }
          pgnos[count] = p.pgno;
          hashes[count] = p.hash ?? sums.pageHash(p.pgno, p.data);
          count++;
        }
        await writer.room();
      } else {
        ended = true;
      }
    }
    writer.flush();
    await writer.settle();
  } finally {
    if (writer !== null) {
      writer.discard();
      // Its background writes use `fd`: it is closed only once they have ended.
      await writer.idle();
      writer.close();
    }
    closeSync(fd);
  }
  post({ type: 'done', ended, count, pgnos, hashes }, [pgnos.buffer as ArrayBuffer, hashes.buffer as ArrayBuffer]);
}

run().catch((e: unknown) => {
  const err = e as { code?: unknown; message?: unknown; details?: unknown };
  post({
    type: 'failed',
    format: isFormatError(e),
    code: typeof err.code === 'string' ? err.code : 'ERR_SNAPSHOT_THREAD',
    message: typeof err.message === 'string' ? err.message : String(e),
    details: typeof err.details === 'object' && err.details !== null ? { ...(err.details as Record<string, unknown>) } : {},
  });
});
