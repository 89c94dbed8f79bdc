/**
 * How the CLI ends: an exit code per class of failure, and the error printed once for a person
 * (stderr) and, with --json, once for a program (stdout). Nothing here imports the SDKs: `--help`
 * must not pay for them.
 */

/** Exit codes (README "CLI"). */
export const EXIT = { ok: 0, failed: 1, usage: 2, storage: 3, noReplica: 4 } as const;

/** A command line the CLI cannot run as given (exit 2, code ERR_USAGE). */
export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
}

/** The object store or DynamoDB could not be reached or refused us: exit 3. */
const UNREACHABLE: ReadonlySet<string> = new Set([
  'ERR_STORAGE_NO_BUCKET',
  'ERR_STORAGE_ACCESS_DENIED',
  'ERR_STORAGE_UNAVAILABLE',
  'ERR_STORAGE_TIMEOUT',
  'ERR_LEASE_UNAVAILABLE',
  'ERR_LEASE_THROTTLED',
]);

/**
 * The operator's environment or command line is wrong: exit 2. ERR_STORAGE_INVALID_REQUEST from the
 * CLI is nearly always the environment too (no region, a bad endpoint URL).
 */
const CONFIGURATION: ReadonlySet<string> = new Set([
  'ERR_USAGE',
  'ERR_INVALID_OPTION',
  'ERR_STORAGE_INVALID_REQUEST',
  'ERR_STORAGE_NO_CREDENTIALS',
  'ERR_LEASE_NO_CREDENTIALS',
  'ERR_TARGET_EXISTS',
  'ERR_TARGET_LOCKED',
  'ERR_KEY_REQUIRED',
  'ERR_UNKNOWN_KEY',
  'ERR_BAD_KEY',
  'ERR_LEASE_TABLE_MISSING',
  'ERR_LEASE_TABLE_SCHEMA',
]);

export function exitCodeFor(code: string | undefined): number {
  if (code === undefined) return EXIT.failed;
  if (code === 'ERR_NO_REPLICA') return EXIT.noReplica;
  if (UNREACHABLE.has(code)) return EXIT.storage;
  if (CONFIGURATION.has(code) || code.startsWith('ERR_PARSE_ARGS')) return EXIT.usage;
  return EXIT.failed;
}

export interface CliFailure {
  code: string;
  message: string;
  details: Record<string, unknown>;
  exitCode: number;
}

/** Whatever a command threw, as the code, message and details the CLI prints. */
export function failureOf(e: unknown): CliFailure {
  const err = (typeof e === 'object' && e !== null ? e : { message: String(e) }) as { code?: unknown; name?: unknown; message?: unknown; details?: unknown };
  const usage = e instanceof UsageError || (typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS'));
  const code = usage ? 'ERR_USAGE' : typeof err.code === 'string' ? err.code : 'ERR_UNEXPECTED';
  const details = typeof err.details === 'object' && err.details !== null ? { ...(err.details as Record<string, unknown>) } : {};
  return { code, message: typeof err.message === 'string' ? err.message : String(e), details, exitCode: exitCodeFor(code) };
}

/**
 * JSON that never throws on what a details object may hold: bigints as strings, an Error as its
 * name, code and message (not its stack or cause: a cause may be an SDK object).
 */
export function jsonText(value: unknown, space?: number): string {
  return JSON.stringify(
    value,
    (_k, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Error) return { name: v.name, ...((v as { code?: unknown }).code !== undefined ? { code: (v as { code?: unknown }).code } : {}), message: v.message };
      return v;
    },
    space,
  );
}

export interface FailureOutput {
  stdout: { write(s: string): boolean };
  stderr: { write(s: string): boolean };
}

/**
 * One human line (plus a hint for usage errors) on stderr; with `json`, also one JSON object on
 * stdout: `{ ok: false, exitCode, error: { code, message, details } }`.
 */
export function reportFailure(io: FailureOutput, f: CliFailure, options: { json: boolean; command?: string | undefined }): number {
  if (f.code === 'ERR_USAGE') io.stderr.write(`walship: ${f.message}\nRun 'walship ${options.command ? `${options.command} ` : ''}--help' for usage.\n`);
  else io.stderr.write(`walship: ${f.code}: ${f.message}\n`);
  if (options.json) io.stdout.write(`${jsonText({ ok: false, exitCode: f.exitCode, error: { code: f.code, message: f.message, details: f.details } }, 2)}\n`);
  return f.exitCode;
}
