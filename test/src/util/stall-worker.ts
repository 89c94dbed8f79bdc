// The stall watchdog's worker (see stall-watchdog.ts): it checks the main thread's heartbeat every
// few seconds and, once it is stale, pauses the main thread through the inspector for its stack.

import { writeSync } from 'node:fs';
import inspector from 'node:inspector';
import { workerData } from 'node:worker_threads';

const { beat, stallMs, file } = workerData as { beat: Int32Array; stallMs: number; file: string };
/** How long the main thread gets to reach a pausable point before it is killed. */
const PAUSE_WAIT_MS = 10_000;

function say(line: string): void {
  writeSync(2, `stall-watchdog: ${line}\n`);
}

interface Frame {
  functionName: string;
  url: string;
  location: { scriptId: string; lineNumber: number; columnNumber?: number };
}

function report(stalledMs: number): void {
  say(`${file}: the main thread has not run its event loop for ${Math.round(stalledMs / 1000)} s (WALSHIP_STALL_MS=${stallMs}); pausing it for its stack`);
  // SIGKILL: a spinning main thread runs no signal handler. The test servers' reaper process
  // (test/src/servers/process.ts) stops them and removes their directories when this one dies.
  const kill = (why: string) => {
    say(`${why}; killing process ${process.pid} (SIGKILL)`);
    process.kill(process.pid, 'SIGKILL');
  };
  const native = setTimeout(() => kill(`no pause within ${PAUSE_WAIT_MS / 1000} s: the main thread is in native code (SQLite, a blocking call, the garbage collector)`), PAUSE_WAIT_MS);
  const session = new inspector.Session();
  session.connectToMainThread();
  // A paused frame names its script by id; Debugger.enable reports every script with its URL.
  const urls = new Map<string, string>();
  session.on('Debugger.scriptParsed', (message: { params: { scriptId: string; url: string } }) => urls.set(message.params.scriptId, message.params.url));
  session.on('Debugger.paused', (message: { params: { callFrames: Frame[] } }) => {
    clearTimeout(native);
    const frames = message.params.callFrames.map((f) => `    at ${f.functionName || '<anonymous>'} (${f.url || urls.get(f.location.scriptId) || `script ${f.location.scriptId}`}:${f.location.lineNumber + 1}:${(f.location.columnNumber ?? 0) + 1})`);
    say(`the main thread's stack:\n${frames.join('\n')}`);
    // Not process.exit from the paused frame: with this session attached that sometimes aborts.
    kill('stack printed');
  });
  session.post('Debugger.enable', () => session.post('Debugger.pause'));
}

// The heartbeat is a count the main thread moves once a second; it is stale when it has stood still
// for stallMs on this thread's clock (the main thread's stubs of Date or performance do not reach it).
let seen = Atomics.load(beat, 0);
let seenAt = performance.now();
const timer = setInterval(() => {
  const now = performance.now();
  const count = Atomics.load(beat, 0);
  if (count !== seen) {
    seen = count;
    seenAt = now;
    return;
  }
  if (now - seenAt < stallMs) return;
  clearInterval(timer);
  report(now - seenAt);
}, Math.min(5000, Math.max(100, stallMs / 4)));
