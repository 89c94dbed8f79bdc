// DynamoDB Local (AWS's own emulator, 1.25.1), from the jar shipped inside the npm package
// amplify-dynamodb-simulator (folder emulator/: DynamoDBLocal.jar + DynamoDBLocal_lib/ with the
// sqlite4java native libraries). Needs Java (17 on this machine).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  ManagedProcess,
  ServerUnavailableError,
  freePort,
  probeCommand,
  retryOnPortClash,
  startTimeoutMs,
  toUnavailable,
  waitForPort,
  which,
  type Availability,
  type DynamoServer,
  readyDynamoServer,
} from './index.js';

const require = createRequire(import.meta.url);

const NAME = 'DynamoDB Local';
const INSTALL_JAVA =
  'install Java 17: `bash .ci/install-system-deps.sh` (Debian: apt-get install -y openjdk-17-jre-headless)';
const INSTALL_JAR = 'pnpm install in /work/main (test/package.json depends on amplify-dynamodb-simulator 2.9.30)';

function emulatorDir(): string | undefined {
  try {
    const pkg = require.resolve('amplify-dynamodb-simulator/package.json');
    const dir = path.join(path.dirname(pkg), 'emulator');
    return existsSync(path.join(dir, 'DynamoDBLocal.jar')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

function javaPath(): string | undefined {
  const home = process.env['JAVA_HOME'];
  if (home) {
    const p = which(path.join(home, 'bin', 'java'));
    if (p) return p;
  }
  return which('java', ['/usr/bin', '/usr/lib/jvm/default-java/bin']);
}

let cached: { missing: string | undefined; install: string } | undefined;

/** Java >= 11 runs, and the DynamoDB Local jar is installed. Cached per process. */
export function dynamoDbLocalAvailable(): Availability {
  cached ??= check();
  return cached.missing === undefined ? { ok: true } : { ok: false, reason: `${cached.missing}; ${cached.install}` };
}

function check(): { missing: string | undefined; install: string } {
  if (!emulatorDir()) return { missing: 'the DynamoDB Local jar was not found (amplify-dynamodb-simulator/emulator)', install: INSTALL_JAR };
  const java = javaPath();
  if (!java) return { missing: 'DynamoDB Local needs java, which is not on PATH', install: INSTALL_JAVA };
  const r = probeCommand(java, ['-version'], { timeoutMs: 20_000 });
  if (!r.ok) return { missing: `DynamoDB Local needs java, but \`${java} -version\` failed (${firstLine(r.output)})`, install: INSTALL_JAVA };
  const m = r.output.match(/version "(\d+)(?:\.(\d+))?/);
  const major = m ? (m[1] === '1' ? Number(m[2]) : Number(m[1])) : NaN;
  if (!(major >= 11)) return { missing: `DynamoDB Local needs Java >= 11, found: ${firstLine(r.output)}`, install: INSTALL_JAVA };
  return { missing: undefined, install: '' };
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? '';
}

export async function startDynamoDbLocal(): Promise<DynamoServer> {
  if (!dynamoDbLocalAvailable().ok) {
    throw new ServerUnavailableError({ server: NAME, reason: cached!.missing ?? 'not installed', install: cached!.install });
  }
  return retryOnPortClash(startOnce);
}

async function startOnce(): Promise<DynamoServer> {
  const dir = emulatorDir()!;
  const java = javaPath()!;
  const deadline = Date.now() + startTimeoutMs();
  const port = await freePort();
  const args = [
    // Start-up speed matters more than peak throughput for tests: C1 only, serial GC, small heap.
    '-XX:TieredStopAtLevel=1',
    '-XX:+UseSerialGC',
    '-Xms64m',
    '-Xmx512m',
    `-Djava.library.path=${path.join(dir, 'DynamoDBLocal_lib')}`,
    '-jar',
    path.join(dir, 'DynamoDBLocal.jar'),
    '-inMemory',
    '-port',
    String(port),
    '-disableTelemetry',
  ];
  // On a bind failure DynamoDB Local prints the exception but does not exit (non-daemon threads):
  // the fatal pattern turns that into an immediate failure (then retried on a new port).
  const proc = new ManagedProcess('dynamodb-local', java, args, {
    cwd: dir,
    fatalPattern: /Failed to bind|BindException|Exception in thread "main"/,
  });
  try {
    await waitForPort(port, { timeoutMs: Math.max(0, deadline - Date.now()), procs: [proc], owner: proc });
    const server = await readyDynamoServer('dynamodb-local', port, proc, deadline, 100);
    return server;
  } catch (e) {
    await proc.stop();
    throw toUnavailable(NAME, e, [proc], INSTALL_JAVA);
  }
}
