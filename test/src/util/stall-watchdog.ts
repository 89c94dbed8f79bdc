// Loaded into every test file's process by scripts/test.mjs (`--import`). When the main thread has
// not turned its event loop for WALSHIP_STALL_MS (default 300 s), a worker thread pauses it through
// the inspector, prints its JavaScript stack to stderr and kills the process (SIGKILL), so the
// runner names the file at once instead of waiting out its 30-minute timeout with nothing said.
// (A CI run once had the scenario file spin at 100% of a core after its last test, with no system
// calls, for the rest of that timeout.) A main thread stuck in native code cannot be paused: that is
// said, and the process is killed all the same. The worker starts after 30 s of the process's life
// (or after WALSHIP_STALL_MS if shorter), so a stall before that waits for the runner's timeout.
// WALSHIP_STALL_MS=0 turns the watchdog off.

import { Worker, isMainThread } from 'node:worker_threads';

const stallMs = Number(process.env.WALSHIP_STALL_MS ?? 300_000);
if (!Number.isInteger(stallMs) || stallMs < 0) {
  throw new Error(`WALSHIP_STALL_MS must be a whole number of milliseconds (0 turns the stall watchdog off), got ${JSON.stringify(process.env.WALSHIP_STALL_MS)}`);
}

/** The worker starts once the process has lived this long: most test files end sooner and never pay for it. */
const WORKER_AFTER_MS = 30_000;

if (isMainThread && stallMs > 0) {
  // beat[0]: milliseconds from `start` to the main thread's last turn of its event loop.
  const beat = new Int32Array(new SharedArrayBuffer(4));
  const start = Date.now();
  let worker: Worker | undefined;
  const tick = (): void => {
    Atomics.store(beat, 0, Date.now() - start);
    if (worker === undefined && Date.now() - start >= Math.min(WORKER_AFTER_MS, stallMs)) {
      worker = new Worker(new URL('./stall-worker.js', import.meta.url), { workerData: { beat, start, stallMs, file: process.argv[1] ?? '(unknown file)' } });
      worker.unref();
    }
  };
  tick();
  setInterval(tick, 1000).unref();
}
