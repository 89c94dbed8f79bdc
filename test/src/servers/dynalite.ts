// dynalite (npm 4.0.0, in-memory) in a child Node process. A child rather than in-process: its
// request handling cannot stall the test process's event loop (which would distort lease timing),
// a test can SIGSTOP/SIGKILL it to simulate an outage, and stop() is the same process-group kill as
// for every other server.

import { createRequire } from 'node:module';
import {
  ManagedProcess,
  ServerUnavailableError,
  startTimeoutMs,
  toUnavailable,
  type DynamoServer,
  readyDynamoServer,
} from './index.js';

const require = createRequire(import.meta.url);

const NAME = 'dynalite';
const INSTALL = 'pnpm install in /work/main (test/package.json depends on dynalite 4.0.0)';

// argv: [node, modulePath]
const CHILD_SRC = `
const dynalite = require(process.argv[1]);
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
server.on('error', (err) => { console.error((err && err.stack) || String(err)); process.exit(1); });
server.listen(0, '127.0.0.1', () => {
  process.stdout.write('WALSHIP_READY ' + JSON.stringify({ port: server.address().port }) + '\\n');
});
`;

export async function startDynalite(): Promise<DynamoServer> {
  let modulePath: string;
  try {
    modulePath = require.resolve('dynalite');
  } catch (e) {
    throw new ServerUnavailableError({ server: NAME, reason: 'the npm package dynalite cannot be resolved', install: INSTALL, cause: e });
  }
  const deadline = Date.now() + startTimeoutMs();
  const proc = new ManagedProcess(NAME, process.execPath, ['-e', CHILD_SRC, modulePath], {
    displayArgs: ['-e', '<dynalite launcher>', modulePath],
  });
  try {
    const m = await proc.waitForLine(/^WALSHIP_READY (\{.*\})$/, deadline, 'dynalite to listen');
    const port = (JSON.parse(m[1]!) as { port: number }).port;
    const server = await readyDynamoServer('dynalite', port, proc, deadline);
    return server;
  } catch (e) {
    await proc.stop();
    throw toUnavailable(NAME, e, [proc], INSTALL);
  }
}
