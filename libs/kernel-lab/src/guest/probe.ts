// The guest probe: runs inside the QEMU guest (bundled, plain Node, no workspace imports) and
// answers what the kernel really does, independently of the agent under test. One JSON request
// per line over TCP, one JSON answer per line. Only reachable through the lab's hostfwd on the
// host's loopback.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

const MODULE_DIR = '/var/lib/rebootless-lab/modules';
const GUEST_PROGRAMS = '/guest';
const LIVEPATCH = '/sys/kernel/livepatch';
/** The lab's data disk mount (see initramfs.ts GUEST_DATA_DIR). */
const DATA_DIR = '/var/lib/rebootless';

export interface ProbePatch {
  name: string;
  enabled: string;
  transition: string;
  /** `<object>/<function,sympos>` entries, sorted. */
  functions: string[];
}

export interface ProbeState {
  release: string;
  bootId: string;
  cmdline: string;
  tainted: number;
  livepatch: ProbePatch[];
  /** /proc/modules names, most recently loaded first. */
  modules: string[];
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

type Request =
  | { op: 'state' }
  | { op: 'put-module'; name: string; base64: string }
  | { op: 'insmod'; name: string }
  | { op: 'rmmod'; name: string }
  | { op: 'write-enabled'; name: string; value: '0' | '1' }
  | { op: 'run'; program: string; args: string[] }
  | { op: 'dmesg' }
  | { op: 'read-kernel-file'; path: string }
  | { op: 'exercise' }
  | { op: 'connect'; host: string; port: number; send: string; timeoutMs?: number }
  | { op: 'data-file'; name: string; content?: string }
  | { op: 'poweroff' };

const FILE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * What a smoke test does with a module loaded: reads what the kernel's own code paths serve
 * (every /proc/sys file, the common /proc files, the livepatch tree, a few process listings) in a
 * child shell, so a read that oopses kills a `cat`, not the probe. Prints how many files it read.
 */
const EXERCISE = `n=0
for f in $(find /proc/sys /sys/kernel/livepatch -type f 2>/dev/null) /proc/cmdline /proc/version /proc/meminfo \
  /proc/stat /proc/modules /proc/mounts /proc/interrupts /proc/loadavg /proc/uptime /proc/filesystems \
  /proc/self/status /proc/self/maps /proc/self/stat /proc/self/cmdline /proc/self/environ /proc/cpuinfo; do
  cat "$f" >/dev/null 2>&1 && n=$((n+1))
done
ps >/dev/null 2>&1; mount >/dev/null 2>&1; ls -lR /proc/self/ >/dev/null 2>&1; ls /sys/module >/dev/null 2>&1
echo "$n"`;

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function subdirs(dir: string): string[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

function state(): ProbeState {
  const livepatch = subdirs(LIVEPATCH).map((name) => {
    const dir = path.join(LIVEPATCH, name);
    const functions: string[] = [];
    for (const object of subdirs(dir))
      for (const fn of subdirs(path.join(dir, object))) functions.push(`${object}/${fn}`);
    return {
      name,
      enabled: (read(path.join(dir, 'enabled')) ?? '').trim(),
      transition: (read(path.join(dir, 'transition')) ?? '').trim(),
      functions,
    };
  });
  return {
    release: (read('/proc/sys/kernel/osrelease') ?? '').trim(),
    bootId: (read('/proc/sys/kernel/random/boot_id') ?? '').trim(),
    cmdline: (read('/proc/cmdline') ?? '').replace(/\n$/, ''),
    tainted: Number((read('/proc/sys/kernel/tainted') ?? 'NaN').trim()),
    livepatch,
    modules: (read('/proc/modules') ?? '')
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n.length > 0),
  };
}

function run(file: string, args: string[], timeoutMs = 120_000): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve({ code, stdout, stderr: error && !stderr ? error.message : stderr });
      },
    );
  });
}

/** Whether the guest can reach host:port (through the lab's forwards), and what it answers to one line. */
function connect(
  host: string,
  port: number,
  send: string,
  timeoutMs: number,
): Promise<{ connected: boolean; reply?: string; error?: string }> {
  return new Promise((resolve) => {
    let connected = false;
    let reply = '';
    const socket = net.connect({ host: String(host), port: Number(port) });
    const done = (error?: string) => {
      socket.destroy();
      resolve(error === undefined ? { connected, reply } : { connected, reply, error });
    };
    socket.setTimeout(timeoutMs, () => done('timeout'));
    socket.on('connect', () => {
      connected = true;
      socket.write(`${send}\n`);
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (reply.includes('\n')) {
        reply = reply.slice(0, reply.indexOf('\n'));
        done();
      }
    });
    socket.on('end', () => done());
    socket.on('error', (error: NodeJS.ErrnoException) => done(error.code ?? error.message));
  });
}

/** Other user processes (kernel threads have an empty cmdline; zombies are done already). */
function otherProcesses(): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === 1 || pid === process.pid) continue;
    const stat = read(`/proc/${pid}/stat`) ?? '';
    if ((read(`/proc/${pid}/cmdline`) ?? '') === '' || stat[stat.lastIndexOf(')') + 2] === 'Z') continue;
    pids.push(pid);
  }
  return pids;
}

/**
 * As init does on a reboot: SIGTERM to every service (the agent then stops cleanly, which its
 * crash-loop guard relies on), a grace period, then sync and power off.
 */
async function orderlyPoweroff(graceMs: number): Promise<void> {
  for (const pid of otherProcesses()) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  const end = Date.now() + graceMs;
  while (otherProcesses().length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  await run('sync', []);
  await run('poweroff', ['-f']);
}

function checkName(name: unknown): string {
  if (typeof name !== 'string' || !FILE_NAME.test(name)) throw new Error(`bad name ${JSON.stringify(name)}`);
  return name;
}

async function handle(req: Request): Promise<unknown> {
  switch (req.op) {
    case 'state':
      return state();
    case 'put-module': {
      const name = checkName(req.name);
      const bytes = Buffer.from(req.base64, 'base64');
      fs.mkdirSync(MODULE_DIR, { recursive: true });
      const file = path.join(MODULE_DIR, `${name}.ko`);
      fs.writeFileSync(file, bytes);
      return { path: file, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
    }
    case 'insmod':
      return run('insmod', [path.join(MODULE_DIR, `${checkName(req.name)}.ko`)]);
    case 'rmmod':
      return run('rmmod', [checkName(req.name)]);
    case 'write-enabled': {
      const name = checkName(req.name);
      if (req.value !== '0' && req.value !== '1') throw new Error('value must be "0" or "1"');
      try {
        // As `echo 0 > enabled` does: one write to the existing attribute.
        const fd = fs.openSync(path.join(LIVEPATCH, name, 'enabled'), fs.constants.O_WRONLY | fs.constants.O_TRUNC);
        try {
          fs.writeSync(fd, req.value);
        } finally {
          fs.closeSync(fd);
        }
        return { ok: true };
      } catch (error) {
        return { ok: false, code: (error as NodeJS.ErrnoException).code, message: (error as Error).message };
      }
    }
    case 'run': {
      const program = checkName(req.program);
      const args = Array.isArray(req.args) ? req.args.map(String) : [];
      return run(process.execPath, [path.join(GUEST_PROGRAMS, `${program}.js`), ...args]);
    }
    case 'dmesg':
      return run('dmesg', []);
    case 'read-kernel-file': {
      // What the kernel shows (a /proc or /sys file), never anything else of the guest.
      const file = String(req.path);
      if (!/^\/(proc|sys)\/[A-Za-z0-9_./-]+$/.test(file) || file.includes('..'))
        throw new Error(`not a /proc or /sys file: ${JSON.stringify(file)}`);
      const content = read(file);
      return content === undefined ? { exists: false } : { exists: true, content };
    }
    case 'exercise':
      return run('/bin/sh', ['-c', EXERCISE], 90_000);
    case 'connect':
      return connect(req.host, req.port, req.send, req.timeoutMs ?? 5000);
    case 'data-file': {
      // A file on the data disk: written when content is given, read back either way.
      const file = path.join(DATA_DIR, checkName(req.name));
      if (typeof req.content === 'string') {
        const fd = fs.openSync(file, 'w', 0o600);
        try {
          fs.writeSync(fd, req.content);
          fs.fsyncSync(fd); // the guest may be powered off right after
        } finally {
          fs.closeSync(fd);
        }
      }
      const content = read(file);
      return content === undefined ? { exists: false } : { exists: true, content };
    }
    case 'poweroff':
      // Answer first; the lab sees the connection close and QEMU exit.
      setTimeout(() => void orderlyPoweroff(8000), 100);
      return { ok: true };
    default:
      throw new Error(`unknown op ${JSON.stringify((req as { op?: unknown }).op)}`);
  }
}

function serve(port: number): void {
  // Half-open: a client may send its requests and shut down its side before the answers are ready.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    let buffered = '';
    let chain = Promise.resolve();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        // Requests on one connection are answered in order.
        chain = chain.then(async () => {
          let answer: unknown;
          try {
            answer = { ok: true, result: await handle(JSON.parse(line) as Request) };
          } catch (error) {
            answer = { ok: false, error: (error as Error).message };
          }
          if (!socket.destroyed) socket.write(`${JSON.stringify(answer)}\n`);
        });
      }
    });
    socket.on('end', () => void chain.then(() => socket.end()));
    socket.on('error', () => undefined);
  });
  server.listen(port, '0.0.0.0', () => {
    const s = state();
    // The lab waits for this line on the console.
    console.log(`rebootless-lab: probe ready port=${port} release=${s.release} boot_id=${s.bootId}`);
  });
}

if (require.main === module) {
  const port = Number(process.argv[2] ?? '7000');
  serve(port);
}
