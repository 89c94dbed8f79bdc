// OpenStack Swift (Debian python3-swift 2.30.1) with the s3api middleware, plus memcached: a real
// object store behind an S3 API, all on random loopback ports, all config in a temp directory.
//
// Layout of one instance (tmp dir D):
//   D/swift.conf, D/{account,container,object}.ring.gz   swift_dir (set with set_swift_dir)
//   D/{proxy,account,container,object}-server.conf        one paste.deploy config per server
//   D/node/sdb1/                                           the single "device" (mount_check=false)
// Processes: memcached, and account/container/object/proxy servers, each `/usr/bin/python3 -c
// <launcher>` running swift.common.wsgi.run_wsgi with workers=0 (no fork, no privilege drop).

import type { S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  LOOPBACK,
  ManagedProcess,
  ServerUnavailableError,
  createBucketUntil,
  freePorts,
  makeS3ClientConfig,
  probeCommand,
  recordPorts,
  removeTempDir,
  retryOnPortClash,
  debugLog,
  serverDebug,
  startTimeoutMs,
  stopAll,
  toUnavailable,
  trackTempDir,
  waitForPort,
  which,
  type Availability,
  type S3Server,
} from './index.js';

const NAME = 'swift (s3api)';
/** Debian's python: swift is installed for it (a pyenv python3 earlier on PATH cannot import swift). */
const PYTHON = '/usr/bin/python3';
const INSTALL =
  '`bash .ci/install-system-deps.sh` (Debian: apt-get install -y python3-swift memcached)';

const ACCESS_KEY = 'test:tester'; // tempauth account:user
const SECRET_KEY = 'testing';
const REGION = 'us-east-1'; // must equal the s3api `location`, or SigV4 requests are refused

/** Environment for Debian's python: drop pyenv/virtualenv variables that would redirect imports. */
function pythonEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'VIRTUAL_ENV', 'PYTHONUSERBASE']) delete env[k];
  env['PYTHONDONTWRITEBYTECODE'] = '1';
  env['PYTHONUNBUFFERED'] = '1';
  return env;
}

function memcachedPath(): string | undefined {
  return which('memcached', ['/usr/bin', '/usr/sbin', '/usr/local/bin']);
}

let cached: Availability | undefined;

/** Debian's python3 imports swift (proxy, s3api, rings) and memcached is installed. Cached. */
export function swiftAvailable(): Availability {
  if (cached) return cached;
  cached = check();
  return cached;
}

/** What the Swift lane lacks, or undefined when it has everything. */
function missingParts(): string | undefined {
  const missing: string[] = [];
  if (!which(PYTHON)) {
    missing.push(`${PYTHON} (python3-swift)`);
  } else {
    const r = probeCommand(
      PYTHON,
      ['-c', 'import swift.proxy.server, swift.common.middleware.s3api.s3api, swift.common.ring, swift.obj.server'],
      { env: pythonEnv(), timeoutMs: 30_000 },
    );
    if (!r.ok) missing.push(`python3-swift (${PYTHON} cannot import swift)`);
  }
  if (!memcachedPath()) missing.push('memcached');
  return missing.length === 0 ? undefined : `the Swift lane needs ${missing.join(' and ')}`;
}

function check(): Availability {
  const missing = missingParts();
  return missing === undefined ? { ok: true } : { ok: false, reason: `${missing}; install with ${INSTALL}` };
}

// Runs one swift WSGI server in the foreground. set_swift_dir before anything imports
// storage_policy, so swift.conf is read from our dir and never from /etc/swift. Syslog output is
// replaced by a no-op handler (logs go to stderr through verbose=True / log_to_console).
// For the proxy, the launcher first builds the three one-replica rings (the proxy loads them at
// start; backends never read them), which saves a python start, and checks that the device dir
// takes user xattrs (the object server keeps metadata in xattrs; tmpfs before Linux 6.6 has none).
// argv: [-c, swiftDir, confPath, appSection, (devicePath, accountPort, containerPort, objectPort)]
const RUN_PY = `
import logging, os, sys
from swift.common import utils
class _NoSyslog(logging.Handler):
    def __init__(self, *args, **kwargs):
        logging.Handler.__init__(self)
    def emit(self, record):
        pass
utils.ThreadSafeSysLogHandler = _NoSyslog
utils.set_swift_dir(sys.argv[1])
if len(sys.argv) > 4:
    device = sys.argv[4]
    try:
        probe = os.path.join(device, '.xattr-probe')
        open(probe, 'wb').close()
        os.setxattr(probe, 'user.walship', b'1')
        os.unlink(probe)
    except OSError as e:
        sys.exit('the filesystem of %s does not support user xattrs (%s); set TMPDIR to a directory on ext4/xfs' % (device, e))
    from swift.common.ring import RingBuilder
    for name, port in (('account', sys.argv[5]), ('container', sys.argv[6]), ('object', sys.argv[7])):
        b = RingBuilder(6, 1, 1)
        b.add_dev({'id': 0, 'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': int(port),
                   'device': 'sdb1', 'weight': 100.0, 'meta': ''})
        b.rebalance()
        b.get_ring().save(os.path.join(sys.argv[1], name + '.ring.gz'))
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(sys.argv[2], sys.argv[3], verbose=True))
`;

interface Ports {
  proxy: number;
  account: number;
  container: number;
  object: number;
  memcached: number;
}

function configs(dir: string, p: Ports): Record<string, string> {
  const user = os.userInfo().username;
  const logLevel = serverDebug() ? 'INFO' : 'WARNING';
  const common = (port: number) =>
    [
      '[DEFAULT]',
      `bind_ip = ${LOOPBACK}`,
      `bind_port = ${port}`,
      'workers = 0',
      `user = ${user}`,
      `swift_dir = ${dir}`,
      `devices = ${path.join(dir, 'node')}`,
      'mount_check = false',
      'disable_fallocate = true',
      // Swift retries a busy port for 30 s by default; fail fast instead (the start is retried).
      'bind_timeout = 2',
      `log_level = ${logLevel}`,
      'log_name = %NAME%',
      '',
    ].join('\n');
  const backend = (name: 'account' | 'container' | 'object') =>
    common(p[name]).replace('%NAME%', `${name}-server`) +
    ['[pipeline:main]', `pipeline = ${name}-server`, '', `[app:${name}-server]`, `use = egg:swift#${name}`, ''].join('\n');
  return {
    'swift.conf': [
      '[swift-hash]',
      'swift_hash_path_suffix = walship-test',
      'swift_hash_path_prefix = walship-test',
      '',
      '[storage-policy:0]',
      'name = Policy-0',
      'default = yes',
      '',
    ].join('\n'),
    'account-server.conf': backend('account'),
    'container-server.conf': backend('container'),
    'object-server.conf': backend('object'),
    'proxy-server.conf':
      common(p.proxy).replace('%NAME%', 'proxy-server') +
      [
        '[pipeline:main]',
        // Swift inserts its required filters itself (catch_errors, gatekeeper, listing_formats,
        // copy, dlo, versioned_writes). s3api must precede tempauth; slo enables multipart.
        'pipeline = cache s3api tempauth slo proxy-server',
        '',
        '[app:proxy-server]',
        'use = egg:swift#proxy',
        'account_autocreate = true',
        'allow_account_management = true',
        // One replica: a benched backend means 503 for everything. Keep benching short and rare
        // (defaults: 10 errors -> 60 s) so a slow moment on a loaded machine cannot cascade.
        'error_suppression_limit = 100',
        'error_suppression_interval = 2',
        'conn_timeout = 3',
        'node_timeout = 30',
        '',
        '[filter:cache]',
        'use = egg:swift#memcache',
        `memcache_servers = ${LOOPBACK}:${p.memcached}`,
        '',
        '[filter:s3api]',
        'use = egg:swift#s3api',
        `location = ${REGION}`,
        's3_acl = false',
        // DeleteObjects deletes its keys two at a time by default; 1000 keys then take tens of
        // seconds on a loaded machine (past a request timeout). The backends can take more at once.
        'multi_delete_concurrency = 16',
        '',
        '[filter:tempauth]',
        'use = egg:swift#tempauth',
        // access key `test:tester`, secret `testing`; .admin lets the user create containers.
        'user_test_tester = testing .admin',
        '',
        '[filter:slo]',
        'use = egg:swift#slo',
        '',
      ].join('\n'),
  };
}

/**
 * Starts memcached + Swift account/container/object/proxy servers with s3api, and creates the
 * bucket. Throws ServerUnavailableError when python3-swift or memcached is missing.
 */
export async function startSwift(opts: { bucket?: string } = {}): Promise<S3Server> {
  if (!swiftAvailable().ok) throw new ServerUnavailableError({ server: NAME, reason: missingParts() ?? 'not installed', install: INSTALL });
  return retryOnPortClash(() => startOnce(opts.bucket ?? 'walship-test'));
}

async function startOnce(bucket: string): Promise<S3Server> {
  const t0 = Date.now();
  const deadline = t0 + startTimeoutMs();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'walship-swift-'));
  trackTempDir(dir);
  const procs: ManagedProcess[] = [];
  try {
    const [proxy, account, container, object, memcached] = await freePorts(5);
    const ports: Ports = { proxy: proxy!, account: account!, container: container!, object: object!, memcached: memcached! };
    const device = path.join(dir, 'node', 'sdb1');
    await mkdir(device, { recursive: true });
    for (const [name, text] of Object.entries(configs(dir, ports))) await writeFile(path.join(dir, name), text);

    const mcArgs = ['-l', LOOPBACK, '-p', String(ports.memcached), '-U', '0', '-m', '64', '-t', '2'];
    if (process.getuid?.() === 0) mcArgs.push('-u', 'root'); // memcached refuses to run as root without -u
    // SIGKILL: memcached takes up to 1 s to exit on SIGTERM and holds nothing worth flushing.
    const mc = new ManagedProcess('memcached', memcachedPath()!, mcArgs, { stopSignal: 'SIGKILL' });
    procs.push(mc);

    const env = pythonEnv();
    const swiftServer = (name: 'account' | 'container' | 'object' | 'proxy', extra: readonly string[] = []) => {
      const conf = path.join(dir, `${name}-server.conf`);
      const p = new ManagedProcess(`swift-${name}`, PYTHON, ['-c', RUN_PY, dir, conf, `${name}-server`, ...extra], {
        env,
        cwd: dir,
        displayArgs: ['-c', '<swift launcher>', dir, conf, `${name}-server`, ...extra],
      });
      procs.push(p);
      return p;
    };

    // All four start together (python imports dominate, ~0.5 s of CPU each). The proxy builds the
    // rings first; it opens no backend connection until it gets a request, and none is sent before
    // every backend listens (10 refused connections would bench a backend).
    const backends = { account: swiftServer('account'), container: swiftServer('container'), object: swiftServer('object') };
    const proxyProc = swiftServer('proxy', [device, String(ports.account), String(ports.container), String(ports.object)]);

    const wait = (port: number, owner: ManagedProcess) =>
      waitForPort(port, { timeoutMs: Math.max(0, deadline - Date.now()), procs, owner });
    await Promise.all([
      wait(ports.memcached, mc),
      wait(ports.account, backends.account),
      wait(ports.container, backends.container),
      wait(ports.object, backends.object),
    ]);
    debugLog(`swift: memcached and backends listen at +${Date.now() - t0} ms`);
    await wait(ports.proxy, proxyProc);
    debugLog(`swift: proxy listens at +${Date.now() - t0} ms`);

    const creds = { endpoint: `http://${LOOPBACK}:${ports.proxy}`, region: REGION, accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY };
    await createBucketUntil(makeS3ClientConfig(creds), bucket, deadline, procs, proxyProc);
    debugLog(`swift: bucket ${bucket} created, ready at +${Date.now() - t0} ms`);

    let stopped: Promise<void> | undefined;
    const server: S3Server = {
      ...creds,
      bucket,
      kind: 'swift',
      s3ClientConfig: () => makeS3ClientConfig(creds),
      stop: () =>
        (stopped ??= (async () => {
          await stopAll(procs);
          await removeTempDir(dir);
        })()),
    };
    recordPorts(server, [ports.proxy, ports.account, ports.container, ports.object, ports.memcached]);
    return server;
  } catch (e) {
    await stopAll(procs);
    await removeTempDir(dir);
    throw toUnavailable(NAME, e, procs, INSTALL);
  }
}

/**
 * Adds a Content-MD5 header to DeleteObjects requests (build step). Swift's s3api refuses a batch
 * delete without it, and SDK v3 >= 3.729 no longer sends it (it sends x-amz-checksum-* instead).
 * Harmless for other S3 servers. Returns the client.
 */
export function addContentMd5Middleware<C extends Pick<S3Client, 'middlewareStack'>>(client: C): C {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown } | undefined;
      if (context.commandName === 'DeleteObjectsCommand' && request?.headers) {
        const body = request.body;
        const bytes =
          typeof body === 'string' ? Buffer.from(body, 'utf8') : body instanceof Uint8Array ? body : body == null ? Buffer.alloc(0) : undefined;
        if (bytes) {
          const hasMd5 = Object.keys(request.headers).some((h) => h.toLowerCase() === 'content-md5');
          if (!hasMd5) request.headers['content-md5'] = createHash('md5').update(bytes).digest('base64');
        }
      }
      return next(args);
    },
    { step: 'build', name: 'walshipContentMd5', override: true },
  );
  return client;
}
