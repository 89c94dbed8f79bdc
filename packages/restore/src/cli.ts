#!/usr/bin/env node
hideSdkNodeSupportWarning();

// Each command's modules load only when it runs (`--help` must not pay for the SDKs or SQLite).
const argv = process.argv.slice(2);
const io = { stdout: process.stdout, stderr: process.stderr, env: process.env };
const run =
  argv[0] === 'query'
    ? import('./query.js').then((m) => {
        m.hideSdkWarningInFetchThreads();
        return m.runQuery(argv.slice(1), io);
      })
    : import('./commands.js').then((m) => m.main(argv, io));
run.then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`walship: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);

/**
 * The AWS SDK prints nine lines on Node 20 when it builds a client (its releases after January 2027
 * need Node 22), through `process.emitWarning`: they break the progress line and say nothing an
 * operator of this command can act on. This process is the CLI's own, so it drops that one warning;
 * every other warning still prints. The library never does this (warnings belong to the application).
 */
function hideSdkNodeSupportWarning(): void {
  const emit = process.emitWarning;
  const filtered = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]): void {
    const text = typeof warning === 'string' ? warning : `${warning?.name}: ${warning?.message}`;
    if (/^\s*(?:\S+: )?NodeVersionSupportWarning\b/.test(text)) return;
    (emit as (...args: unknown[]) => void).call(this, warning, ...rest);
  };
  process.emitWarning = filtered as typeof process.emitWarning;
}
