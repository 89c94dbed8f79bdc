export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** One structured log line: component, database, txid and generation are keys, not prose. */
export interface LogEntry {
  time: string;
  level: Exclude<LogLevel, 'silent'>;
  component: string;
  msg: string;
  database?: string;
  generation?: string;
  txid?: number;
  [key: string]: unknown;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export class Logger {
  private readonly sink: (entry: LogEntry) => void;
  private readonly min: number;
  private readonly base: Record<string, unknown>;

  constructor(options: { sink?: ((entry: LogEntry) => void) | undefined; level?: LogLevel | undefined; base?: Record<string, unknown> }) {
    this.sink = options.sink ?? ((entry) => process.stderr.write(`${JSON.stringify(entry)}\n`));
    // A caller-supplied sink sees everything from info up unless told otherwise; stderr only warnings.
    this.min = RANK[options.level ?? (options.sink ? 'info' : 'warn')];
    this.base = options.base ?? {};
  }

  child(fields: Record<string, unknown>): Logger {
    const child = Object.create(Logger.prototype) as Logger;
    Object.assign(child, { sink: this.sink, min: this.min, base: { ...this.base, ...fields } });
    return child;
  }

  with(fields: Record<string, unknown>): void {
    Object.assign(this.base, fields);
  }

  debug(msg: string, fields: Record<string, unknown> = {}): void {
    this.write('debug', msg, fields);
  }
  info(msg: string, fields: Record<string, unknown> = {}): void {
    this.write('info', msg, fields);
  }
  warn(msg: string, fields: Record<string, unknown> = {}): void {
    this.write('warn', msg, fields);
  }
  error(msg: string, fields: Record<string, unknown> = {}): void {
    this.write('error', msg, fields);
  }

  private write(level: Exclude<LogLevel, 'silent'>, msg: string, fields: Record<string, unknown>): void {
    if (RANK[level] < this.min) return;
    const entry = { time: new Date().toISOString(), level, component: 'shipper', ...this.base, ...fields, msg } as LogEntry;
    try {
      this.sink(entry);
    } catch {
      // A broken log sink must not stop replication.
    }
  }
}
