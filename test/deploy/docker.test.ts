// Dockerfile and .dockerignore, checked without a Docker engine (none runs on this project's
// machines): dockerfile-utils (the linter of the VS Code Docker extension) plus the hadolint rules
// that matter here, re-implemented on dockerfile-ast (hadolint itself is in neither the npm
// registry nor Debian); the build context computed from .dockerignore with @balena/dockerignore
// (Docker's matching rules); the production dependencies the final stage keeps; the HEALTHCHECK
// script run against a real proxy.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DockerfileParser, type Instruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { loadConfig } from '../../src/config.js';
import { type TestProxy, startTestProxy } from '../helpers/proxy.js';
import { root, settingsTable } from './helpers.js';

// CommonJS `module.exports = factory`, typed as an ES default export: load it the CommonJS way.
const ignore = createRequire(import.meta.url)('@balena/dockerignore') as () => { add(patterns: string): { ignores(path: string): boolean } };

const DOCKERFILES = ['Dockerfile', 'deploy/nginx-rtmp/Dockerfile'];
const read = (p: string) => readFileSync(join(root, p), 'utf8');

/** An instruction as written, flags included (`COPY --from=deps /src/node_modules ./node_modules`). */
function full(i: Instruction): string {
  const flags = (i as unknown as { getFlags?(): { getName(): string; getValue(): string | null }[] }).getFlags?.() ?? [];
  return [...flags.map((f) => `--${f.getName()}${f.getValue() === null ? '' : `=${f.getValue()}`}`), i.getArgumentsContent() ?? ''].join(' ');
}

/** JSON (exec) form arguments of ENTRYPOINT/CMD/HEALTHCHECK CMD, or null for the shell form. */
function execForm(i: Instruction): string[] | null {
  const text = i.getArgumentsContent() ?? '';
  const json = text.replace(/^CMD\s+/, '');
  if (!json.trim().startsWith('[')) return null;
  return JSON.parse(json) as string[];
}

/**
 * The hadolint rules that apply to these Dockerfiles (ids as in hadolint), as messages.
 * DL3006/DL3007 tagged base images, not :latest; DL3002 last USER not root (and numeric, for
 * Kubernetes runAsNonRoot); DL3025 exec-form ENTRYPOINT/CMD; DL3020 COPY not ADD; DL3008 pinned
 * apt packages; DL3015 --no-install-recommends; DL3009 apt lists removed; DL3014 -y; DL3003 no
 * `cd` (use WORKDIR); DL4006 pipefail before pipes; DL3016/npm: `npm ci` (lockfile), not `npm install`.
 */
function lintDockerfile(text: string): string[] {
  const df = DockerfileParser.parse(text);
  const out: string[] = [];
  const stages = new Set<string>();
  let pipefail = false;
  for (const from of df.getFROMs()) {
    const image = from.getImage() ?? '';
    const stage = from.getBuildStage();
    if (!stages.has(image) && image !== 'scratch') {
      const tag = from.getImageTag();
      if (!tag && !from.getImageDigest()) out.push(`DL3006 FROM ${image}: no tag`);
      if (tag === 'latest') out.push(`DL3007 FROM ${image}: :latest`);
    }
    if (stage) stages.add(stage);
  }
  const users = df.getInstructions().filter((i) => i.getKeyword() === 'USER');
  const lastUser = users.at(-1)?.getArgumentsContent()?.trim();
  if (lastUser === undefined) out.push('DL3002 no USER: the image runs as root');
  else {
    const uid = lastUser.split(':')[0]!;
    if (uid === 'root' || uid === '0') out.push(`DL3002 last USER is root (${lastUser})`);
    if (!/^\d+$/.test(uid)) out.push(`USER ${lastUser}: use a numeric uid so Kubernetes runAsNonRoot can verify it`);
  }
  for (const i of df.getInstructions()) {
    const kw = i.getKeyword();
    const args = i.getArgumentsContent() ?? '';
    if ((kw === 'ENTRYPOINT' || kw === 'CMD') && execForm(i) === null) out.push(`DL3025 ${kw} in shell form: signals do not reach the process`);
    if (kw === 'ADD') out.push('DL3020 use COPY instead of ADD');
    if (kw === 'SHELL' && args.includes('pipefail')) pipefail = true;
    if (kw !== 'RUN') continue;
    for (const cmd of args.split(/&&|;|\|\|/).map((c) => c.replace(/\\\n/g, ' ').trim())) {
      if (/^cd\s/.test(cmd)) out.push('DL3003 use WORKDIR instead of cd');
      if (/^npm\s+(install|i)\b/.test(cmd)) out.push('npm install in an image build: use npm ci (the lockfile)');
      const apt = /^apt-get\s+install\s+(.*)$/.exec(cmd);
      if (apt) {
        const words = apt[1]!.split(/\s+/).filter((w) => w !== '');
        if (!words.includes('-y') && !words.includes('--yes')) out.push('DL3014 apt-get install without -y');
        if (!words.includes('--no-install-recommends')) out.push('DL3015 apt-get install without --no-install-recommends');
        for (const w of words.filter((w) => !w.startsWith('-'))) if (!w.includes('=')) out.push(`DL3008 apt package ${w} not pinned`);
        if (!/rm -rf \/var\/lib\/apt\/lists/.test(args)) out.push('DL3009 apt lists not removed in the same RUN');
      }
    }
    if (/[^|]\|[^|]/.test(args.replace(/\|\|/g, '')) && !pipefail) out.push('DL4006 RUN with a pipe and no SHELL ["/bin/bash", "-o", "pipefail", "-c"]');
  }
  return out;
}

/** Every file under root except .git and node_modules contents (those dirs are returned as one entry each). */
function contextFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e);
      const rel = relative(root, p);
      if (rel === '.git' || rel === 'node_modules') {
        out.push(`${rel}/HEAD`);
        continue;
      }
      if (statSync(p).isDirectory()) walk(p);
      else out.push(rel);
    }
  };
  walk(root);
  return out;
}

describe('Dockerfile', () => {
  for (const file of DOCKERFILES) {
    test(`${file}: dockerfile-utils reports nothing`, () => {
      const diags = validate(read(file));
      assert.deepEqual(
        diags.map((d) => `${d.range.start.line + 1}: ${d.message}`),
        [],
      );
    });
    test(`${file}: hadolint rules`, () => {
      assert.deepEqual(lintDockerfile(read(file)), []);
    });
  }

  test('the linters are not vacuous', () => {
    assert.ok(validate('FROM node:20\nCOPY\nEXPOSE abc\n').length >= 2);
    const bad = [
      'FROM node:latest AS build',
      'RUN cd /src && npm install',
      'FROM debian',
      'RUN apt-get update && apt-get install curl',
      'RUN curl -s https://x | sh',
      'ADD . /app',
      'USER root',
      'CMD node server.js',
    ].join('\n');
    const found = lintDockerfile(bad).map((m) => m.split(' ')[0]);
    for (const id of ['DL3007', 'DL3003', 'npm', 'DL3006', 'DL3014', 'DL3015', 'DL3008', 'DL3009', 'DL4006', 'DL3020', 'DL3002', 'DL3025']) {
      assert.ok(found.includes(id), `${id} not detected: ${found.join(', ')}`);
    }
  });

  test('multi-stage; the final stage runs tini → the CLI as a non-root user with a HEALTHCHECK, and keeps only production dependencies', () => {
    const df = DockerfileParser.parse(read('Dockerfile'));
    const froms = df.getFROMs();
    assert.ok(froms.length >= 2, 'multi-stage');
    const ins = df.getInstructions();
    const finalStart = ins.indexOf(froms.at(-1)!);
    const final = ins.slice(finalStart);
    const kw = (k: string) => final.filter((i) => i.getKeyword() === k);

    const entry = execForm(kw('ENTRYPOINT')[0]!);
    assert.deepEqual(entry, ['/usr/bin/tini', '--', '/app/bin/rtmp-goaway-proxy.js']);
    assert.match(
      kw('RUN')
        .map((r) => r.getArgumentsContent())
        .join('\n'),
      /apt-get install[^\n]*\btini=/,
      'tini is installed in the final stage',
    );
    assert.deepEqual(execForm(kw('CMD')[0]!), ['serve']);
    assert.equal(kw('STOPSIGNAL')[0]?.getArgumentsContent(), 'SIGTERM');
    assert.equal(kw('USER').at(-1)?.getArgumentsContent(), '1000:1000');

    const hc = kw('HEALTHCHECK')[0];
    assert.ok(hc, 'HEALTHCHECK');
    assert.deepEqual(execForm(hc), ['node', '/app/healthcheck.mjs']);

    // COPY --from=<stage>: node_modules comes from a stage that ran `npm ci --omit=dev`.
    const copies = final.filter((i) => i.getKeyword() === 'COPY').map(full);
    const nm = copies.find((c) => /--from=(\w+)\s+\S*node_modules/.test(c));
    assert.ok(nm, 'node_modules is copied from a build stage');
    const stage = /--from=(\w+)/.exec(nm)![1]!;
    const stageFrom = froms.find((f) => f.getBuildStage() === stage)!;
    const stageIns = ins.slice(ins.indexOf(stageFrom), ins.indexOf(froms[froms.indexOf(stageFrom) + 1]!));
    assert.match(stageIns.map((i) => i.getArgumentsContent()).join('\n'), /npm ci --omit=dev/);
    assert.ok(!copies.some((c) => /\bsrc\b|\btest\b/.test(c) && !c.includes('--from')), 'sources or tests copied into the final image');
  });

  test('the ENV of the image is valid configuration (documented names, accepted values)', () => {
    const docs = new Set(settingsTable().map((r) => r.env));
    const df = DockerfileParser.parse(read('Dockerfile'));
    const env: Record<string, string> = {};
    for (const i of df.getInstructions()) {
      if (i.getKeyword() !== 'ENV') continue;
      for (const p of (i as unknown as { getProperties(): { getName(): string; getValue(): string }[] }).getProperties()) env[p.getName()] = p.getValue();
    }
    const proxyEnv = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('RTMP_GOAWAY_')));
    assert.ok(Object.keys(proxyEnv).length > 0);
    for (const k of Object.keys(proxyEnv)) assert.ok(docs.has(k), `${k} is not in docs/configuration.md`);
    const c = loadConfig({ env: { ...proxyEnv, RTMP_GOAWAY_BACKENDS: 'a=10.0.0.1:1935' }, flags: {} });
    assert.equal(c.listen, '0.0.0.0:1935');
    assert.equal(c.admin, '0.0.0.0:9935');
    const exposed = df
      .getInstructions()
      .filter((i) => i.getKeyword() === 'EXPOSE')
      .flatMap((i) => (i.getArgumentsContent() ?? '').split(/\s+/));
    assert.deepEqual(exposed.sort(), ['1935', '9935']);
  });

  test('.dockerignore: the build context is the sources, the lockfile and the entry point; no tests, no dev files', () => {
    const ig = ignore().add(read('.dockerignore'));
    const files = contextFiles();
    const sent = files.filter((f) => !ig.ignores(f));
    const allowed = [
      /^package(-lock)?\.json$/,
      /^tsconfig(\.build)?\.json$/,
      /^src\/.*\.ts$/,
      // The console's page, script and style: `npm run build` copies them into dist/.
      /^src\/control\/console\/static\/[\w-]+\.(html|js|css)$/,
      /^bin\/rtmp-goaway-proxy\.js$/,
      /^deploy\/docker\/healthcheck\.mjs$/,
      /^LICENSE$/,
    ];
    for (const f of sent)
      assert.ok(
        allowed.some((re) => re.test(f)),
        `${f} would be sent to the Docker build context`,
      );
    for (const f of [
      'test/unit/config.test.ts',
      'test/fixtures/obs29-publish.c2s.bin',
      '.git/HEAD',
      'node_modules/HEAD',
      'dist/cli.js',
      'docs/configuration.md',
      'deploy/k8s/sidecar/deployment.yaml',
      'helm/rtmp-goaway-proxy/values.yaml',
      '.ci/run',
      'README.md',
      'src/x.test.ts',
    ]) {
      assert.ok(ig.ignores(f), `${f} must not be in the build context`);
    }
    // Everything the Dockerfile COPYs from the context is in it.
    const df = DockerfileParser.parse(read('Dockerfile'));
    for (const i of df.getInstructions()) {
      if (i.getKeyword() !== 'COPY' || /--from=/.test(full(i))) continue;
      const srcs = i
        .getArguments()
        .map((a) => a.getValue())
        .slice(0, -1)
        .filter((a) => !a.startsWith('--'));
      for (const s of srcs) {
        const present = sent.some((f) => f === s || f.startsWith(`${s.replace(/\/$/, '')}/`));
        assert.ok(present, `COPY ${s}: not in the build context (.dockerignore) or missing`);
      }
    }
  });

  test('the production dependencies are enough: src imports only `dependencies` and node builtins', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
    const deps = new Set(Object.keys(pkg.dependencies));
    const walk = (d: string): string[] =>
      readdirSync(join(root, d)).flatMap((e) => (statSync(join(root, d, e)).isDirectory() ? walk(join(d, e)) : e.endsWith('.ts') ? [join(d, e)] : []));
    const missing: string[] = [];
    for (const f of walk('src')) {
      const text = read(f);
      // Value imports only: `import type` / `export type` are erased by the compiler. (A lazy
      // require() inside a function, like the demo's node-media-server backend, is not needed by `serve`.)
      const re = /^\s*(?:import|export)\s+(?!type\b)(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;
      for (const m of text.matchAll(re)) {
        const spec = m[1] ?? m[2]!;
        if (spec.startsWith('.') || spec.startsWith('node:')) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!deps.has(name)) missing.push(`${f}: ${spec}`);
      }
    }
    assert.deepEqual(missing, [], 'imported at run time but not in dependencies (the image omits devDependencies)');
  });
});

describe('HEALTHCHECK script', () => {
  let tp: TestProxy;
  before(async () => {
    tp = await startTestProxy({ none: 9 }, { healthEnabled: false });
  });
  after(async () => {
    await tp.stop();
  });

  // Asynchronous: the proxy runs in this process and must keep answering meanwhile.
  const check = (admin: string | undefined): Promise<{ status: number | null; stderr: string }> => {
    const env = { ...process.env };
    delete env['RTMP_GOAWAY_ADMIN'];
    if (admin !== undefined) env['RTMP_GOAWAY_ADMIN'] = admin;
    const child = spawn(process.execPath, [join(root, 'deploy', 'docker', 'healthcheck.mjs')], { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve) => child.on('exit', (status) => resolve({ status, stderr })));
  };

  test('passes against a running proxy whose admin API binds the wildcard address, as in the image', async () => {
    assert.ok(existsSync(join(root, 'deploy', 'docker', 'healthcheck.mjs')));
    const r = await check(`0.0.0.0:${tp.proxy.adminAddress!.port}`);
    assert.equal(r.status, 0, r.stderr);
  });

  test('fails when nothing answers, passes when the admin API is disabled', async () => {
    const net = await import('node:net');
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as import('node:net').AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const r = await check(`127.0.0.1:${port}`);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /ECONNREFUSED/);
    assert.equal((await check('')).status, 0);
  });
});
