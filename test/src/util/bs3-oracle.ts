import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export type Bs3 = new (filename?: string | Buffer, options?: object) => any;

/**
 * better-sqlite3 (the oracle). Its native build matches the Node that installed it (Node 20 in
 * CI); on another Node ABI it cannot load, and the comparisons that need it are skipped there with
 * the reason.
 */
export function loadOracle(): { Bs3?: Bs3; skip: string | false } {
  try {
    const Bs3 = require('better-sqlite3') as Bs3;
    new Bs3(':memory:').close(); // the binding loads on the first open
    return { Bs3, skip: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_DLOPEN_FAILED') throw e;
    return { skip: `better-sqlite3 (the oracle) is built for another Node ABI than ${process.version}'s (ERR_DLOPEN_FAILED)` };
  }
}
