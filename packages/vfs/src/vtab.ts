/**
 * Database#table(): virtual tables whose rows come from a generator function, with better-sqlite3's
 * rules. A definition `{ columns, rows, parameters? }` is an eponymous table-valued function
 * (`SELECT * FROM name(?, ?)`); a factory function instead serves `CREATE VIRTUAL TABLE t USING
 * name(args)`. Parameters are HIDDEN columns that only accept `=` constraints. One sqlite3_module
 * per wasm module serves every registration (the registration id travels as pAux).
 */
import { WalshipRangeError, WalshipTypeError } from './errors.js';
import { readArgs, setResult } from './functions.js';
import type { Connection } from './connection.js';
import type { Runtime } from './runtime.js';

export interface TableDefinition {
  columns: string[];
  rows: (...args: any[]) => Iterator<unknown>;
  parameters?: string[];
  safeIntegers?: boolean;
  directOnly?: boolean;
}

type Factory = (this: { module: string; database: string; table: string }, ...args: string[]) => TableDefinition;

interface Registration {
  conn: Connection;
  name: string;
  eponymous: boolean;
  factory?: Factory;
  def?: Checked;
}

interface Checked {
  columns: string[];
  parameters: string[];
  rows: (...args: unknown[]) => Iterator<unknown>;
  safe: boolean;
  directOnly: boolean;
}

interface Table {
  reg: Registration;
  def: Checked;
}

interface Cursor {
  table: Table;
  iter: Iterator<unknown> | undefined;
  row: unknown[] | undefined;
  /** Parameter values as the hidden columns report them: own copies, so the generator cannot change them. */
  args: unknown[];
  rowid: number;
}

const SQLITE_ERROR = 1;
const SQLITE_CONSTRAINT = 19;
const SQLITE_INDEX_CONSTRAINT_EQ = 2;
const SQLITE_VTAB_DIRECTONLY = 3;
const MAX_PARAMETERS = 32;
const VTAB_SIZE = 12;
const CURSOR_SIZE = 4;

function zeroed(rt: Runtime, n: number): number {
  const p = rt.alloc(n);
  rt.h8().fill(0, p, p + n);
  return p;
}

const registrations = new Map<number, Registration>();
let nextId = 1;
const tables = new Map<number, Table>();
const cursors = new Map<number, Cursor>();
/** The module structs stay referenced for the life of the runtime: every connection points at them. */
const modules = new WeakMap<Runtime, { pModule: number; pModuleEponymous: number; keep: unknown[] }>();

function bad(message: string): WalshipTypeError {
  return new WalshipTypeError('ERR_INVALID_ARG', message);
}

const GeneratorFunction = Object.getPrototypeOf(function* () {}).constructor as new () => unknown;

function names(v: unknown, what: string): string[] {
  if (!Array.isArray(v)) throw bad(`Expected the "${what}" option to be an array of strings`);
  const out: string[] = [];
  for (let i = 0; i < v.length; i++) {
    if (!(i in v) || typeof v[i] !== 'string') throw bad(`Expected the "${what}" option to be an array of strings`);
    out.push(v[i]);
  }
  if (new Set(out).size !== out.length) throw bad(`The "${what}" option contains a duplicate name`);
  return out;
}

function check(def: unknown, conn: Connection): Checked {
  if (typeof def !== 'object' || def === null) throw bad('Virtual table definition must be an object');
  const o = def as Record<string, unknown>;
  for (const key of ['safeIntegers', 'directOnly']) {
    if (key in o && typeof o[key] !== 'boolean') throw bad(`Expected the "${key}" option to be a boolean`);
  }
  const columns = names(o.columns, 'columns');
  if (columns.length === 0) throw new WalshipRangeError('ERR_INVALID_ARG', 'Virtual tables must have at least one column');
  const rows = o.rows;
  if (typeof rows !== 'function' || !(rows instanceof GeneratorFunction) || Object.getPrototypeOf(rows) !== GeneratorFunction.prototype) {
    throw bad('Expected the "rows" option to be a generator function');
  }
  let parameters: string[];
  if ('parameters' in o) {
    parameters = names(o.parameters, 'parameters');
  } else {
    const n = (rows as { length: unknown }).length;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw bad('Expected the generator function\'s length to be a positive integer');
    if (n > MAX_PARAMETERS) throw new WalshipRangeError('ERR_INVALID_ARG', `Virtual tables cannot have more than ${MAX_PARAMETERS} parameters`);
    parameters = Array.from({ length: n }, (_, i) => `$${i + 1}`);
  }
  if (parameters.length > MAX_PARAMETERS) throw new WalshipRangeError('ERR_INVALID_ARG', `Virtual tables cannot have more than ${MAX_PARAMETERS} parameters`);
  if (parameters.some((p) => columns.includes(p))) throw bad('Virtual table parameters cannot share a name with a column');
  return { columns, parameters, rows: rows as Checked['rows'], safe: (o.safeIntegers as boolean | undefined) ?? conn.safeDefault, directOnly: o.directOnly === true };
}

const quote = (s: string): string => `"${s.replace(/"/g, '""')}"`;

export function defineTable(conn: Connection, name: unknown, definition: unknown): void {
  if (typeof name !== 'string') throw bad('Expected first argument to be a string');
  if (name === '') throw bad('Virtual table module name cannot be an empty string');
  let reg: Registration;
  if (typeof definition === 'function') {
    if (definition instanceof GeneratorFunction) throw bad('Expected second argument to be a factory function or a definition object');
    reg = { conn, name, eponymous: false, factory: definition as Factory };
  } else {
    reg = { conn, name, eponymous: true, def: check(definition, conn) };
  }
  const m = moduleFor(conn.rt);
  const id = nextId++;
  registrations.set(id, reg);
  // The raw export, not capi's wrapper: the wrapper ties the module struct to this connection and
  // frees it when the connection closes, while every connection of the process shares it.
  const raw = conn.rt.sqlite3.wasm.exports as unknown as { sqlite3_create_module_v2(db: number, name: number, mod: number, aux: number, destroy: number): number };
  const [zName] = conn.rt.allocSql(name);
  let rc: number;
  try {
    rc = raw.sqlite3_create_module_v2(conn.pDb, zName, reg.eponymous ? m.pModuleEponymous : m.pModule, id, 0);
  } finally {
    conn.rt.dealloc(zName);
  }
  if (rc !== 0) {
    registrations.delete(id);
    throw conn.error(rc, `table ${name}`);
  }
}

function moduleFor(rt: Runtime): { pModule: number; pModuleEponymous: number; keep: unknown[] } {
  let m = modules.get(rt);
  if (m) return m;
  const sqlite3 = rt.sqlite3 as unknown as {
    vtab: {
      setupModule(opt: { methods: Record<string, unknown> }): { pointer: number };
      xIndexInfo(p: number): IndexInfo;
    };
    capi: { sqlite3_declare_vtab(db: number, sql: string): number; sqlite3_vtab_config(db: number, op: number): number };
    wasm: { allocCString(s: string): number; poke(p: number, v: bigint, t: string): void; peekPtr(p: number): number; cstrToJs(p: number): string };
  };
  const { vtab, capi, wasm } = sqlite3;
  const fail = (r: Registration | undefined, e: unknown): number => {
    if (r && r.conn.jsError === undefined) r.conn.jsError = { value: e };
    return SQLITE_ERROR;
  };
  const connect = (create: boolean) => (pDb: number, pAux: number, argc: number, argv: number, ppVtab: number): number => {
    const reg = registrations.get(pAux);
    if (!reg) return SQLITE_ERROR;
    try {
      let def = reg.def;
      if (!def) {
        const args: string[] = [];
        for (let i = 0; i < argc; i++) args.push(wasm.cstrToJs(wasm.peekPtr(argv + i * 4)));
        const [module, database, table, ...rest] = args;
        reg.conn.busy++;
        try {
          def = check(reg.factory!.call({ module: module!, database: database!, table: table! }, ...rest.map((s) => s.trim())), reg.conn);
        } finally {
          reg.conn.busy--;
        }
      }
      const cols = def.columns.map(quote).concat(def.parameters.map((p) => `${quote(p)} HIDDEN`));
      const rc = capi.sqlite3_declare_vtab(pDb, `CREATE TABLE x(${cols.join(', ')})`);
      if (rc !== 0) return rc;
      if (def.directOnly) capi.sqlite3_vtab_config(pDb, SQLITE_VTAB_DIRECTONLY);
      // sqlite3_vtab { pModule, nRef, zErrMsg }: SQLite fills the first two, zErrMsg starts NULL.
      const pVtab = zeroed(rt, VTAB_SIZE);
      rt.h32()[ppVtab >> 2] = pVtab;
      tables.set(pVtab, { reg, def });
      return 0;
    } catch (e) {
      return fail(reg, e);
    }
  };
  const disconnect = (pVtab: number): number => {
    tables.delete(pVtab);
    rt.dealloc(pVtab);
    return 0;
  };
  const methods: Record<string, unknown> = {
    xConnect: connect(false),
    xCreate: connect(true),
    xDisconnect: disconnect,
    xDestroy: disconnect,
    xBestIndex: (pVtab: number, pInfo: number): number => {
      const t = tables.get(pVtab);
      if (!t) return SQLITE_ERROR;
      return bestIndex(t, vtab.xIndexInfo(pInfo), (message) => {
        // Allocate first: the allocation may grow the heap, and h32() must be the view after it.
        const zErr = wasm.allocCString(message);
        rt.h32()[(pVtab + 8) >> 2] = zErr;
      });
    },
    xOpen: (pVtab: number, ppCursor: number): number => {
      const t = tables.get(pVtab);
      if (!t) return SQLITE_ERROR;
      // sqlite3_vtab_cursor { pVtab }: SQLite sets it after xOpen.
      const pCursor = zeroed(rt, CURSOR_SIZE);
      rt.h32()[ppCursor >> 2] = pCursor;
      cursors.set(pCursor, { table: t, iter: undefined, row: undefined, args: [], rowid: 0 });
      return 0;
    },
    xClose: (pCursor: number): number => {
      const c = cursors.get(pCursor);
      cursors.delete(pCursor);
      if (c?.iter?.return) {
        try {
          c.iter.return();
        } catch {
          // The statement is over; a generator's cleanup error has nobody left to report to.
        }
      }
      rt.dealloc(pCursor);
      return 0;
    },
    xFilter: (pCursor: number, idxNum: number, _idxStr: number, argc: number, argv: number): number => {
      const c = cursors.get(pCursor);
      if (!c) return SQLITE_ERROR;
      const { reg, def } = c.table;
      const args = filterArgs(rt, c, idxNum, argc, argv);
      if (args === null) return 0;
      reg.conn.busy++;
      try {
        c.iter = def.rows(...args);
        return advance(c);
      } catch (e) {
        c.iter = undefined;
        return fail(reg, e);
      } finally {
        reg.conn.busy--;
      }
    },
    xNext: (pCursor: number): number => {
      const c = cursors.get(pCursor);
      if (!c) return SQLITE_ERROR;
      c.table.reg.conn.busy++;
      try {
        return advance(c);
      } catch (e) {
        c.row = undefined;
        return fail(c.table.reg, e);
      } finally {
        c.table.reg.conn.busy--;
      }
    },
    xEof: (pCursor: number): number => (cursors.get(pCursor)?.row === undefined ? 1 : 0),
    xColumn: (pCursor: number, ctx: number, i: number): number => {
      const c = cursors.get(pCursor);
      if (!c || !c.row) return SQLITE_ERROR;
      const nCols = c.table.def.columns.length;
      try {
        setResult(rt, ctx, i < nCols ? c.row[i] : c.args[i - nCols], c.table.reg.name);
        return 0;
      } catch (e) {
        return fail(c.table.reg, e);
      }
    },
    xRowid: (pCursor: number, pRowid: number): number => {
      const c = cursors.get(pCursor);
      wasm.poke(pRowid, BigInt(c?.rowid ?? 0), 'i64');
      return 0;
    },
  };
  // Nothing may throw across the WASM boundary: a JavaScript exception would unwind SQLite's frames.
  for (const [key, fn] of Object.entries(methods)) {
    const f = fn as (...a: number[]) => number;
    methods[key] = (...a: number[]): number => {
      try {
        return f(...a);
      } catch {
        return SQLITE_ERROR;
      }
    };
  }
  const mod = vtab.setupModule({ methods });
  const eponymous = { ...methods };
  // No xCreate: an eponymous-only module, which CREATE VIRTUAL TABLE refuses.
  delete eponymous.xCreate;
  const modEponymous = vtab.setupModule({ methods: eponymous });
  m = { pModule: mod.pointer, pModuleEponymous: modEponymous.pointer, keep: [mod, modEponymous, methods] };
  modules.set(rt, m);
  return m;
}

/**
 * xBestIndex: the plan uses every "=" constraint on a parameter (hidden column), one per parameter,
 * passed to xFilter in parameter order (idxNum is the mask of those given). Any other operator on a
 * parameter is an error (`setError` puts the message in the vtab's zErrMsg); an unusable "=" makes
 * SQLite try another order.
 */
function bestIndex(t: Table, info: IndexInfo, setError: (message: string) => void): number {
  const nCols = t.def.columns.length;
  const chosen = new Array<number>(t.def.parameters.length).fill(-1);
  for (let i = 0; i < info.$nConstraint; i++) {
    const c = info.nthConstraint(i) as IndexConstraint;
    const k = c.$iColumn - nCols;
    if (k < 0) continue;
    if (c.$op !== SQLITE_INDEX_CONSTRAINT_EQ) {
      setError(`virtual table ${t.reg.name} only supports "=" constraints on its parameter "${t.def.parameters[k]}"`);
      return SQLITE_ERROR;
    }
    if (!c.$usable) return SQLITE_CONSTRAINT;
    if (chosen[k] === -1) chosen[k] = i;
  }
  let mask = 0;
  let argv = 0;
  for (let k = 0; k < chosen.length; k++) {
    const i = chosen[k]!;
    if (i < 0) continue;
    mask |= 1 << k;
    const u = info.nthConstraintUsage(i) as IndexConstraintUsage;
    u.$argvIndex = ++argv;
    u.$omit = 1;
  }
  info.$idxNum = mask;
  info.$estimatedCost = 1_000_000_000 / (1 + argv);
  info.$estimatedRows = 1000;
  return 0;
}

/**
 * xFilter's arguments: the parameters the plan gives (idxNum: which), in parameter order, and the
 * cursor reset to before its first row. null when one of them is NULL: no row can match.
 */
function filterArgs(rt: Runtime, c: Cursor, idxNum: number, argc: number, argv: number): unknown[] | null {
  const def = c.table.def;
  const supplied: unknown[] = [];
  readArgs(rt, argc, argv, def.safe, supplied);
  const reported: unknown[] = [];
  readArgs(rt, argc, argv, def.safe, reported);
  const args: unknown[] = new Array(def.parameters.length).fill(undefined);
  c.args = new Array(def.parameters.length).fill(null);
  let j = 0;
  for (let k = 0; k < def.parameters.length; k++) {
    if (idxNum & (1 << k)) {
      args[k] = supplied[j];
      c.args[k] = reported[j++];
    }
  }
  c.rowid = 0;
  c.row = undefined;
  c.iter = undefined;
  return supplied.some((v) => v === null) ? null : args;
}

interface IndexConstraint {
  $iColumn: number;
  $op: number;
  $usable: number;
}
interface IndexConstraintUsage {
  $argvIndex: number;
  $omit: number;
}
interface IndexInfo {
  $nConstraint: number;
  $idxNum: number;
  $estimatedCost: number;
  $estimatedRows: bigint | number;
  nthConstraint(i: number): unknown;
  nthConstraintUsage(i: number): unknown;
}

/** Moves the cursor to the generator's next row; validates its shape (a TypeError names the problem). */
function advance(c: Cursor): number {
  const r = c.iter!.next();
  if (r.done) {
    c.row = undefined;
    return 0;
  }
  const columns = c.table.def.columns;
  const v = r.value;
  let row: unknown[];
  if (Array.isArray(v)) {
    if (v.length !== columns.length) {
      throw bad(`Virtual table module "${c.table.reg.name}" yielded a row with an incorrect number of columns`);
    }
    row = v.slice();
  } else if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    for (const key of Object.keys(o)) {
      if (!columns.includes(key)) throw bad(`Virtual table module "${c.table.reg.name}" yielded a row with an undeclared column "${key}"`);
    }
    row = columns.map((k) => {
      if (!(k in o)) throw bad(`Virtual table module "${c.table.reg.name}" yielded a row with a missing column "${k}"`);
      return o[k];
    });
  } else {
    throw bad(`Virtual table module "${c.table.reg.name}" yielded something that is not an array or object`);
  }
  c.row = row;
  c.rowid++;
  return 0;
}
