/** Database#table(): virtual tables driven by a generator. */
import { WalshipError } from './errors.js';
import type { Connection } from './connection.js';

export interface TableDefinition {
  columns: string[];
  rows: (...args: any[]) => Iterable<unknown>;
  parameters?: string[];
  safeIntegers?: boolean;
  directOnly?: boolean;
}

export function defineTable(conn: Connection, name: unknown, _definition: unknown): void {
  conn.assertIdle();
  throw new WalshipError('ERR_UNSUPPORTED', 'table() is not supported yet', { details: { name: String(name) } });
}
