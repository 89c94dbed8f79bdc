// Server child processes for the test harness (index.ts re-exports all of it): ManagedProcess,
// which runs a server in its own process group and keeps the tail of its output, and the leak
// protection that kills every such group and removes the harness's temp dirs when the test
// process ends, however it ends. Imports from index.ts are used only inside functions (see the
// note on the import cycle there).

import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { StartFailure, errorText, serverDebug } from './index.js';

// ---------------------------------------------------------------------------------------------
// Managed child processes
// ---------------------------------------------------------------------------------------------

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const TAIL_LINES = 40;

/**
 * A server child process in its own process group (spawned detached), whose stdout and stderr
 * are drained into a tail buffer. stop() kills the whole group. While it runs it is registered
 * with the exit hook and the reaper, so it never outlives the test process.
 */
export class ManagedProcess {
  readonly name: string;
  readonly command: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<ExitInfo>;
  exitInfo: ExitInfo | undefined;
  /** The first output line that matched `fatalPattern`: the process is broken even if it lives on. */
  fatal: string | undefined;
  private readonly fatalPattern: RegExp | undefined;
  private readonly stopSignal: NodeJS.Signals;
  private readonly tail: string[] = [];
  private readonly lineListeners = new Set<(line: string) => void>();
  private stopping: Promise<void> | undefined;

  constructor(
    name: string,
    cmd: string,
    args: readonly string[],
    opts: {
      cwd?: string;
      env?: NodeJS.ProcessEnv;
      displayArgs?: readonly string[];
      fatalPattern?: RegExp;
      /** Signal stop() sends first (default SIGTERM; SIGKILL for servers with nothing to flush). */
      stopSignal?: NodeJS.Signals;
    } = {},
  ) {
    this.name = name;
    this.fatalPattern = opts.fatalPattern;
    this.stopSignal = opts.stopSignal ?? 'SIGTERM';
    this.command = [cmd, ...(opts.displayArgs ?? args)].map(shellQuote).join(' ');
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true, // own process group: stop() can kill it and everything it forks
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let resolveExit!: (x: ExitInfo) => void;
    this.exited = new Promise((r) => (resolveExit = r));
    child.once('exit', (code, signal) => {
      this.exitInfo = { code, signal };
      resolveExit(this.exitInfo);
    });
    child.once('error', (err) => {
      // spawn failure (ENOENT, EACCES): no 'exit' event follows.
      this.pushLine(`[spawn error] ${errorText(err)}`);
      if (!this.exitInfo) {
        this.exitInfo = { code: -1, signal: null };
        resolveExit(this.exitInfo);
      }
    });
    this.pid = child.pid ?? -1;
    this.drain(child.stdout);
    this.drain(child.stderr);
    // A forgotten server must not keep the test process alive; the exit hook kills it.
    child.unref();
    if (this.pid > 0) register(this);
    void this.exited.then(() => {
      // The leader is gone; the group may still hold forked children.
      killGroup(this.pid, 'SIGKILL');
      unregister(this);
    });
  }

  /** The last lines this process wrote (stdout and stderr interleaved). */
  output(lines = TAIL_LINES): string {
    return this.tail.slice(-lines).join('\n');
  }

  /** Waits for a line matching re on stdout/stderr; returns the match. */
  waitForLine(re: RegExp, deadline: number, what: string): Promise<RegExpMatchArray> {
    for (const l of this.tail) {
      const m = l.match(re);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.lineListeners.delete(onLine);
      };
      const onLine = (l: string) => {
        const m = l.match(re);
        if (m) {
          cleanup();
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new StartFailure(`no answer within the start timeout while waiting for ${what}`, this));
      }, Math.max(0, deadline - Date.now()));
      this.lineListeners.add(onLine);
      void this.exited.then((x) => {
        if (!this.lineListeners.has(onLine)) return;
        // Give the streams a moment to deliver the last lines.
        setTimeout(() => {
          if (!this.lineListeners.has(onLine)) return;
          cleanup();
          reject(new StartFailure(`${this.name} exited (${describeExit(x)}) while waiting for ${what}`, this));
        }, 50);
      });
    });
  }

  /** Signals the process group (SIGTERM), SIGKILL after graceMs; resolves when the leader has exited. */
  stop(graceMs = 3000): Promise<void> {
    this.stopping ??= (async () => {
      if (this.pid <= 0) return;
      if (!this.exitInfo) {
        killGroup(this.pid, this.stopSignal);
        const t = setTimeout(() => killGroup(this.pid, 'SIGKILL'), graceMs);
        await this.exited;
        clearTimeout(t);
      }
      killGroup(this.pid, 'SIGKILL');
      unregister(this);
    })();
    return this.stopping;
  }

  private drain(stream: NodeJS.ReadableStream | null): void {
    if (!stream) return;
    (stream as unknown as { unref?: () => void }).unref?.();
    stream.setEncoding('utf8');
    let partial = '';
    stream.on('data', (chunk: string) => {
      partial += chunk;
      let i: number;
      while ((i = partial.indexOf('\n')) >= 0) {
        this.pushLine(partial.slice(0, i));
        partial = partial.slice(i + 1);
      }
      if (partial.length > 8192) {
        this.pushLine(partial);
        partial = '';
      }
    });
    stream.on('end', () => {
      if (partial) this.pushLine(partial);
      partial = '';
    });
  }

  private pushLine(line: string): void {
    const l = line.replace(/\r$/, '');
    this.tail.push(l);
    if (this.fatal === undefined && this.fatalPattern?.test(l)) this.fatal = l;
    if (this.tail.length > TAIL_LINES * 4) this.tail.splice(0, this.tail.length - TAIL_LINES);
    if (serverDebug()) process.stderr.write(`[${this.name}] ${l}\n`);
    for (const f of [...this.lineListeners]) f(l);
  }
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 1) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: already gone.
  }
}

/** Stops all given processes (in parallel), ignoring errors. */
export async function stopAll(procs: readonly ManagedProcess[]): Promise<void> {
  await Promise.all(procs.map((p) => p.stop().catch(() => undefined)));
}

// ---------------------------------------------------------------------------------------------
// Leak protection: an exit hook (normal exit, process.exit, uncaught exception) and a reaper
// process (covers SIGKILL / SIGTERM of the test process, where no JS runs): the reaper reads the
// live process groups and temp dirs from a pipe, and kills / removes them when the pipe closes.
// ---------------------------------------------------------------------------------------------

const live = new Set<ManagedProcess>();
const tempDirs = new Set<string>();
let hookInstalled = false;
let reaper: ChildProcess | undefined;

const REAPER_SRC = `
const groups = new Set();
const dirs = new Set();
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    const op = line[0];
    const arg = line.slice(1);
    if (op === '>') dirs.add(arg);
    else if (op === '<') dirs.delete(arg);
    else {
      const n = Number(arg);
      if (!Number.isInteger(n) || n <= 1) continue;
      if (op === '+') groups.add(n); else if (op === '-') groups.delete(n);
    }
  }
});
const reap = () => {
  for (const g of groups) { try { process.kill(-g, 'SIGKILL'); } catch {} }
  setTimeout(() => {
    for (const d of dirs) { try { require('fs').rmSync(d, { recursive: true, force: true }); } catch {} }
    process.exit(0);
  }, groups.size ? 200 : 0);
};
process.stdin.on('end', reap);
process.stdin.on('error', reap);
`;

function tellReaper(msg: string): void {
  if (reaper === undefined) {
    try {
      reaper = spawn(process.execPath, ['-e', REAPER_SRC], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
      reaper.on('error', () => undefined);
      reaper.stdin?.on('error', () => undefined);
      reaper.unref();
      (reaper.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    } catch {
      return; // the exit hook still covers normal exits
    }
  }
  reaper.stdin?.write(msg);
}

function installHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on('exit', () => {
    for (const p of live) killGroup(p.pid, 'SIGKILL');
    for (const d of tempDirs) {
      try {
        rmSync(d, { recursive: true, force: true });
      } catch {
        // best effort
      }
    }
  });
}

function register(p: ManagedProcess): void {
  installHook();
  live.add(p);
  tellReaper(`+${p.pid}\n`);
}

function unregister(p: ManagedProcess): void {
  if (!live.delete(p)) return;
  tellReaper(`-${p.pid}\n`);
}

/** Registers a temp directory to be removed at exit if removeTempDir() was not called. */
export function trackTempDir(dir: string): void {
  installHook();
  tempDirs.add(dir);
  if (!dir.includes('\n')) tellReaper(`>${dir}\n`);
}

export async function removeTempDir(dir: string): Promise<void> {
  if (tempDirs.delete(dir) && !dir.includes('\n')) tellReaper(`<${dir}\n`);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
}

/** Number of server processes still running (for tests of the harness itself). */
export function liveProcessCount(): number {
  return live.size;
}

export function describeExit(x: ExitInfo): string {
  return x.signal ? `signal ${x.signal}` : `exit code ${x.code}`;
}
