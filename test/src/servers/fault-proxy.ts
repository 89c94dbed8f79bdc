// A fault-injecting HTTP proxy for S3 endpoints: it forwards every request to a real server and, by
// a seeded probability or a scripted queue, breaks some of them the way networks and stores break:
// resets before and after the request reached the store, 500 / 503 SlowDown, a response held past
// the client's timeout, a body cut short of its Content-Length, and a whole-endpoint outage.
//
// It knows nothing about walship: any HTTP client can be pointed at `endpoint`. The Host header is
// forwarded unchanged, so SigV4 signatures made for the proxy's address still verify at the target.

import http from 'node:http';
import type net from 'node:net';
import { prng } from '../util/prng.js';

export type FaultKind = 'reset-before' | 'reset-after' | 'error-500' | 'error-503' | 'delay' | 'truncate' | 'late';

export const FAULT_KINDS: readonly FaultKind[] = ['reset-before', 'reset-after', 'error-500', 'error-503', 'delay', 'truncate'];
/**
 * Not drawn unless listed in `kinds`: the request is read whole and never answered, then applied to
 * the store `delayMs` later whatever the client did meanwhile — a request stuck in the network
 * that lands after its sender gave up (how a paused writer's upload reaches S3 late).
 */
export const LATE: FaultKind = 'late';

export interface FaultProxyOptions {
  /** The real server, e.g. `S3Server.endpoint` (`http://127.0.0.1:PORT`). */
  target: string;
  /** Seed of the fault draw (default 1): the same seed and request order give the same faults. */
  seed?: number;
  /** Probability in [0, 1] that a request gets a random fault (default 0). */
  faultRate?: number;
  /** Kinds drawn at random (default all). `truncate` is only drawn for GET, the one with a body. */
  kinds?: readonly FaultKind[];
  /** How long `delay` holds a request before forwarding it (default 2000 ms). */
  delayMs?: number;
}

export type FaultCounts = Record<FaultKind | 'down', number>;

export interface FaultProxy {
  readonly endpoint: string;
  readonly port: number;
  /** Faults injected so far per kind; `down` counts connections and requests refused while down. */
  readonly counts: Readonly<FaultCounts>;
  /** Requests received, and requests that reached the target (reset-after and truncate included). */
  readonly stats: Readonly<{ received: number; forwarded: number; upstreamErrors: number }>;
  setFaultRate(rate: number, kinds?: readonly FaultKind[]): void;
  /** The next requests get these, in order, before any random draw ('pass' forwards untouched). */
  script(...faults: readonly (FaultKind | 'pass')[]): void;
  /** Scripted faults not yet used. */
  readonly scripted: number;
  /** Drops the scripted faults not yet used. */
  clearScript(): void;
  /** While down, every connection and request is reset; existing connections are cut at once. */
  setDown(down: boolean): void;
  setDelayMs(ms: number): void;
  /**
   * While holding, `late` requests wait for `releaseLate()` instead of `delayMs`: a test decides
   * exactly when a paused writer's upload lands (for example after another writer took over).
   */
  holdLate(hold: boolean): void;
  /** Forwards every held `late` request now; returns how many. */
  releaseLate(): number;
  /** `late` requests read whole and not forwarded yet, with their method and path. */
  readonly held: readonly { method: string; path: string }[];
  /**
   * Resolves once nothing is held or on its way to the target (a killed client's request that was
   * already forwarded still lands: a check that lists the store right after a kill waits for this).
   */
  idle(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function reset(socket: net.Socket): void {
  // An RST rather than a FIN: the client sees ECONNRESET, as with a dropped middlebox connection.
  const s = socket as net.Socket & { resetAndDestroy?: () => void };
  if (typeof s.resetAndDestroy === 'function' && !s.destroyed) s.resetAndDestroy();
  else s.destroy();
}

function errorXml(code: string, message: string, id: number): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-${id}</RequestId></Error>`;
}

interface Upstream {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(opts.target);
  const random = prng(opts.seed ?? 1);
  let rate = opts.faultRate ?? 0;
  let kinds: readonly FaultKind[] = opts.kinds ?? FAULT_KINDS;
  let delayMs = opts.delayMs ?? 2000;
  let down = false;
  let holding = false;
  const held: { method: string; path: string; land: () => void }[] = [];
  const queue: (FaultKind | 'pass')[] = [];
  const counts: FaultCounts = { 'reset-before': 0, 'reset-after': 0, 'error-500': 0, 'error-503': 0, delay: 0, truncate: 0, late: 0, down: 0 };
  const stats = { received: 0, forwarded: 0, upstreamErrors: 0 };
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  const choose = (method: string): FaultKind | 'pass' => {
    if (queue.length > 0) return queue.shift()!;
    if (rate <= 0 || random() >= rate) return 'pass';
    const eligible = kinds.filter((k) => k !== 'truncate' || method === 'GET');
    if (eligible.length === 0) return 'pass';
    return eligible[Math.floor(random() * eligible.length)]!;
  };

  let upstreamOpen = 0;
  const track = (up: http.ClientRequest): http.ClientRequest => {
    upstreamOpen++;
    up.on('close', () => upstreamOpen--);
    return up;
  };

  const forward = (req: http.IncomingMessage): http.ClientRequest => {
    stats.forwarded++;
    const up = track(http.request({
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent,
    }));
    req.pipe(up);
    // A client that died mid-body: the store never gets a whole request (it would wait for the rest).
    req.on('close', () => {
      if (!req.complete) up.destroy();
    });
    return up;
  };

  /** Forwards and reads the whole response (for the faults that need it before answering). */
  const forwardBuffered = (req: http.IncomingMessage): Promise<Upstream> =>
    new Promise((resolve, reject) => {
      const up = forward(req);
      up.on('error', reject);
      up.on('response', (r) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('error', reject);
        r.on('end', () => resolve({ status: r.statusCode ?? 502, headers: r.headers, body: Buffer.concat(chunks) }));
      });
    });

  const upstreamFailed = (res: http.ServerResponse) => {
    stats.upstreamErrors++;
    reset(res.socket ?? (res.req.socket as net.Socket));
  };

  const pass = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const up = forward(req);
    up.on('error', () => upstreamFailed(res));
    up.on('response', (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
      r.on('error', () => reset(req.socket));
    });
  };

  const drainThen = (req: http.IncomingMessage, f: () => void) => {
    req.on('end', f);
    req.resume();
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    stats.received++;
    if (down) {
      counts.down++;
      reset(req.socket);
      return;
    }
    const fault = choose(req.method ?? 'GET');
    switch (fault) {
      case 'pass':
        return pass(req, res);
      case 'reset-before':
        counts['reset-before']++;
        return reset(req.socket);
      case 'reset-after':
        counts['reset-after']++;
        // The store applies the request; only the answer is lost.
        forwardBuffered(req).then(
          () => reset(req.socket),
          () => upstreamFailed(res),
        );
        return;
      case 'error-500':
      case 'error-503': {
        counts[fault]++;
        const [status, code, message] =
          fault === 'error-500'
            ? [500, 'InternalError', 'We encountered an internal error. Please try again.']
            : [503, 'SlowDown', 'Please reduce your request rate.'];
        const body = errorXml(code, message, stats.received);
        drainThen(req, () => {
          res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        });
        return;
      }
      case 'late': {
        counts.late++;
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const land = (): void => {
            stats.forwarded++;
            const up = track(http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent }));
            up.on('error', () => stats.upstreamErrors++);
            up.on('response', (r) => r.resume());
            up.end(Buffer.concat(chunks));
          };
          if (holding) {
            held.push({ method: req.method ?? '', path: req.url ?? '', land });
            return;
          }
          const t = setTimeout(() => {
            timers.delete(t);
            land();
          }, delayMs);
          timers.add(t);
        });
        return;
      }
      case 'delay': {
        counts.delay++;
        const t = setTimeout(() => {
          timers.delete(t);
          // A client that gave up meanwhile never gets its request applied late.
          if (req.socket.destroyed) return;
          pass(req, res);
        }, delayMs);
        timers.add(t);
        return;
      }
      case 'truncate':
        forwardBuffered(req).then(
          (u) => {
            if (u.body.length === 0) {
              // Nothing to cut: answer normally and do not count a fault that did not happen.
              res.writeHead(u.status, u.headers);
              res.end();
              return;
            }
            counts.truncate++;
            const headers = { ...u.headers, 'content-length': String(u.body.length) };
            delete headers['transfer-encoding'];
            res.writeHead(u.status, headers);
            res.write(u.body.subarray(0, Math.floor(u.body.length / 2)), () => setImmediate(() => reset(req.socket)));
          },
          () => upstreamFailed(res),
        );
        return;
    }
  };

  const server = http.createServer(handle);
  server.on('connection', (socket: net.Socket) => {
    if (down) {
      counts.down++;
      reset(socket);
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  server.on('clientError', (_err, socket) => socket.destroy());

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  let stopped: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    counts,
    stats,
    setFaultRate(r, k) {
      if (!(r >= 0 && r <= 1)) throw new RangeError(`fault rate must be in [0, 1], got ${r}`);
      rate = r;
      if (k) kinds = [...k];
    },
    async idle(timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      while (timers.size > 0 || upstreamOpen > 0) {
        if (Date.now() > end) throw new Error(`fault proxy: still ${timers.size} held and ${upstreamOpen} forwarded requests after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    get scripted() {
      return queue.length;
    },
    clearScript() {
      queue.length = 0;
    },
    script(...faults) {
      queue.push(...faults);
    },
    setDown(d) {
      down = d;
      if (d) for (const s of sockets) reset(s);
    },
    setDelayMs(ms) {
      delayMs = ms;
    },
    holdLate(h) {
      holding = h;
    },
    releaseLate() {
      const n = held.length;
      for (const h of held.splice(0)) h.land();
      return n;
    },
    get held() {
      return held.map(({ method, path }) => ({ method, path }));
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        held.length = 0;
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        agent.destroy();
      });
      return stopped;
    },
  };
}
