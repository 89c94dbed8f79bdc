// Test harness for real local servers (S3: s3rver, OpenStack Swift + s3api; DynamoDB: dynalite,
// DynamoDB Local). This file holds the public types, the shared helpers (ports, waiting, probing
// commands, client configs) and the re-exports of the start*() functions and of process.ts (child
// process management, leak protection).
//
// The server modules import helpers from here and this file re-exports them: an import cycle. It is
// safe because no module uses an import from the other at top level (only inside functions).

import { spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BucketAlreadyExists, BucketAlreadyOwnedByYou, CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { DynamoDBClient, ListTablesCommand, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { describeExit, type ExitInfo, type ManagedProcess } from './process.js';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

export interface S3Server {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  kind: 's3rver' | 'swift';
  s3ClientConfig(): S3ClientConfig;
  stop(): Promise<void>;
}

export interface DynamoServer {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  kind: 'dynalite' | 'dynamodb-local';
  dynamoClientConfig(): DynamoDBClientConfig;
  stop(): Promise<void>;
}

export type Availability = { ok: true } | { ok: false; reason: string };

export interface ServerUnavailableDetails {
  /** Which server, e.g. `swift (s3api)`. */
  server: string;
  /** Why it is unavailable: missing package, exited with code N, start timeout, ... */
  reason: string;
  /** The command that was run, when one was. */
  command?: string;
  /** Last lines of the process output (stderr and stdout interleaved), when one was started. */
  output?: string;
  /** What to install or run to make it available. */
  install?: string;
  cause?: unknown;
}

/** A local server could not be started: missing system package, crash at start, or start timeout. */
export class ServerUnavailableError extends Error {
  readonly code = 'ERR_SERVER_UNAVAILABLE' as const;
  override readonly name = 'ServerUnavailableError';
  readonly server: string;
  readonly reason: string;
  readonly command: string | undefined;
  readonly output: string | undefined;
  readonly install: string | undefined;

  constructor(details: ServerUnavailableDetails) {
    const lines = [`${details.server} is unavailable: ${details.reason}`];
    if (details.command) lines.push(`  command: ${details.command}`);
    if (details.output && details.output.trim() !== '') {
      lines.push('  last output lines:');
      for (const l of details.output.trimEnd().split('\n')) lines.push(`    ${l}`);
    }
    if (details.install) lines.push(`  to fix: ${details.install}`);
    super(lines.join('\n'), details.cause === undefined ? undefined : { cause: details.cause });
    this.server = details.server;
    this.reason = details.reason;
    this.command = details.command;
    this.output = details.output;
    this.install = details.install;
  }
}

// ---------------------------------------------------------------------------------------------
// Re-exports
// ---------------------------------------------------------------------------------------------

export { startS3rver } from './s3rver.js';
export { startSwift, swiftAvailable, addContentMd5Middleware } from './swift.js';
export { startDynalite } from './dynalite.js';
export { startDynamoDbLocal, dynamoDbLocalAvailable } from './dynamodb-local.js';
export { startLinkProxy, type LinkProxy, type LinkProxyOptions } from './link-proxy.js';
export { ManagedProcess, liveProcessCount, removeTempDir, stopAll, trackTempDir, type ExitInfo } from './process.js';
export { startFaultProxy, FAULT_KINDS, type FaultCounts, type FaultKind, type FaultProxy, type FaultProxyOptions } from './fault-proxy.js';

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/** Start timeout for every start*(): WALSHIP_SERVER_START_TIMEOUT_MS, default 30 s. */
export function startTimeoutMs(): number {
  const v = Number(process.env['WALSHIP_SERVER_START_TIMEOUT_MS']);
  return Number.isFinite(v) && v > 0 ? v : 30_000;
}

/** WALSHIP_SERVER_DEBUG=1 makes servers log more and forwards their output to this stderr. */
export function serverDebug(): boolean {
  const v = process.env['WALSHIP_SERVER_DEBUG'];
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}

/** Writes a line to stderr when WALSHIP_SERVER_DEBUG is set. */
export function debugLog(line: string): void {
  if (serverDebug()) process.stderr.write(`[servers] ${line}\n`);
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

export const LOOPBACK = '127.0.0.1';

/** A port that was free on 127.0.0.1 a moment ago (the kernel picks it; there is a small race). */
export async function freePort(): Promise<number> {
  const [p] = await freePorts(1);
  return p!;
}

/** n distinct free loopback ports (all held open together while picking, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, LOOPBACK, () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** One TCP connect attempt: true when something accepts on host:port. */
export function portAnswers(port: number, host: string = LOOPBACK, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    let done = false;
    const finish = (v: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.once('connect', () => finish(true));
    sock.once('error', () => finish(false));
  });
}

/**
 * Polls until host:port accepts a TCP connection; rejects after timeoutMs. With `owner`, the
 * listening socket must also belong to that process (Linux /proc), so a port taken by someone else
 * between freePort() and the server's bind is not mistaken for the server.
 */
export async function waitForPort(
  port: number,
  opts: { host?: string; timeoutMs?: number; intervalMs?: number; procs?: readonly ManagedProcess[]; owner?: ManagedProcess } = {},
): Promise<void> {
  const host = opts.host ?? LOOPBACK;
  const owner = opts.owner;
  const probe = async () => (await portAnswers(port, host)) && (owner === undefined || listensOn(owner.pid, port) !== false);
  await waitFor(`${host}:${port} to accept connections${owner ? ` from ${owner.name}` : ''}`, probe, {
    deadline: Date.now() + (opts.timeoutMs ?? startTimeoutMs()),
    intervalMs: opts.intervalMs ?? 50,
    procs: opts.procs ?? [],
    ...(opts.owner ? { owner: opts.owner } : {}),
  });
}

/**
 * Whether process pid has a TCP socket listening on port (any address), from /proc/<pid>/fd and
 * /proc/net/tcp{,6}. undefined where /proc cannot tell (not Linux, no permission).
 */
export function listensOn(pid: number, port: number): boolean | undefined {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // fd closed meanwhile
      }
    }
  } catch {
    return undefined;
  }
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let readAny = false;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
      readAny = true;
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== '0A' || !cols[1]!.endsWith(hexPort)) continue;
      if (inodes.has(cols[9]!)) return true;
    }
  }
  return readAny ? false : undefined;
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Internal start failure: becomes a ServerUnavailableError in the start*() that caught it. */
export class StartFailure extends Error {
  override readonly name = 'StartFailure';
  /** The process to blame (its command and output go into the ServerUnavailableError). */
  readonly proc: ManagedProcess | undefined;
  constructor(message: string, proc?: ManagedProcess) {
    super(message);
    this.proc = proc;
  }
}

/**
 * Polls probe() until it returns a truthy value. Fails fast when one of procs has exited, and
 * with a StartFailure when the deadline passes (naming the last probe error).
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T>,
  opts: { deadline: number; intervalMs?: number; procs?: readonly ManagedProcess[]; owner?: ManagedProcess },
): Promise<Exclude<T, false | undefined | null>> {
  const interval = opts.intervalMs ?? 100;
  let lastErr: unknown;
  for (;;) {
    for (const p of opts.procs ?? []) {
      if (p.fatal !== undefined) throw new StartFailure(`${p.name} failed while waiting for ${what}: ${p.fatal}`, p);
      if (p.exitInfo) throw new StartFailure(`${p.name} exited (${describeExit(p.exitInfo)}) while waiting for ${what}`, p);
    }
    try {
      const v = await probe();
      if (v !== false && v !== undefined && v !== null) return v as Exclude<T, false | undefined | null>;
    } catch (e) {
      lastErr = e;
    }
    const left = opts.deadline - Date.now();
    if (left <= 0) {
      const last = lastErr === undefined ? '' : `; last error: ${errorText(lastErr)}`;
      throw new StartFailure(`no answer within the start timeout while waiting for ${what}${last}`, opts.owner);
    }
    await sleep(Math.min(interval, left));
  }
}

export function errorText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return `${e.name}${typeof code === 'string' ? ` ${code}` : ''}: ${e.message}`;
  }
  return String(e);
}


// ---------------------------------------------------------------------------------------------
// Executables
// ---------------------------------------------------------------------------------------------

/** Absolute path of an executable found on PATH (or in extraDirs), else undefined. */
export function which(name: string, extraDirs: readonly string[] = []): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  const dirs = [...(process.env['PATH'] ?? '').split(path.delimiter).filter(Boolean), ...extraDirs];
  for (const d of dirs) {
    const p = path.join(d, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** spawnSync wrapper for availability probes: {ok, output}. */
export function probeCommand(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): { ok: boolean; output: string } {
  const r = spawnSync(cmd, args, {
    env: opts.env ?? process.env,
    timeout: opts.timeoutMs ?? 30_000,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? errorText(r.error) : ''}`.trim();
  return { ok: r.status === 0 && !r.error, output };
}


// ---------------------------------------------------------------------------------------------
// Server bookkeeping shared by the start*() functions
// ---------------------------------------------------------------------------------------------

const portsOf = new WeakMap<object, number[]>();

/** Every loopback port a started server listens on (Swift: proxy, backends, memcached). */
export function listeningPorts(server: S3Server | DynamoServer): number[] {
  return [...(portsOf.get(server) ?? [])];
}

export function recordPorts(server: object, ports: readonly number[]): void {
  portsOf.set(server, [...ports]);
}

/** Converts whatever a start*() caught into a ServerUnavailableError naming the process. */
export function toUnavailable(
  server: string,
  err: unknown,
  procs: readonly ManagedProcess[],
  install: string,
): ServerUnavailableError {
  if (err instanceof ServerUnavailableError) return err;
  const reason = errorText(err).replace(/^StartFailure: /, '');
  // Blame the process the failure names, else the last one started.
  const culprit = (err instanceof StartFailure ? err.proc : undefined) ?? procs[procs.length - 1];
  const others = procs.filter((p) => p !== culprit && p.output().trim() !== '');
  let output = culprit ? culprit.output(20) : undefined;
  for (const o of others) output = `${output ?? ''}\n--- ${o.name}:\n${o.output(8)}`;
  return new ServerUnavailableError({
    server,
    reason,
    ...(culprit ? { command: culprit.command } : {}),
    ...(output !== undefined ? { output } : {}),
    install,
    cause: err,
  });
}

/** True when a failed start looks like a lost race for a port picked by freePort(). */
export function isPortClash(err: unknown): boolean {
  const text = err instanceof ServerUnavailableError ? `${err.reason}\n${err.output ?? ''}` : errorText(err);
  return /address already in use|EADDRINUSE|Errno 98|BindException|Failed to bind|Could not bind|failed to listen/i.test(text);
}

/** Runs start() again (up to `attempts` times) when it failed because a port was taken meanwhile. */
export async function retryOnPortClash<T>(start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await start();
    } catch (e) {
      if (i >= attempts || !isPortClash(e)) throw e;
    }
  }
}

/** Fresh S3ClientConfig for an S3-compatible endpoint (path style, checksums only when required). */
export function makeS3ClientConfig(s: {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}): S3ClientConfig {
  return {
    endpoint: s.endpoint,
    region: s.region,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

/** Fresh DynamoDBClientConfig for a local endpoint. */
export function makeDynamoClientConfig(s: {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}): DynamoDBClientConfig {
  return {
    endpoint: s.endpoint,
    region: s.region,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
  };
}

/** Creates the bucket (idempotent), retrying until the deadline: doubles as the readiness probe. */
export async function createBucketUntil(
  config: S3ClientConfig,
  bucket: string,
  deadline: number,
  procs: readonly ManagedProcess[],
  owner?: ManagedProcess,
): Promise<void> {
  const client = new S3Client({
    ...config,
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 2000, requestTimeout: 10_000 },
  });
  try {
    await waitFor(
      `CreateBucket ${bucket}`,
      async () => {
        try {
          await client.send(new CreateBucketCommand({ Bucket: bucket }));
        } catch (e) {
          if (!(e instanceof BucketAlreadyOwnedByYou) && !(e instanceof BucketAlreadyExists)) throw e;
        }
        return true;
      },
      { deadline, intervalMs: 200, procs, ...(owner ? { owner } : {}) },
    );
  } finally {
    client.destroy();
  }
}

/**
 * Waits until a DynamoDB endpoint on `port` answers ListTables, then describes it as a
 * DynamoServer whose stop() kills `proc` (once). Shared by the dynalite and DynamoDB Local lanes.
 */
export async function readyDynamoServer(
  kind: DynamoServer['kind'],
  port: number,
  proc: ManagedProcess,
  deadline: number,
  intervalMs?: number,
): Promise<DynamoServer> {
  const creds = { endpoint: `http://${LOOPBACK}:${port}`, region: 'us-east-1', accessKeyId: 'walship', secretAccessKey: 'walshipsecret' };
  await waitFor('ListTables', () => listTablesOnce(makeDynamoClientConfig(creds)), {
    deadline,
    procs: [proc],
    owner: proc,
    ...(intervalMs !== undefined ? { intervalMs } : {}),
  });
  let stopped: Promise<void> | undefined;
  const server: DynamoServer = {
    ...creds,
    kind,
    dynamoClientConfig: () => makeDynamoClientConfig(creds),
    stop: () => (stopped ??= proc.stop()),
  };
  recordPorts(server, [port]);
  return server;
}

/** One ListTables call (no retries): true when the DynamoDB endpoint answers. */
export async function listTablesOnce(config: DynamoDBClientConfig): Promise<true> {
  const client = new DynamoDBClient({
    ...config,
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 2000, requestTimeout: 10_000 },
  });
  try {
    await client.send(new ListTablesCommand({ Limit: 1 }));
    return true;
  } finally {
    client.destroy();
  }
}
