/** `walship follow`: a read replica as a process of its own, for a container or a systemd unit. */
import { parseArgs } from 'node:util';
import type { FollowStatus } from './follow.js';
import { COMMON, fileMode, integer, sourceFrom } from './cli-args.js';
import { checkBucketRoot } from './cli-bucket.js';
import { EXIT, UsageError, failureOf, jsonText } from './cli-errors.js';
import { formatAge, type CliIo } from './cli-output.js';

export const FOLLOW_USAGE = `walship follow <s3-url> <path> [options]

Keeps a read replica of the database at <path>: restores the latest state (or keeps the file when
it already is that state), then polls for new segments and applies them, swapping whole verified
states into place, so every open of <path> sees the state after some committed transaction. Runs
until SIGTERM or SIGINT, then stops cleanly (exit 0; a stop before the first restore finished
exits 1 with ERR_ABORTED and leaves <path> as it was). Open the file read-only in your application.

Options:
  --interval MS          time between polls for the next segment while the writer is quiet (default 1000)
  --active-interval MS   time between polls for 5 s after a segment was applied (default 50; 0: off)
  --status-interval S    a status line every S seconds (default 60; 0: only on SIGUSR1)
  --overwrite            replace a file at <path> that is not the replica's current state
  --mode OCTAL           permission bits of the replica file (default 600)
  --concurrency N        objects downloaded in parallel by full restores (default 8)
  --json                 every line as one JSON object on stdout ({"event": ...})
  -h, --help             this help

Lines: "started" when the replica is in place, "status" on SIGUSR1 (kill -USR1 <pid>) and every
--status-interval seconds, "stopped" at the end, on stdout; each error the follower recovers from
(it retries on the next poll) on stderr, the same code at most once a minute.`;

const FOLLOW_OPTIONS = {
  ...COMMON,
  interval: { type: 'string' },
  'active-interval': { type: 'string' },
  'status-interval': { type: 'string' },
  overwrite: { type: 'boolean' },
  mode: { type: 'string' },
  concurrency: { type: 'string' },
} as const;

type FollowEvent = 'started' | 'status' | 'stopped';

function statusText(event: FollowEvent, s: FollowStatus): string {
  const where = `${s.location} -> ${s.path}`;
  const tip = `txid ${s.txid}${s.generation ? ` (generation ${s.generation}${s.epoch !== null ? `, epoch ${s.epoch}` : ''})` : ''}`;
  const lag = s.lagMs !== null ? `, last commit ${formatAge(s.lagMs)} ago` : '';
  const counts = `, ${s.segmentsApplied} segments applied, ${s.restores} full restores, requests get ${s.requests.get} head ${s.requests.head} list ${s.requests.list}`;
  const error = s.lastError ? `, last error ${s.lastError.code} at ${s.lastError.at}` : '';
  return `walship: follow ${event}: ${where} at ${tip}${lag}${counts}${error}\n`;
}

export async function cmdFollow(args: string[], io: CliIo, help: () => number): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: FOLLOW_OPTIONS });
  if (values.help) return help();
  if (positionals.length !== 2) throw new UsageError('follow takes <s3-url> <path>');
  const intervalMs = integer('interval', values.interval);
  const activeIntervalMs = integer('active-interval', values['active-interval']);
  const statusSeconds = integer('status-interval', values['status-interval']) ?? 60;
  const mode = fileMode(values.mode);
  const concurrency = integer('concurrency', values.concurrency);
  const source = await sourceFrom(positionals[0], io.env);
  await checkBucketRoot(source);
  const { follow } = await import('./follow.js');

  const print = (event: FollowEvent, s: FollowStatus): void => {
    if (values.json) io.stdout.write(`${jsonText({ event, ...s })}\n`);
    else io.stdout.write(statusText(event, s));
  };
  const printed = new Map<string, number>();
  const onError = (e: Error): void => {
    const f = failureOf(e);
    const now = Date.now();
    if (now - (printed.get(f.code) ?? -Infinity) < 60_000) return;
    printed.set(f.code, now);
    io.stderr.write(`walship: follow: ${f.code}: ${f.message} (retrying)\n`);
  };

  // Installed before the first restore, so a SIGTERM during it stops cleanly too.
  const stop = new AbortController();
  const stopped = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  const onSignal = (): void => stop.abort();
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  let handle: Awaited<ReturnType<typeof follow>> | null = null;
  const onStatus = (): void => {
    if (handle) print('status', handle.status());
  };
  process.on('SIGUSR1', onStatus);
  const timer = statusSeconds > 0 ? setInterval(onStatus, statusSeconds * 1000) : null;
  try {
    handle = await follow({
      ...source,
      path: positionals[1] as string,
      ...(intervalMs !== undefined ? { intervalMs } : {}),
      ...(activeIntervalMs !== undefined ? { activeIntervalMs } : {}),
      ...(concurrency !== undefined ? { concurrency } : {}),
      ...(mode !== undefined ? { mode } : {}),
      overwrite: values.overwrite ?? false,
      onError,
      signal: stop.signal,
    });
    print('started', handle.status());
    await stopped;
    await handle.stop();
    print('stopped', handle.status());
    return EXIT.ok;
  } finally {
    if (timer) clearInterval(timer);
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGUSR1', onStatus);
  }
}
