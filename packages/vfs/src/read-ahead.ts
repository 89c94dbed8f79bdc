import { Worker } from 'node:worker_threads';

/**
 * A helper thread that reads the windows after the one a WindowReader last missed, so the reader's
 * next miss finds its window read already. A check that reads a file window by window, synchronously
 * (SQLite's xRead), otherwise leaves the device idle while it works on a window and waits the whole
 * latency of every read: on this project's VM 1 MiB O_DIRECT reads issued back to back ran at
 * 2-3.8 GB/s, the same reads between a check's page work at 1.2 GB/s.
 *
 * The thread owns its descriptor (O_DIRECT where the file takes it) and writes into a shared
 * WebAssembly memory (page-aligned, as O_DIRECT needs) of `slots` windows; the reader copies a
 * window out of its slot and frees it. Everything between the two is in `ctrl` (Int32Array over a
 * SharedArrayBuffer), so the reader never needs an event loop turn:
 *
 * | index            | holds                                                                  |
 * |------------------|------------------------------------------------------------------------|
 * | C_GEN            | sequence number, bumped by the reader when it restarts the read-ahead  |
 * | C_WANT           | the window the sequence starts at                                      |
 * | C_KICK           | bumped (and notified) by the reader on every change: the thread waits on it |
 * | C_STOP           | 1: the thread closes its descriptor and ends                           |
 * | C_STEP           | +1 or -1: the sequence reads forwards or backwards from C_WANT         |
 * | C_NEXT           | the window the thread reads next, in generation C_GEN                  |
 * | C_PROGRESS       | bumped (and notified) by the thread whenever it starts or ends a read  |
 * | C_ALIVE          | 1 once the thread has opened the file: until then the reader never waits for it |
 * | slot base + 0..2 | state (FREE, READING, READY, FAILED), window index, bytes read         |
 *
 * The direction is the reader's: SQLite's integrity_check walks a table's tree from its last cell
 * to its first, then scans the table first to last, so a sequence follows the last two misses.
 * Only a READY slot's bytes are used, and only for the window its index names, so a slot filled for
 * an abandoned sequence costs a read, never a wrong byte. A read the thread fails (FAILED) is done
 * again by the reader, which then sees the error itself. The reader waits for the thread only once
 * it is alive (a thread still starting, or one that could not open the file, costs nothing), and a
 * thread that then makes no progress through STALLS_MAX waits of 50 ms in a row (it died: its
 * 'error' event cannot run while the reader is inside a synchronous check) turns the read-ahead off.
 */

export const C_GEN = 0;
export const C_WANT = 1;
export const C_KICK = 2;
export const C_STOP = 3;
export const C_STEP = 4;
export const C_NEXT = 5;
export const C_PROGRESS = 6;
export const C_ALIVE = 7;
const SLOT_BASE = 8;
const SLOT_INTS = 4;
export const FREE = 0;
export const READING = 1;
export const READY = 2;
export const FAILED = 3;

/** Slot `s`'s three control words: state, window index, bytes read. */
export const slotState = (s: number): number => SLOT_BASE + s * SLOT_INTS;
export const slotIndex = (s: number): number => SLOT_BASE + s * SLOT_INTS + 1;
export const slotLength = (s: number): number => SLOT_BASE + s * SLOT_INTS + 2;
export const ctrlInts = (slots: number): number => SLOT_BASE + slots * SLOT_INTS;

/** @internal What the read-ahead thread is started with. */
export interface ReadAheadWorkerData {
  path: string;
  windowBytes: number;
  slots: number;
  /** The file's size when the reader opened it (the file does not change while it is read). */
  size: number;
  memory: { buffer: SharedArrayBuffer };
  ctrl: SharedArrayBuffer;
}

/** How long the reader waits for a window the thread is reading before it reads it itself. */
const WAIT_MS = 5000;
/** How long the reader waits for the thread to start the window it is about to read. */
const UPCOMING_MS = 50;
/** Waits in a row for an upcoming window that saw no progress of the thread at all, before the read-ahead is off. */
const STALLS_MAX = 5;

declare const WebAssembly: { Memory: new (d: { initial: number; maximum: number; shared: true }) => { buffer: SharedArrayBuffer } };

export class ReadAhead {
  readonly #bytes: number;
  readonly #slots: number;
  readonly #ctrl: Int32Array;
  readonly #data: Uint8Array;
  readonly #worker: Worker;
  #off = false;
  #stalls = 0;
  /** The window last wanted: the next miss below it reads backwards. */
  #last = -1;
  /** Windows served from the thread's reads (for tests and diagnostics). */
  served = 0;

  private constructor(path: string, size: number, windowBytes: number, slots: number) {
    this.#bytes = windowBytes;
    this.#slots = slots;
    const pages = Math.ceil((windowBytes * slots) / 65536);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const ctrl = new SharedArrayBuffer(ctrlInts(slots) * 4);
    this.#ctrl = new Int32Array(ctrl);
    this.#data = new Uint8Array(memory.buffer, 0, windowBytes * slots);
    this.#ctrl[C_WANT] = -1;
    const data: ReadAheadWorkerData = { path, windowBytes, slots, size, memory, ctrl };
    this.#worker = new Worker(new URL('./read-ahead-worker.js', import.meta.url), { workerData: data });
    // Never keeps the process alive; a thread that fails only means the reader reads for itself.
    this.#worker.unref();
    this.#worker.on('error', () => this.#stop());
  }

  /** A read-ahead thread for `path`, or null when the file is too small to be worth one or threads or shared memory are not available here. */
  static start(path: string, size: number, windowBytes: number, slots: number): ReadAhead | null {
    if (size <= 2 * windowBytes) return null;
    try {
      return new ReadAhead(path, size, windowBytes, slots);
    } catch {
      return null;
    }
  }

  /**
   * Copies window `index` into `into` when the thread has read it (waiting for it while the thread
   * is reading it) and returns its length; else -1, and the read-ahead restarts after `index` (the
   * caller reads this window itself, and the thread goes on from there in the direction of the last
   * two misses). A window found leaves the sequence going: the thread reads on.
   */
  take(index: number, into: Uint8Array): number {
    if (this.#off) return -1;
    try {
      return this.#take(index, into);
    } catch {
      // A runtime that refuses Atomics.wait on this thread: the reader reads for itself.
      this.#stop();
      return -1;
    }
  }

  #take(index: number, into: Uint8Array): number {
    const c = this.#ctrl;
    let found = this.#find(index);
    // The thread is about to read it: wait for it to start rather than read it twice.
    for (let tries = 0; found < 0 && tries < 20 && this.#upcoming(index); tries++) {
      const progress = Atomics.load(c, C_PROGRESS);
      if ((found = this.#find(index)) >= 0) break;
      if (Atomics.wait(c, C_PROGRESS, progress, UPCOMING_MS) === 'timed-out') {
        if (++this.#stalls >= STALLS_MAX) {
          this.#stop();
          return -1;
        }
        break;
      }
      this.#stalls = 0;
      found = this.#find(index);
    }
    if (found >= 0 && Atomics.load(c, slotState(found)) === READING) {
      if (Atomics.wait(c, slotState(found), READING, WAIT_MS) === 'timed-out') {
        this.#stop();
        return -1;
      }
    }
    if (found >= 0 && Atomics.load(c, slotState(found)) === READY && c[slotIndex(found)] === index) {
      const n = c[slotLength(found)] as number;
      into.set(this.#data.subarray(found * this.#bytes, found * this.#bytes + n));
      this.#free(found);
      this.served++;
      this.#last = index;
      return n;
    }
    if (found >= 0) this.#free(found);
    const step = index < this.#last ? -1 : 1;
    this.#last = index;
    this.#restart(index + step, step);
    return -1;
  }

  /** The slot holding (or reading) window `index`, or -1; frees the ready slots far from it (a free slot is left for the thread). */
  #find(index: number): number {
    const c = this.#ctrl;
    let found = -1;
    let free = 0;
    let farthest = -1;
    let far = -1;
    for (let s = 0; s < this.#slots; s++) {
      const state = Atomics.load(c, slotState(s));
      if (state === FREE) {
        free++;
        continue;
      }
      const at = c[slotIndex(s)] as number;
      const distance = Math.abs(at - index);
      if (at === index) found = s;
      else if (state !== READING && distance > 2 * this.#slots) {
        this.#free(s);
        free++;
      } else if (state !== READING && distance > far) {
        far = distance;
        farthest = s;
      }
    }
    if (found < 0 && free === 0 && farthest >= 0) this.#free(farthest);
    return found;
  }

  /** Whether the thread's sequence reaches window `index` within the next few reads. */
  #upcoming(index: number): boolean {
    const c = this.#ctrl;
    const step = c[C_STEP] as number;
    // No sequence asked for yet (step 0): nothing is upcoming.
    const ahead = (index - (Atomics.load(c, C_NEXT) as number)) * step;
    return step !== 0 && Atomics.load(c, C_ALIVE) === 1 && Atomics.load(c, C_STOP) === 0 && ahead >= 0 && ahead < this.#slots;
  }

  #free(s: number): void {
    Atomics.store(this.#ctrl, slotState(s), FREE);
    this.#kick();
  }

  #restart(from: number, step: number): void {
    const c = this.#ctrl;
    c[C_WANT] = from;
    c[C_STEP] = step;
    Atomics.add(c, C_GEN, 1);
    this.#kick();
  }

  #kick(): void {
    Atomics.add(this.#ctrl, C_KICK, 1);
    Atomics.notify(this.#ctrl, C_KICK);
  }

  #stop(): void {
    this.#off = true;
    Atomics.store(this.#ctrl, C_STOP, 1);
    this.#kick();
  }

  /** Whether the thread has started and opened the file (for tests and diagnostics). */
  get alive(): boolean {
    return !this.#off && Atomics.load(this.#ctrl, C_ALIVE) === 1;
  }

  /** Ends the thread (it closes its descriptor and exits). */
  close(): void {
    this.#stop();
  }
}
