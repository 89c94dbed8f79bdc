import { createServer, type Server } from 'node:http';
import { WalshipError } from '@walship/vfs';

export interface MetricsEndpointOptions {
  /** TCP port to listen on; 0 picks a free one (read it back from `metricsUrl`). */
  port: number;
  /** Interface to listen on (default '127.0.0.1': put a proxy in front to expose it further). */
  host?: string;
  /** Path that answers with the Prometheus text (default '/metrics'). */
  path?: string;
}

export interface MetricsEndpoint {
  /** Where Prometheus scrapes, e.g. `http://127.0.0.1:9464/metrics`. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves one database's Prometheus text on `GET <path>` (and HEAD); every other request is a 404.
 * A port that cannot be bound is ERR_METRICS_LISTEN at open, before anything is served.
 */
export async function startMetricsEndpoint(o: MetricsEndpointOptions & { location: string; text: () => Promise<string> }): Promise<MetricsEndpoint> {
  const host = o.host ?? '127.0.0.1';
  const path = o.path ?? '/metrics';
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== path || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: metrics are at ${path}\n`);
      return;
    }
    o.text().then(
      (body) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (e: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(e as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      reject(
        new WalshipError(
          'ERR_METRICS_LISTEN',
          `${o.location}: cannot serve metrics on ${host}:${o.port} (${e.code ?? e.message}); choose another metrics.port, or 0 for any free port`,
          { details: { host, port: o.port, code: e.code }, cause: e },
        ),
      );
    };
    server.once('error', onError);
    server.listen(o.port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : o.port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${port}${path}`,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
      return closed;
    },
  };
}
