// The read-ahead thread of a WindowReader (see read-ahead.ts for the protocol): reads the windows of
// the current sequence into free slots, one after another, until told to stop. Only node:fs.
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { directRefused, O_DIRECT } from './direct-io.js';
import { C_ALIVE, C_GEN, C_KICK, C_NEXT, C_PROGRESS, C_STEP, C_STOP, C_WANT, FAILED, FREE, READING, READY, slotIndex, slotLength, slotState, type ReadAheadWorkerData } from './read-ahead.js';

const d = workerData as ReadAheadWorkerData;
const ctrl = new Int32Array(d.ctrl);
const data = new Uint8Array(d.memory.buffer, 0, d.windowBytes * d.slots);
const windows = Math.ceil(d.size / d.windowBytes);

function open(): { fd: number; direct: boolean } {
  if (O_DIRECT !== undefined) {
    try {
      return { fd: openSync(d.path, constants.O_RDONLY | O_DIRECT), direct: true };
    } catch (e) {
      if (!directRefused(e)) throw e;
    }
  }
  return { fd: openSync(d.path, constants.O_RDONLY), direct: false };
}

/** The thread's descriptor; null once it is closed and could not be opened again (every read then fails, and the reader reads for itself). */
let file: { fd: number; direct: boolean } | null = open();
Atomics.store(ctrl, C_ALIVE, 1);

/** Window `index` into slot `s`; a direct read the kernel refuses is done again through the page cache. */
function read(s: number, index: number): number {
  const view = data.subarray(s * d.windowBytes, (s + 1) * d.windowBytes);
  const start = index * d.windowBytes;
  let got = 0;
  for (;;) {
    if (file === null) throw new Error('the read-ahead descriptor could not be opened again');
    try {
      while (got < view.length) {
        const want = view.length - got;
        const r = readSync(file.fd, view, got, want, start + got);
        got += r;
        // Short only at the end of the file (a direct read past it would not be aligned).
        if (r < want) break;
      }
      return got;
    } catch (e) {
      if (!(file.direct && directRefused(e) && got === 0)) throw e;
      closeSync(file.fd);
      file = null;
      file = { fd: openSync(d.path, constants.O_RDONLY), direct: false };
    }
  }
}

function progress(): void {
  Atomics.add(ctrl, C_PROGRESS, 1);
  Atomics.notify(ctrl, C_PROGRESS);
}

function freeSlot(): number {
  for (let s = 0; s < d.slots; s++) if (Atomics.load(ctrl, slotState(s)) === FREE) return s;
  return -1;
}

try {
  let gen = Number.NaN;
  let next = -1;
  let step = 1;
  for (;;) {
    const kick = Atomics.load(ctrl, C_KICK);
    if (Atomics.load(ctrl, C_STOP) === 1) break;
    const g = Atomics.load(ctrl, C_GEN);
    if (g !== gen) {
      gen = g;
      next = ctrl[C_WANT] as number;
      step = ctrl[C_STEP] as number;
      Atomics.store(ctrl, C_NEXT, next);
    }
    const s = next >= 0 && next < windows ? freeSlot() : -1;
    if (s < 0) {
      Atomics.wait(ctrl, C_KICK, kick);
      continue;
    }
    ctrl[slotIndex(s)] = next;
    Atomics.store(ctrl, slotState(s), READING);
    Atomics.store(ctrl, C_NEXT, next + step);
    progress();
    let state = READY;
    try {
      ctrl[slotLength(s)] = read(s, next);
    } catch {
      state = FAILED;
    }
    Atomics.store(ctrl, slotState(s), state);
    Atomics.notify(ctrl, slotState(s));
    progress();
    next += step;
  }
} finally {
  if (file !== null) closeSync(file.fd);
}
