/** What the CLI prints: sizes, ages, times, JSON results and the progress line. */
import type { RestorePhase, RestoreProgress } from './restore.js';
import { jsonText } from './cli-errors.js';

export interface CliIo {
  stdout: NodeJS.WritableStream & { write(s: string): boolean };
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

export function json(io: CliIo, value: unknown): void {
  io.stdout.write(`${jsonText(value, 2)}\n`);
}

export const iso = (ms: number | null | undefined): string => (ms === null || ms === undefined ? '-' : new Date(ms).toISOString());

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export function formatAge(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (ms < 172_800_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

/**
 * Progress on stderr: one rewritten line on a terminal, a plain line per step otherwise. The plan
 * phase knows no counts yet, so it says what it does instead of printing a line of zeros; `phases`
 * leaves out the ones a command does not show (verify renames nothing into place).
 */
export class ProgressLine {
  readonly #tty: boolean;
  readonly #phases: ReadonlySet<RestorePhase> | null;
  #lastPlain = 0;
  #lastPhase = '';
  #drawn = false;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly location: string,
    options: { phases?: readonly RestorePhase[] } = {},
  ) {
    this.#tty = out.isTTY === true;
    this.#phases = options.phases ? new Set(options.phases) : null;
  }

  update = (p: RestoreProgress): void => {
    if (this.#phases && !this.#phases.has(p.phase)) return;
    const text =
      p.phase === 'plan'
        ? `plan     listing ${this.location}`
        : `${p.phase.padEnd(8)} ${p.objectsDone}/${p.objectsTotal} objects  ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)}  txid ${p.txid}${p.targetTxid ? `/${p.targetTxid}` : ''}`;
    if (this.#tty) {
      const width = 24;
      const filled = p.objectsTotal > 0 ? Math.round((p.objectsDone / p.objectsTotal) * width) : 0;
      this.out.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}\x1b[K`);
      this.#drawn = true;
      return;
    }
    const now = Date.now();
    if (p.phase !== this.#lastPhase || now - this.#lastPlain >= 1000 || p.objectsDone === p.objectsTotal) {
      this.out.write(`walship: ${text}\n`);
      this.#lastPlain = now;
      this.#lastPhase = p.phase;
    }
  };

  end(): void {
    if (this.#drawn) this.out.write('\n');
    this.#drawn = false;
  }
}
