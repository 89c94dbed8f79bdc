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
  // beat[0]: how many times the main thread has turned its event loop (once a second). A count, not
  // a time: tests stub Date.now and performance.now (lease-dynamo jumps the wall clock 10 minutes),
  // and the worker measures how long the count stands still on its own clock, which they cannot touch.
  // setInterval is taken now, before any test can replace it with node:test's mock timers.
  const beat = new Int32Array(new SharedArrayBuffer(4));
  const every = setInterval;
  const startAfterTicks = Math.ceil(Math.min(WORKER_AFTER_MS, stallMs) / 1000);
  let worker: Worker | undefined;
  const tick = (): void => {
    const ticks = Atomics.add(beat, 0, 1) + 1;
    if (worker === undefined && ticks >= startAfterTicks) {
      worker = new Worker(new URL('./stall-worker.js', import.meta.url), { workerData: { beat, stallMs, file: process.argv[1] ?? '(unknown file)' } });
      worker.unref();
    }
  };
  every(tick, 1000).unref();
}
