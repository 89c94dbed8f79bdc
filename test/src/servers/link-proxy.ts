// A network link of a given bandwidth in front of a real server: a TCP proxy, in a child Node
// process of its own (its copying does not run on the benchmark's threads), that lets the bytes the
// server sends through at most `bytesPerSecond`, summed over every connection (one link, as a NIC
// is one), each connection's bytes in order. Requests go upstream unshaped (they are small).
// Loopback has no bandwidth to speak of: with the server on the same two cores a download is bound
// by CPU, and this gives a benchmark the other regime, where the network is the limit.

import { LOOPBACK, ManagedProcess, recordPorts, startTimeoutMs, toUnavailable } from './index.js';

const NAME = 'link proxy';

// argv (after -e): [node, upstreamHost, upstreamPort, bytesPerSecond, latencyMs]
//
// The link is a clock: a chunk the server sends leaves the link when the link is free and its bytes
// have been serialised at the link's rate (`linkFree`), plus the latency. Each connection keeps a
// queue, so its chunks leave in the order they came; upstream pauses while a connection has more
// than QUEUE_MAX bytes waiting (backpressure, bounded memory).
const CHILD_SRC = `
const net = require('node:net');
const [host, portText, rateText, latencyText] = process.argv.slice(1);
const rate = Number(rateText) / 1000;
const latency = Number(latencyText);
const QUEUE_MAX = 1 << 20;
let linkFree = 0;
const server = net.createServer((client) => {
  client.setNoDelay(true);
  const up = net.connect({ host, port: Number(portText) });
  up.setNoDelay(true);
  const queue = [];
  let queued = 0;
  let timer = null;
  let upEnded = false;
  const close = () => { client.destroy(); up.destroy(); if (timer) clearTimeout(timer); };
  const pump = () => {
    timer = null;
    const now = performance.now();
    while (queue.length > 0 && queue[0].due <= now) {
      const { chunk } = queue.shift();
      queued -= chunk.length;
      client.write(chunk);
    }
    if (queued <= QUEUE_MAX && up.isPaused()) up.resume();
    if (queue.length > 0) timer = setTimeout(pump, Math.max(0, queue[0].due - now));
    else if (upEnded) client.end();
  };
  up.on('data', (chunk) => {
    const now = performance.now();
    linkFree = Math.max(now, linkFree) + chunk.length / rate;
    queue.push({ chunk, due: linkFree + latency });
    queued += chunk.length;
    if (queued > QUEUE_MAX) up.pause();
    if (timer === null) pump();
  });
  up.on('end', () => { upEnded = true; if (timer === null) pump(); });
  client.pipe(up);
  client.on('error', close);
  up.on('error', close);
  client.on('close', close);
});
server.listen(0, '127.0.0.1', () => process.stdout.write('WALSHIP_READY ' + JSON.stringify({ port: server.address().port }) + '\\n'));
`;

export interface LinkProxyOptions {
  /** The server behind the link, e.g. an S3Server's endpoint (`http://127.0.0.1:PORT`). */
  upstream: string;
  /** The link's bandwidth, server to client, over all connections together. */
  bytesPerSecond: number;
  /** Added to every chunk's way through the link (default 0). */
  latencyMs?: number;
}

export interface LinkProxy {
  /** `http://127.0.0.1:PORT`: use it instead of the upstream's endpoint. */
  endpoint: string;
  port: number;
  bytesPerSecond: number;
  stop(): Promise<void>;
}

/** Starts a bandwidth-limited link in front of `upstream` (see the top of this file). */
export async function startLinkProxy(opts: LinkProxyOptions): Promise<LinkProxy> {
  const url = new URL(opts.upstream);
  if (!(opts.bytesPerSecond > 0) || !Number.isFinite(opts.bytesPerSecond)) throw new RangeError(`link proxy: bytesPerSecond must be a positive number, got ${opts.bytesPerSecond}`);
  const latencyMs = opts.latencyMs ?? 0;
  if (!(latencyMs >= 0) || !Number.isFinite(latencyMs)) throw new RangeError(`link proxy: latencyMs must be >= 0, got ${latencyMs}`);
  const args = ['-e', CHILD_SRC, url.hostname, url.port || '80', String(opts.bytesPerSecond), String(latencyMs)];
  const proc = new ManagedProcess(NAME, process.execPath, args, { displayArgs: ['-e', '<link proxy>', ...args.slice(2)], stopSignal: 'SIGKILL' });
  try {
    const m = await proc.waitForLine(/^WALSHIP_READY (\{.*\})$/, Date.now() + startTimeoutMs(), 'the link proxy to listen');
    const port = (JSON.parse(m[1]!) as { port: number }).port;
    let stopped: Promise<void> | undefined;
    const link: LinkProxy = { endpoint: `http://${LOOPBACK}:${port}`, port, bytesPerSecond: opts.bytesPerSecond, stop: () => (stopped ??= proc.stop()) };
    recordPorts(link, [port]);
    return link;
  } catch (e) {
    await proc.stop();
    throw toUnavailable(NAME, e, [proc], 'node must be able to run a child process (process.execPath)');
  }
}
