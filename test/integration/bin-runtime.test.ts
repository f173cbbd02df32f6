/**
 * The shipped entry point runs the proxy with the runtime settings (src/runtime-tuning.ts), however
 * it is started, and leaves them off on request; started through plain `node` (a restart with the
 * settings: execve, or a child on Node 20) signals still reach the proxy and its exit status comes back.
 * Runs dist/ (built when older than src/), as users do.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { ensureDist } from '../helpers/build.js';
import { projectRoot } from '../helpers/peers.js';

const BIN = join(projectRoot, 'bin/rtmp-goaway-proxy.js');

interface Started {
  child: ChildProcess;
  listening: Record<string, unknown>;
  out: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Env without the settings (as a user's shell has it), plus `extra`. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RTMP_GOAWAY_') && k !== 'GLIBC_TUNABLES' && k !== 'NODE_OPTIONS') e[k] = v;
  return { ...e, ...extra };
}

/** Starts `serve` (cmd[0] with cmd[1..] before serve's flags) and waits for its "proxy listening" line. */
async function serve(cmd: string[], extraEnv: Record<string, string> = {}, flags: string[] = []): Promise<Started> {
  const child = spawn(
    cmd[0]!,
    [...cmd.slice(1), 'serve', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--backend', 'b1=127.0.0.1:9', '--no-health-enabled', ...flags],
    {
      cwd: projectRoot,
      env: env(extraEnv),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const onData = (b: Buffer): void => {
      out += b.toString();
      for (const line of out.split('\n')) {
        if (!line.includes('"proxy listening"')) continue;
        child.stdout!.off('data', onData);
        resolve(JSON.parse(line) as Record<string, unknown>);
        return;
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    void exit.then((e) => reject(new Error(`serve exited (${e.code ?? e.signal}) before listening:\n${out}`)));
  });
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  return { child, listening, out: () => out, exit };
}

before(() => {
  ensureDist(projectRoot);
});

test('started as a program (README, npm, the image): tuned, in the one process that was started', async () => {
  const s = await serve([BIN]);
  try {
    const rt = s.listening['runtime'] as { pid: number; tuned: boolean; nodeFlags: string[]; glibcTunables: string | null };
    assert.equal(rt.tuned, true);
    assert.deepEqual(rt.nodeFlags, ['--initial-old-space-size=64', '--max-semi-space-size=2']);
    assert.equal(rt.glibcTunables, 'glibc.malloc.trim_threshold=134217728');
    assert.equal(rt.pid, s.child.pid, 'the shell replaced itself with node: no second process');
  } finally {
    s.child.kill('SIGTERM');
    await s.exit;
  }
});

test("the operator's values win; RTMP_GOAWAY_NO_TUNE=1 runs node as started", async () => {
  const own = await serve([BIN], { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2', NODE_OPTIONS: '--max-semi-space-size=8' });
  try {
    const rt = own.listening['runtime'] as { tuned: boolean; nodeFlags: string[]; glibcTunables: string | null };
    assert.deepEqual(rt, {
      pid: own.child.pid,
      tuned: true,
      nodeFlags: ['--max-semi-space-size=8', '--initial-old-space-size=64'],
      glibcTunables: 'glibc.malloc.arena_max=2',
    });
  } finally {
    own.child.kill('SIGTERM');
    await own.exit;
  }
  for (const cmd of [[BIN], [process.execPath, BIN]]) {
    const off = await serve(cmd, { RTMP_GOAWAY_NO_TUNE: '1' });
    try {
      assert.deepEqual(off.listening['runtime'], { pid: off.child.pid, tuned: false, nodeFlags: [], glibcTunables: null });
    } finally {
      off.child.kill('SIGTERM');
      await off.exit;
    }
  }
});

test('started as `node bin/…` without the settings: restarted tuned; SIGTERM drains and the exit status comes back', async () => {
  const s = await serve([process.execPath, BIN], {}, ['--sidecar', '--sidecar-grace-period-ms', '10s']);
  assert.equal((s.listening['runtime'] as { tuned: boolean }).tuned, true);
  s.child.kill('SIGTERM');
  const e = await s.exit;
  assert.deepEqual(e, { code: 0, signal: null }, s.out());
  assert.match(s.out(), /sidecar/i, 'the proxy itself got SIGTERM and ran its sidecar shutdown');
  // A failure's status: a configuration error exits 2 through the restart too.
  const bad = spawn(process.execPath, [BIN, 'serve', '--listen', 'nowhere'], { cwd: projectRoot, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
  const code = await new Promise<number | null>((resolve) => bad.once('exit', (c) => resolve(c)));
  assert.equal(code, 2);
});
