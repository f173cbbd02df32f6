/**
 * Configuration: one zod schema is the single source of truth for every setting.
 *
 * A setting has the same name everywhere:
 *   - YAML key path (camelCase, nested):  health.intervalMs
 *   - environment variable:               RTMP_GOAWAY_HEALTH_INTERVAL_MS
 *   - CLI flag:                           --health-interval-ms
 *
 * Precedence: schema defaults < YAML file (--config / RTMP_GOAWAY_CONFIG) < environment < CLI flags.
 *
 * Every leaf of the schema carries its description and value kind in zod metadata (`.meta()`);
 * `settingDocs()` walks the schema to produce the env/flag/doc table, `addConfigOptions()`
 * registers commander options from it, and `scripts/gen-config-docs.ts` renders
 * docs/configuration.md from it. There is no second hand-written list of settings.
 */
import fs from 'node:fs';
import os from 'node:os';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { z } from 'zod';
import { dnsServerSpec } from './balancer/discovery.js';
import { CidrSet } from './net/cidr.js';
import { REBALANCE_BY } from './balancer/rebalance-plan.js';
import { type RoutingSpec, Router, RoutingConfigError } from './balancer/routing.js';
import { MAX_SPEC_CHUNK_SIZE } from './rtmp/constants.js';
import { NO_TUNE_ENV } from './runtime-tuning.js';

/** yaml is loaded with the first configuration file: a proxy configured by flags and environment never loads it. */
const load = createRequire(import.meta.url);
const yaml = (): typeof Yaml => load('yaml') as typeof Yaml;

export const ENV_PREFIX = 'RTMP_GOAWAY_';
/** Environment variable naming the YAML config file (same as `--config`). */
export const CONFIG_FILE_ENV = 'RTMP_GOAWAY_CONFIG';
/** Largest config file read (a config is a few KiB; anything bigger is refused unread). */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;
/**
 * Variables Kubernetes injects for a Service named `rtmp-goaway…` (`<SVC>_SERVICE_HOST`,
 * `<SVC>_SERVICE_PORT[_<NAME>]`, `<SVC>_PORT[_<n>_<PROTO>[_ADDR|_PORT|_PROTO]]`): not settings,
 * so never "unknown setting" errors, whatever enableServiceLinks says.
 */
const KUBERNETES_SERVICE_LINK = /_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)?)$/;

/** Largest timer value Node accepts (setTimeout clamps anything larger to 1ms). */
const MAX_DURATION_MS = 2_147_483_647;
/** RTMP message length is a 24-bit field. */
const MAX_RTMP_MESSAGE_SIZE = 0xffffff;
const BACKEND_NAME_RE = /^[A-Za-z0-9._-]{1,63}$/;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

export class ConfigError extends Error {
  readonly issues: string[];
  constructor(issues: string | string[]) {
    const list = Array.isArray(issues) ? issues : [issues];
    super(list.length === 1 ? list[0]! : `${list.length} configuration errors:\n${list.map((i) => `  - ${i}`).join('\n')}`);
    this.name = 'ConfigError';
    this.issues = list;
  }
}

/** Human-readable rendering of a raw input value for error messages. */
function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return typeof v;
}

// ---------------------------------------------------------------------------------------------
// Value parsers (exported; also used by the schema)
// ---------------------------------------------------------------------------------------------

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_HINT = 'expected a duration like 500ms, 5s, 1m';

/**
 * Parse a duration into milliseconds. Numbers (and bare numeric strings) are milliseconds;
 * strings may carry a unit: `250ms`, `5s`, `1.5s`, `2m`, `1h`. Throws ConfigError otherwise.
 */
export function parseDuration(s: string | number): number {
  return parseWithUnit(s, /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i, (m) => DURATION_UNITS[(m[2] ?? 'ms').toLowerCase()]!, DURATION_HINT);
}

/** A CLI option's duration (`--deadline 30s`): parseDuration, refused the way commander refuses an argument. */
export function durationArg(v: string): number {
  try {
    return parseDuration(v);
  } catch {
    throw new InvalidArgumentError('expected a duration like 500ms, 30s or 2m');
  }
}

/**
 * A non-negative number, or a string `re` matches with the number in group 1 and a unit that
 * `scale` turns into a multiplier; rounded to a safe integer, else ConfigError(`hint`).
 */
function parseWithUnit(s: string | number, re: RegExp, scale: (m: RegExpExecArray) => number, hint: string): number {
  let n: number | undefined;
  if (typeof s === 'number') {
    if (Number.isFinite(s) && s >= 0) n = Math.round(s);
  } else if (typeof s === 'string') {
    const m = re.exec(s);
    if (m) n = Math.round(Number(m[1]) * scale(m));
  }
  if (n === undefined || !Number.isSafeInteger(n)) throw new ConfigError(`${hint}, got ${show(s)}`);
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
const SIZE_HINT = 'expected a size like 4096, 64k, 4m, 1g';

/**
 * Parse a size into bytes. Numbers (and bare numeric strings) are bytes; strings may carry a
 * binary unit: `64k`, `4m`, `1g` (also `64kb`, `64KiB`, `512b`). Throws ConfigError otherwise.
 */
export function parseSize(s: string | number): number {
  return parseWithUnit(s, /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*$/i, (m) => SIZE_UNITS[(m[2] ?? m[3] ?? '').toLowerCase()]!, SIZE_HINT);
}

/** Shortest exact rendering of a millisecond count: 5000 → "5s", 90000 → "90s", 1500 → "1500ms". */
export function formatDuration(ms: number): string {
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms > 0 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** Shortest exact rendering of a byte count: 65536 → "64k", 16777215 → "16777215". */
export function formatSize(bytes: number): string {
  for (const [u, n] of [
    ['g', 1024 ** 3],
    ['m', 1024 ** 2],
    ['k', 1024],
  ] as const) {
    if (bytes > 0 && bytes % n === 0) return `${bytes / n}${u}`;
  }
  return String(bytes);
}

/**
 * Parse `host:port` or `[ipv6]:port`. Port must be an integer 0..65535 (0 = any free port,
 * accepted for listeners; backends require 1..65535). Throws ConfigError.
 */
export function parseHostPort(s: string): { host: string; port: number } {
  const bad = (why: string): never => {
    throw new ConfigError(`expected host:port (or [ipv6]:port), ${why}, got ${show(s)}`);
  };
  if (typeof s !== 'string') return bad('not a string');
  const t = s.trim();
  let host: string;
  let portStr: string;
  if (t.startsWith('[')) {
    const m = /^\[([^\]\s]+)\]:([^:]*)$/.exec(t);
    if (!m) return bad('malformed bracketed IPv6 address');
    host = m[1]!;
    portStr = m[2]!;
    if (!host.includes(':')) return bad('brackets are only for IPv6 addresses');
  } else {
    const i = t.lastIndexOf(':');
    if (i < 0) return bad('missing port');
    host = t.slice(0, i);
    portStr = t.slice(i + 1);
    if (host.includes(':')) return bad('IPv6 addresses must be in brackets, e.g. [::1]:1935');
  }
  if (host === '') return bad('missing host');
  if (/[\s/@]/.test(host)) return bad('invalid host');
  if (!/^\d{1,5}$/.test(portStr)) return bad('port must be a number');
  const port = Number(portStr);
  if (port > 65535) return bad('port must be 0..65535');
  return { host, port };
}

/** `name=host:port` or bare `host:port` (named `b<index+1>`). */
function parseBackendSpec(spec: string, index: number): { name: string; host: string; port: number } {
  const t = spec.trim();
  const eq = t.indexOf('=');
  const name = eq >= 0 ? t.slice(0, eq).trim() : `b${index + 1}`;
  const { host, port } = parseHostPort(eq >= 0 ? t.slice(eq + 1) : t);
  return { name, host, port };
}

// ---------------------------------------------------------------------------------------------
// Leaf schema builders. Each leaf is `z.unknown().transform(validate)` so that values coming
// from env/flags (strings) and YAML (typed) go through the same validation with our own
// messages, then `.default()` and `.meta()` describing it for docs/env/flags.
// ---------------------------------------------------------------------------------------------

type Kind = 'duration' | 'size' | 'integer' | 'number' | 'boolean' | 'hostport' | 'enum' | 'string' | 'url' | 'backends' | 'routing';

interface LeafMeta {
  description: string;
  kind: Kind;
  /** Enum values. */
  values?: readonly string[];
  /** Rendered default when it is not a constant (e.g. replicaId). */
  defaultDoc?: string;
  /** An empty environment variable is a real value (otherwise empty env vars are ignored). */
  allowEmpty?: boolean;
  /** Flag name override (without `--`). */
  flag?: string;
}

type Ctx = z.core.$RefinementCtx<unknown>;

function issue(ctx: Ctx, message: string): never {
  ctx.addIssue({ code: 'custom', message });
  return z.NEVER;
}

function validator<T>(fn: (v: unknown, ctx: Ctx) => T) {
  return z.unknown().transform((v, ctx) => fn(v, ctx as Ctx));
}

interface Bounds {
  min?: number;
  max?: number;
}

function checkBounds(n: number, b: Bounds, fmt: (n: number) => string, ctx: Ctx): number {
  if (b.min !== undefined && n < b.min) return issue(ctx, `must be at least ${fmt(b.min)}, got ${fmt(n)}`);
  if (b.max !== undefined && n > b.max) return issue(ctx, `must be at most ${fmt(b.max)}, got ${fmt(n)}`);
  return n;
}

const required = (ctx: Ctx): never => issue(ctx, 'is required');

/** A number written as a unit-suffixed string or a plain number (durations, sizes), then bounded. */
function unitValue(parse: (v: string | number) => number, hint: string, format: (n: number) => string, bounds: { min: number; max: number }) {
  return validator((v, ctx) => {
    if (v === undefined) return required(ctx);
    if (typeof v !== 'string' && typeof v !== 'number') return issue(ctx, `${hint}, got ${show(v)}`);
    let n: number;
    try {
      n = parse(v);
    } catch (e) {
      return issue(ctx, (e as Error).message);
    }
    return checkBounds(n, bounds, format, ctx);
  });
}

function durationValue(b: Bounds = {}) {
  return unitValue(parseDuration, DURATION_HINT, formatDuration, { min: b.min ?? 1, max: b.max ?? MAX_DURATION_MS });
}

function sizeValue(b: Bounds = {}) {
  return unitValue(parseSize, SIZE_HINT, String, { min: b.min ?? 1, max: b.max ?? Number.MAX_SAFE_INTEGER });
}

function intValue(b: Bounds = {}) {
  return validator((v, ctx) => {
    if (v === undefined) return required(ctx);
    let n: number | undefined;
    if (typeof v === 'number' && Number.isSafeInteger(v)) n = v;
    else if (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) && Number.isSafeInteger(Number(v))) n = Number(v);
    if (n === undefined) return issue(ctx, `expected an integer, got ${show(v)}`);
    return checkBounds(n, b, String, ctx);
  });
}

/** A decimal number (a ratio): `1.5`; with `zeroIsOff`, 0 is accepted whatever the bounds. */
function numberValue(b: Bounds = {}, zeroIsOff = false) {
  return validator((v, ctx) => {
    if (v === undefined) return required(ctx);
    let n: number | undefined;
    if (typeof v === 'number' && Number.isFinite(v)) n = v;
    else if (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v)) n = Number(v);
    if (n === undefined) return issue(ctx, `expected a number like 1.5, got ${show(v)}`);
    if (zeroIsOff && n === 0) return 0;
    return checkBounds(n, b, String, ctx);
  });
}

const TRUE_STRINGS = new Set(['true', '1', 'yes', 'on']);
const FALSE_STRINGS = new Set(['false', '0', 'no', 'off']);

function boolValue() {
  return validator((v, ctx): boolean => {
    if (typeof v === 'boolean') return v;
    if (typeof v === 'string') {
      const s = v.trim().toLowerCase();
      if (TRUE_STRINGS.has(s)) return true;
      if (FALSE_STRINGS.has(s)) return false;
    }
    if (v === undefined) return required(ctx);
    return issue(ctx, `expected true or false, got ${show(v)}`);
  });
}

function enumValue<const T extends readonly [string, ...string[]]>(values: T) {
  return validator((v, ctx): T[number] => {
    if (typeof v === 'string' && (values as readonly string[]).includes(v.trim())) return v.trim() as T[number];
    if (v === undefined) return required(ctx);
    return issue(ctx, `expected one of ${values.join(', ')}, got ${show(v)}`);
  });
}

function stringValue(opts: { pattern?: RegExp; patternHint?: string } = {}) {
  return validator((v, ctx): string => {
    if (v === undefined) return required(ctx);
    if (typeof v !== 'string' && typeof v !== 'number') return issue(ctx, `expected a string, got ${show(v)}`);
    const s = String(v).trim();
    if (s === '') return issue(ctx, 'must not be empty');
    if (opts.pattern && !opts.pattern.test(s)) return issue(ctx, `${opts.patternHint ?? `must match ${opts.pattern}`}, got ${show(v)}`);
    return s;
  });
}

/** A string that may be empty (= unset), e.g. a file path or a secret. */
function optionalStringValue() {
  return validator((v, ctx): string => {
    if (v === undefined || v === null) return required(ctx);
    if (typeof v !== 'string' && typeof v !== 'number') return issue(ctx, `expected a string, got ${show(v)}`);
    return String(v).trim();
  });
}

function optionalString(description: string, defaultDoc = '"" (unset)') {
  return optionalStringValue()
    .default('')
    .meta({ kind: 'string', allowEmpty: true, defaultDoc, description } satisfies LeafMeta);
}

function hostPortValue(opts: { allowEmpty?: boolean; minPort?: number } = {}) {
  return validator((v, ctx): string => {
    if (v === undefined) return required(ctx);
    if (typeof v !== 'string') return issue(ctx, `expected host:port (or [ipv6]:port), got ${show(v)}`);
    const s = v.trim();
    if (s === '' && opts.allowEmpty) return '';
    try {
      const { port } = parseHostPort(s);
      if (opts.minPort !== undefined && port < opts.minPort) return issue(ctx, `port must be ${opts.minPort}..65535, got ${show(v)}`);
    } catch (e) {
      return issue(ctx, (e as Error).message);
    }
    return s;
  });
}

function rtmpUrlValue() {
  return validator((v, ctx): string => {
    if (v === undefined || v === null) return required(ctx);
    if (typeof v !== 'string') return issue(ctx, `expected an rtmp:// URL, got ${show(v)}`);
    const s = v.trim();
    if (s === '') return '';
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      return issue(ctx, `expected an rtmp:// URL like rtmp://ingest.example.com/live, got ${show(s)}`);
    }
    if (u.protocol !== 'rtmp:' && u.protocol !== 'rtmps:') return issue(ctx, `expected an rtmp:// or rtmps:// URL, got ${show(s)}`);
    return s;
  });
}

function redisUrlValue() {
  return validator((v, ctx): string | undefined => {
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') return issue(ctx, `expected a URL like redis://127.0.0.1:6379/0, got ${show(v)}`);
    const s = v.trim();
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      return issue(ctx, `expected a URL like redis://127.0.0.1:6379/0, got ${show(redactUrl(s))}`);
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
      return issue(ctx, `expected a redis:// or rediss:// URL, got ${show(redactUrl(s))}`);
    }
    return s;
  });
}

// Leaf settings: validator + default + metadata.

function duration(def: number, description: string, b?: Bounds) {
  return durationValue(b)
    .default(def)
    .meta({ description, kind: 'duration' } satisfies LeafMeta);
}
function size(def: number, description: string, b?: Bounds) {
  return sizeValue(b)
    .default(def)
    .meta({ description, kind: 'size' } satisfies LeafMeta);
}
function int(def: number, description: string, b?: Bounds) {
  return intValue(b)
    .default(def)
    .meta({ description, kind: 'integer' } satisfies LeafMeta);
}
function num(def: number, description: string, b?: Bounds, zeroIsOff = false) {
  return numberValue(b, zeroIsOff)
    .default(def)
    .meta({ description, kind: 'number' } satisfies LeafMeta);
}
function bool(def: boolean, description: string) {
  return boolValue()
    .default(def)
    .meta({ description, kind: 'boolean' } satisfies LeafMeta);
}
function oneOf<const T extends readonly [string, ...string[]]>(values: T, def: T[number], description: string) {
  // `as never`: TS cannot see that T[number] is its own Awaited/NoUndefined form.
  return enumValue(values)
    .default(def as never)
    .meta({ description, kind: 'enum', values } satisfies LeafMeta);
}

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

export const BackendSchema = z.strictObject({
  name: stringValue({ pattern: BACKEND_NAME_RE, patternHint: 'backend names must match /^[A-Za-z0-9._-]{1,63}$/' }),
  host: stringValue({ pattern: /^[^\s/@]+$/, patternHint: 'expected a host name or IP address' }),
  port: intValue({ min: 1, max: 65535 }),
  maxSessions: intValue({ min: 0 }).optional(),
  weight: intValue({ min: 0, max: 65_535 }).optional(),
});
export type BackendConfig = z.infer<typeof BackendSchema>;

/** Normalise backends given as a comma-separated string, a list of `name=host:port` strings, or YAML mappings. */
function normalizeBackends(v: unknown, ctx: Ctx): unknown[] {
  let list: unknown[];
  if (typeof v === 'string')
    list = v
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  else if (Array.isArray(v)) list = v;
  else return issue(ctx, `expected a list of backends (name=host:port, or mappings with name, host, port), got ${show(v)}`);
  let failed = false;
  const out = list.map((item, i) => {
    if (typeof item === 'string') {
      try {
        return parseBackendSpec(item, i);
      } catch (e) {
        failed = true;
        ctx.addIssue({ code: 'custom', message: (e as Error).message, path: [i] });
        return item;
      }
    }
    if (item && typeof item === 'object' && !Array.isArray(item) && (item as { name?: unknown }).name === undefined) {
      return { ...item, name: `b${i + 1}` };
    }
    return item;
  });
  return failed ? z.NEVER : out;
}

const backends = z
  .unknown()
  .transform((v, ctx) => normalizeBackends(v, ctx as Ctx))
  .pipe(
    z.array(BackendSchema).superRefine((list, ctx) => {
      const seen = new Map<string, number>();
      list.forEach((b, i) => {
        const prev = seen.get(b.name);
        if (prev !== undefined) {
          ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate backend name ${show(b.name)} (also used by backends[${prev}])` });
        } else seen.set(b.name, i);
      });
    }),
  )
  .default([])
  .meta({
    kind: 'backends',
    flag: 'backend',
    description:
      'Ingest servers to proxy to. YAML: a list of `{ name, host, port, maxSessions? }` mappings (or `name=host:port` strings). ' +
      'Env: comma-separated `name=host:port` list. CLI: repeat `--backend name=host:port`. A bare `host:port` is named `b<index+1>`. ' +
      'Names must be unique and match `[A-Za-z0-9._-]{1,63}`; `maxSessions` (YAML only) caps concurrent sessions on that backend; `weight` (YAML only) is its share under `balance: weighted` routing (default 1).',
  } satisfies LeafMeta);

/**
 * Routing rules (balancer/routing.ts): a YAML mapping `{ groups, rules }`, or the same as JSON text
 * in the environment or on the command line. Compiled here so every mistake is reported at start.
 */
const routing = validator((v, ctx): RoutingSpec | null => {
  if (v === undefined || v === null || v === '') return null;
  let spec: unknown = v;
  if (typeof v === 'string') {
    try {
      spec = JSON.parse(v);
    } catch (e) {
      return issue(ctx, `expected routing rules as JSON ({"groups": …, "rules": […]}): ${(e as Error).message}`);
    }
    if (spec === null) return null;
  }
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) return issue(ctx, `expected a mapping with groups and rules, got ${show(v)}`);
  const unknownKeys = Object.keys(spec).filter((k) => k !== 'groups' && k !== 'rules');
  if (unknownKeys.length > 0) return issue(ctx, `unknown key ${unknownKeys.map((k) => JSON.stringify(k)).join(', ')} (expected groups, rules)`);
  try {
    Router.compile(spec as RoutingSpec);
  } catch (e) {
    if (e instanceof RoutingConfigError) {
      for (const m of e.issues) ctx.addIssue({ code: 'custom', message: m });
      return z.NEVER;
    }
    return issue(ctx, `invalid routing rules: ${(e as Error).message}`);
  }
  return spec as RoutingSpec;
})
  .default(null)
  .meta({
    kind: 'routing',
    defaultDoc: '(none: every backend, least connections)',
    description:
      'Routing rules, evaluated in order, first match wins: `{ groups: { <name>: { backends: [names or globs], sources: [static, dns:<name>] } }, rules: [ { match: { app, keyPrefix, keyRegex, cidr }, group, balance: least-connections|weighted, sticky } ] }` ' +
      '(YAML mapping; env and flag take the same as JSON). Rules on the app route at `connect`, on the stream key or `sticky` (rendezvous hashing of the key) at `publish`: until then the proxy answers the client itself. ' +
      'A session no rule matches, or whose group has no usable backend with room, gets `_error` NetConnection.Connect.Rejected with the reason and is closed. See docs/routing.md.',
  } satisfies LeafMeta);

// ---------------------------------------------------------------------------------------------
// The schema
// ---------------------------------------------------------------------------------------------

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export const NON_CAPABLE_POLICIES = ['deadline-close', 'ignore', 'migrate'] as const;
export const PLAYER_ROUTINGS = ['stream', 'balance'] as const;
export const PARSE_ERROR_POLICIES = ['forward', 'close'] as const;
export const DISCOVERY_RECORD_TYPES = ['auto', 'a', 'srv'] as const;

/** DNS name for discovery; empty = no discovery. */
function dnsNameValue() {
  return validator((v, ctx): string => {
    if (v === undefined || v === null) return required(ctx);
    if (typeof v !== 'string') return issue(ctx, `expected a DNS name, got ${show(v)}`);
    const s = v.trim().replace(/\.$/, '');
    if (s === '') return '';
    if (s.length > 253 || !/^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$/.test(s))
      return issue(ctx, `expected a DNS name like ingest.live.svc.cluster.local, got ${show(v)}`);
    return s;
  });
}

/** Comma-separated DNS servers (`ip`, `ip:port`, `[ipv6]:port`); empty = the system's. */
function dnsServersValue() {
  return validator((v, ctx): string => {
    if (v === undefined || v === null) return required(ctx);
    const list = typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v.map(String) : null;
    if (list === null) return issue(ctx, `expected a comma-separated list of DNS server addresses, got ${show(v)}`);
    const items = list.map((x) => x.trim()).filter((x) => x !== '');
    try {
      for (const x of items) dnsServerSpec(x);
    } catch (e) {
      return issue(ctx, (e as Error).message);
    }
    return items.join(',');
  });
}
/** Comma-separated CIDR subnets (`10.0.0.0/8`, `2001:db8::/32`, a bare address); a YAML list works too. Empty = none. */
function cidrListValue() {
  return validator((v, ctx): string => {
    if (v === undefined || v === null) return required(ctx);
    const list = typeof v === 'string' ? v.split(',') : Array.isArray(v) ? v.map(String) : null;
    if (list === null) return issue(ctx, `expected a comma-separated list of CIDR subnets like 10.0.0.0/8,2001:db8::/32, got ${show(v)}`);
    const items = list.map((x) => x.trim()).filter((x) => x !== '');
    const { invalid } = CidrSet.parse(items);
    if (invalid.length > 0)
      return issue(ctx, `expected CIDR subnets like 10.0.0.0/8 or 2001:db8::/32, got ${invalid.map((x) => JSON.stringify(x)).join(', ')}`);
    return items.join(',');
  });
}
/** What a bearer token may hold: visible ASCII, no spaces (it travels as `Authorization: Bearer <token>`). */
const TOKEN_RE = /^[\x21-\x7e]+$/;
const TOKEN_HINT = 'must be one word of visible ASCII characters (no spaces), e.g. the output of `openssl rand -hex 32`';
/** A token file larger than this is not a token (a wrong path, a certificate bundle…). */
export const MAX_TOKEN_FILE_BYTES = 4096;

/**
 * The admin token held in `file` (a mounted Secret): read at most MAX_TOKEN_FILE_BYTES, trimmed.
 * Throws an Error whose message says what is wrong with the file, never what it holds.
 */
export function readTokenFile(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
  const buf = Buffer.alloc(MAX_TOKEN_FILE_BYTES + 1);
  let n = 0;
  try {
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n === buf.length) break;
    }
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  } finally {
    fs.closeSync(fd);
  }
  if (n > MAX_TOKEN_FILE_BYTES) throw new Error(`${file} is larger than ${MAX_TOKEN_FILE_BYTES} bytes: not a token`);
  const token = buf.toString('utf8', 0, n).trim();
  if (token === '') throw new Error(`${file} is empty`);
  if (!TOKEN_RE.test(token)) throw new Error(`the token in ${file} ${TOKEN_HINT}`);
  return token;
}

export const ACCEPT_PROXY_PROTOCOL = ['off', 'optional', 'required'] as const;
export const BACKEND_PROXY_PROTOCOL = ['off', 'v1', 'v2'] as const;

function defaultReplicaId(): string {
  return `${os.hostname()}-${process.pid}`;
}

export const ConfigSchema = z
  .strictObject({
    listen: hostPortValue()
      .default('0.0.0.0:1935')
      .meta({ kind: 'hostport', description: 'Address of the RTMP listener, `host:port` (IPv6 as `[::]:1935`).' } satisfies LeafMeta),
    admin: hostPortValue({ allowEmpty: true })
      .default('127.0.0.1:9935')
      .meta({
        kind: 'hostport',
        allowEmpty: true,
        description: 'Address of the admin HTTP server (health, metrics, drain API), `host:port`; an empty string disables it.',
      } satisfies LeafMeta),
    adminToken: optionalString(
      'Bearer token of the admin API: `Authorization: Bearer <token>` on every `/api/*` request and every `POST`; `/healthz`, `/readyz` and `/metrics` stay open. ' +
        'Without a token the API answers only on a loopback `admin` address: on any other address `/api/*` and `POST` are refused (403). ' +
        'Prefer `adminTokenFile` (a mounted Secret) to this setting; redacted in logs. See docs/security.md.',
      '"" (none)',
    ),
    adminTokenFile: optionalString(
      'File holding the admin token (e.g. a mounted Kubernetes Secret), read once at start: surrounding whitespace is trimmed; at most 4 KiB, one line of printable characters. ' +
        'An unreadable, empty or malformed file is a configuration error. Exclusive with `adminToken`. The CLI (`drain`, `undrain`, `status` with `--admin`) reads the same variable.',
    ),
    acceptProxyProtocol: oneOf(
      ACCEPT_PROXY_PROTOCOL,
      'off',
      'PROXY protocol (v1 text or v2 binary) from a front load balancer on the RTMP and RTMPS listeners, honoured only from the sources of `acceptProxyProtocolFrom` (required when this is not `off`): ' +
        '`required` refuses connections without a valid header, and every connection from another source; `optional` takes a header from a trusted source when present, and serves other sources as plain RTMP clients (a PROXY header from them is refused); ' +
        "`off` treats every byte as RTMP. The header must arrive within `limits.handshakeTimeoutMs`; its source address is the session's client address (logs, API, per-IP limits, routing `cidr`, backend PROXY header).",
    ),
    acceptProxyProtocolFrom: cidrListValue()
      .default('')
      .meta({
        kind: 'string',
        allowEmpty: true,
        defaultDoc: '"" (none)',
        description:
          "Sources allowed to send a PROXY protocol header: the front load balancers' addresses as comma-separated CIDR subnets (`10.0.0.0/8,fd00::/8`; a YAML list works too). " +
          'A header from any other source is refused (connection closed, counted as `proxy-protocol-untrusted`). `0.0.0.0/0,::/0` believes every client: only when nothing but the balancer can reach the listener.',
      } satisfies LeafMeta),
    backendProxyProtocol: oneOf(
      BACKEND_PROXY_PROTOCOL,
      'off',
      "Send a PROXY protocol header carrying the client's address to backends (also on migration connections): `v1` for nginx-rtmp (`listen 1935 proxy_protocol;`, v1 only), `v2` for servers that accept the binary form. The backend must expect it.",
    ),
    tls: z
      .strictObject({
        listen: hostPortValue({ allowEmpty: true })
          .default('')
          .meta({
            kind: 'hostport',
            allowEmpty: true,
            defaultDoc: '"" (disabled)',
            description: 'Address of an RTMPS listener (TLS terminated by the proxy, plain RTMP to backends), e.g. `0.0.0.0:443`; empty disables it.',
          } satisfies LeafMeta),
        cert: optionalString('PEM certificate chain file of the RTMPS listener (re-read on SIGHUP).'),
        key: optionalString('PEM private key file of the RTMPS listener (re-read on SIGHUP).'),
      })
      .prefault({}),
    backends,
    routing,
    health: z
      .strictObject({
        enabled: bool(true, 'Run active health probes against every backend.'),
        intervalMs: duration(5_000, 'Time between health probes of each backend.'),
        timeoutMs: duration(2_000, 'Timeout of one health probe; must be less than `health.intervalMs`.'),
        rise: int(2, 'Consecutive successful probes before a down backend is marked up.', { min: 1, max: 1000 }),
        fall: int(3, 'Consecutive failed probes before an up backend is marked down.', { min: 1, max: 1000 }),
      })
      .prefault({}),
    drain: z
      .strictObject({
        deadlineMs: duration(
          30_000,
          'How long sessions may stay on a draining backend (after Go Away was sent) before the proxy closes them; 0 closes them at once.',
          { min: 0 },
        ),
        closeSpreadMs: duration(
          0,
          'Storm-free closes: when the drain deadline closes the sessions left on a backend (or a removed one), close them one by one spread evenly over this window instead of all at once (their clients then do not reconnect in the same instant); ' +
            'in sidecar mode the sessions left at the end of `sidecar.gracePeriodMs` are closed over its last part of this length. 0 closes them together.',
          { min: 0 },
        ),
        nonCapable: oneOf(
          NON_CAPABLE_POLICIES,
          'migrate',
          'Policy for sessions whose client supports neither Go Away nor (when offered) E-RTMP reconnect: `migrate` moves the publish to a healthy backend ' +
            "inside the proxy, switching at the client's next video keyframe, without the client noticing (on failure: closed at the drain deadline); " +
            '`deadline-close` closes them at the drain deadline; `ignore` leaves them on the draining backend until they end.',
        ),
      })
      .prefault({}),
    players: z
      .strictObject({
        routing: oneOf(
          PLAYER_ROUTINGS,
          'stream',
          "`stream`: a player (`play`) goes to the backend carrying its stream's publisher, on this replica or (with `redis.url`) anywhere in the fleet, else where the routing rules will put the publisher; " +
            'with more than one backend (draining and down ones count: they may come back) the proxy then answers `connect` and `createStream` itself until the client says `publish` or `play` (late binding), and a player follows its stream through drains. ' +
            '`balance`: players are balanced like publishers, and sessions are plain pass-through unless routing rules need late binding.',
        ),
        followTimeoutMs: duration(
          15_000,
          'How long a player whose stream left its draining backend waits for the stream to play on another backend (the proxy subscribes there and switches it over at the first keyframe) before it is closed (`player-stream-moved`); while the stream still plays on the draining backend the player stays on it.',
          { min: 0 },
        ),
      })
      .prefault({}),
    erpc: z
      .strictObject({
        offer: bool(
          true,
          'Offer E-RTMP reconnect: add `capsEx` Reconnect (0x01) to the connect `_result` of clients that sent `capsEx`, and on drain send ' +
            '`NetConnection.Connect.ReconnectRequest` to clients that announced Reconnect but not Go Away (Go Away is preferred when both are announced).',
        ),
        tcUrl: rtmpUrlValue()
          .default('')
          .meta({
            kind: 'url',
            allowEmpty: true,
            defaultDoc: '"" (same URL)',
            description:
              '`tcUrl` put in ReconnectRequest (`rtmp://host[:port]/app`); empty means "reconnect to the URL you used", which lands on a healthy backend through the proxy.',
          } satisfies LeafMeta),
      })
      .prefault({}),
    migration: z
      .strictObject({
        maxInFlight: int(
          16,
          'Proxy-side migrations in progress at once on this replica (from the new backend connection to the switch); more wait in a queue.',
          { min: 1, max: 100_000 },
        ),
        timeoutMs: duration(
          5_000,
          'Time the new backend of a migration has to accept the replayed connect … publish (reach `NetStream.Publish.Start`) before the attempt fails and the next backend is tried.',
        ),
        switchTimeoutMs: duration(
          20_000,
          "Time a migration waits for the client's next video keyframe once the new backend is publishing; without one the migration is abandoned and the drain deadline applies. Keep it above the longest GOP of your publishers and below `drain.deadlineMs`.",
        ),
        maxCachedBytes: size(
          64 * 1024,
          'Per session, the most bytes of `@setDataFrame`/`onMetaData` and audio/video sequence headers kept for replay to a new backend; larger ones are not kept (the session cannot migrate losslessly).',
          {
            min: 1,
            max: MAX_RTMP_MESSAGE_SIZE,
          },
        ),
        chunkSize: size(4096, 'Chunk size the proxy uses towards a backend it migrated a session to.', { min: 128, max: 65_536 }),
      })
      .prefault({}),
    rebalance: z
      .strictObject({
        maxInFlight: int(4, 'Rebalance moves in progress at once on this replica (told to reconnect or migrating); the others wait their turn.', {
          min: 1,
          max: 10_000,
        }),
        minAgeMs: duration(10_000, 'A rebalance leaves sessions younger than this where they are (a publisher that just arrived or just moved).', { min: 0 }),
        windowMs: duration(300_000, 'A rebalance never moves the same session (or the same stream, reconnected) twice within this window.', { min: 0 }),
        moveTimeoutMs: duration(
          30_000,
          'Time one rebalance move has to finish (the told publisher gone, the migrated one relaying to its new backend) before it counts as `timeout`; also how long the target backend stays reserved for the reconnect.',
        ),
        by: oneOf(
          REBALANCE_BY,
          'sessions',
          "What a rebalance balances, weighted like routing: `sessions` per backend, or their summed measured `bitrate` (a session not measured yet counts as the mean of the measured ones, 1 Mb/s when none is). `rebalance --by` and the API's `by` choose per run.",
        ),
        onBackendUp: bool(
          false,
          'Rebalance automatically when a backend becomes healthy (a new pod, a backend back up), `rebalance.minAgeMs` after it. Off: only `rebalance` (CLI, admin API, control message) moves sessions.',
        ),
        auto: z
          .strictObject({
            spreadRatio: num(
              0,
              'Rebalance automatically when the most loaded backend holds more than this many times its weighted share (by `rebalance.by`; `1.5`: half again its share) at two checks in a row and the plan has moves. 0: off. At least 1.1 when set.',
              { min: 1.1, max: 100 },
              true,
            ),
            intervalMs: duration(30_000, 'How often the spread is checked for `rebalance.auto.spreadRatio`.', { min: 1000 }),
            cooldownMs: duration(
              300_000,
              'After an automatic rebalance (spread or backend up), no automatic rebalance for the spread starts before this much time (and never while a rebalance runs): a spread the plan cannot fix does not trigger again and again.',
              { min: 0 },
            ),
          })
          .prefault({}),
      })
      .prefault({}),
    discovery: z
      .strictObject({
        dnsName: dnsNameValue()
          .default('')
          .meta({
            kind: 'string',
            allowEmpty: true,
            description:
              'Discover backends from DNS, merged with `backends`: a headless Service name (`ingest.live.svc.cluster.local`: every A/AAAA address is a backend on `discovery.port`, named by its IP) ' +
              'or an SRV name (`_rtmp._tcp.ingest.live.svc.cluster.local`: targets, ports and weights; named by target). Re-resolved every `discovery.intervalMs`; a backend that disappears is drained (Go Away, migration), ' +
              'not cut, a new one joins after its first successful health check. Empty: only `backends`.',
          } satisfies LeafMeta),
        recordType: oneOf(
          DISCOVERY_RECORD_TYPES,
          'auto',
          'Records to resolve `discovery.dnsName` for: `srv`, `a` (A and AAAA), or `auto` (SRV when the name starts with `_`, else A/AAAA).',
        ),
        port: int(1935, 'RTMP port of backends discovered through A/AAAA records.', { min: 1, max: 65535 }),
        intervalMs: duration(10_000, 'Time between two resolutions of `discovery.dnsName`.', { min: 100 }),
        jitterMs: duration(1_000, 'Random extra delay (0 to this) added to each discovery interval, so replicas do not query in lockstep.', { min: 0 }),
        servers: dnsServersValue()
          .default('')
          .meta({
            kind: 'string',
            allowEmpty: true,
            defaultDoc: '"" (system resolver)',
            description: "DNS servers for discovery, comma-separated `ip`, `ip:port` or `[ipv6]:port`; empty: the system's (`/etc/resolv.conf`).",
          } satisfies LeafMeta),
        maxSessions: int(
          0,
          'Concurrent sessions allowed on each discovered backend (admission: when every backend is full new connections are refused); 0 = no limit.',
          { min: 0 },
        ),
        sessionsPerWeight: int(
          0,
          'When > 0, an SRV-discovered backend takes at most its SRV weight × this many sessions (overrides `discovery.maxSessions`).',
          { min: 0 },
        ),
      })
      .prefault({}),
    limits: z
      .strictObject({
        handshakeTimeoutMs: duration(
          10_000,
          "Time a client has to finish the RTMP handshake and send `connect`, counted from accept (a PROXY header and a TLS handshake spend it too). A session without a `connect` by then is closed (`handshake-timeout`) whatever it sent, blind-forwarded ones included. No backend connection is opened before the client's C0+C1 (1,537 bytes).",
        ),
        idleTimeoutMs: duration(
          60_000,
          'Client→server idle timeout: a session that received no byte from its client for this long is closed (`client-idle`; `backend-stalled` when the client is silent because the backend stopped reading and the proxy paused it). A publisher sends media all the time, so this catches dead and half-open clients; a player (which may send nothing for minutes) counts as active while it takes the stream it is sent.',
        ),
        backendIdleTimeoutMs: duration(
          0,
          'Server→client idle timeout: a session that received no byte from its backend for this long is closed (`backend-idle`); 0 disables it. Backends can be quiet for long (nginx-rtmp sends an Acknowledgement per `ack_window` bytes and pings every `ping` interval): set it above those.',
          { min: 0 },
        ),
        connectTimeoutMs: duration(3_000, 'Timeout of the TCP connect to a backend.'),
        maxSessions: int(10_000, 'Maximum concurrent client sessions on this replica; further connections are refused.', { min: 1 }),
        maxSessionsPerIp: int(0, 'Maximum concurrent sessions per client IP (IPv6: per /64; the PROXY protocol address when accepted); 0 = no limit.', {
          min: 0,
        }),
        connectRatePerIp: int(0, 'New connections per second allowed per client IP (token bucket, refilled at this rate); 0 = no limit.', { min: 0 }),
        connectBurstPerIp: int(20, 'Connections a client IP may open at once before `limits.connectRatePerIp` applies (the bucket size).', { min: 1 }),
        maxPendingBytes: size(65_536, 'Client bytes buffered while the backend connection is being opened; more closes the session.'),
        maxChunkSize: size(16 * 1024 ** 2, 'Largest RTMP Set Chunk Size accepted from either side.', { min: 1, max: MAX_SPEC_CHUNK_SIZE }),
        minChunkSize: size(32, 'Smallest RTMP Set Chunk Size accepted from either side.', { min: 1, max: MAX_SPEC_CHUNK_SIZE }),
        maxMessageSize: size(MAX_RTMP_MESSAGE_SIZE, 'Largest RTMP message length accepted (the wire field is 24 bits).', {
          min: 1,
          max: MAX_RTMP_MESSAGE_SIZE,
        }),
        maxCommandSize: size(256 * 1024, 'Largest command/control message the proxy decodes; must not exceed `limits.maxMessageSize`.', {
          min: 1,
          max: MAX_RTMP_MESSAGE_SIZE,
        }),
        maxChunkStreams: int(64, 'Maximum distinct RTMP chunk stream ids tracked per direction of a session.', { min: 1, max: 65_599 }),
        sessionBufferBytes: size(
          512 * 1024,
          'Memory one session may hold between reads: unfinished command/control messages of either direction, client bytes waiting for the backend connection, the held connect `_result`, the migration cache. ' +
            'Over it the session stops parsing and is forwarded blindly (`onParseError: forward`) or closed, counted in `rtmp_goaway_buffer_budget_exceeded_total`. ' +
            'A session relaying after a proxy-side migration may hold one whole message of up to `limits.maxMessageSize` more. Must be at least `limits.maxCommandSize`.',
          { min: 1 },
        ),
        processBufferBytes: size(
          64 * 1024 ** 2,
          'Memory all sessions of this process together may hold between reads (each within `limits.sessionBufferBytes`); a session refused memory because the process is full is handled as one over its own budget, the others go on. ' +
            'Buffers live outside the V8 heap, in the same container: keep it well below the memory limit minus the heap.',
          { min: 1 },
        ),
        amfMaxDepth: int(16, 'Maximum nesting depth of AMF values decoded in commands.', { min: 1, max: 1024 }),
        amfMaxItems: int(
          1024,
          'Maximum number of AMF values decoded per command message, at any depth (object properties, array items, nested ones included): one budget for the whole message, so nested containers cannot multiply it. More is refused as `bad-amf`.',
          { min: 1 },
        ),
        amfMaxStringBytes: size(65_536, 'Maximum UTF-8 bytes of strings and keys decoded per command message, in total; more is refused as `bad-amf`.', {
          min: 1,
        }),
      })
      .prefault({}),
    onParseError: oneOf(
      PARSE_ERROR_POLICIES,
      'forward',
      'What to do with a session whose RTMP stops parsing: `forward` keeps relaying bytes blindly (the stream stays alive but cannot be sent Go Away), `close` closes it.',
    ),
    log: z
      .strictObject({
        level: oneOf(LOG_LEVELS, 'info', 'Log level (pino).'),
        streamKeys: bool(false, 'Log stream keys in clear instead of redacted.'),
      })
      .prefault({}),
    sidecar: z
      .strictObject({
        enabled: bool(false, 'Sidecar mode: on SIGTERM, `/readyz` turns 503 and sessions are drained with Go Away before the process exits.'),
        gracePeriodMs: duration(
          25_000,
          "In sidecar mode, the longest shutdown waits for sessions to leave after SIGTERM (keep it below the pod's termination grace period).",
          { min: 0 },
        ),
      })
      .prefault({}),
    redis: z
      .strictObject({
        url: redisUrlValue()
          .optional()
          .meta({
            kind: 'url',
            allowEmpty: true,
            description:
              'Redis URL of the fleet control bus, e.g. `redis://127.0.0.1:6379/0` (`rediss://` for TLS); when unset an in-process control bus is used. The password is redacted in logs.',
          } satisfies LeafMeta),
        prefix: stringValue()
          .default('rtmp-goaway')
          .meta({ kind: 'string', description: 'Prefix of every Redis key and channel.' } satisfies LeafMeta),
        heartbeatMs: duration(5_000, 'How often this replica refreshes its presence and session records in Redis.'),
        sessionTtlMs: duration(15_000, 'TTL of session records in Redis; must be greater than `redis.heartbeatMs`.'),
      })
      .prefault({}),
    workers: int(
      1,
      'Proxy processes sharing the listener (Node cluster): 1 runs one process; N > 1 runs a primary that forks N workers and serves the admin API for all of them (sessions, backends, metrics summed, drains sent to every worker); 0 = one per CPU. Limits such as `limits.maxSessions` apply per worker; with Redis each worker is a replica named `<replicaId>-w<n>`.',
      { min: 0, max: 256 },
    ),
    replicaId: stringValue({ pattern: /^\S+$/, patternHint: 'must not contain whitespace' })
      .default(defaultReplicaId)
      .meta({
        kind: 'string',
        defaultDoc: '<hostname>-<pid>',
        description: 'Identifies this proxy replica in the fleet (logs, metrics, Redis records).',
      } satisfies LeafMeta),
  })
  .superRefine((c, ctx) => {
    // `params.other` names the setting compared against; loadConfig adds where its value came from.
    const add = (path: string[], other: string, message: string) => ctx.addIssue({ code: 'custom', path, message, params: { other } });
    if (c.health.timeoutMs >= c.health.intervalMs) {
      add(
        ['health', 'timeoutMs'],
        'health.intervalMs',
        `must be less than health.intervalMs (${formatDuration(c.health.intervalMs)}), got ${formatDuration(c.health.timeoutMs)}`,
      );
    }
    if (c.limits.minChunkSize > c.limits.maxChunkSize) {
      add(['limits', 'minChunkSize'], 'limits.maxChunkSize', `must not exceed limits.maxChunkSize (${c.limits.maxChunkSize}), got ${c.limits.minChunkSize}`);
    }
    if (c.limits.sessionBufferBytes < c.limits.maxCommandSize) {
      add(
        ['limits', 'sessionBufferBytes'],
        'limits.maxCommandSize',
        `must be at least limits.maxCommandSize (${c.limits.maxCommandSize}), got ${c.limits.sessionBufferBytes}`,
      );
    }
    if (c.limits.processBufferBytes < c.limits.sessionBufferBytes) {
      add(
        ['limits', 'processBufferBytes'],
        'limits.sessionBufferBytes',
        `must be at least limits.sessionBufferBytes (${c.limits.sessionBufferBytes}), got ${c.limits.processBufferBytes}`,
      );
    }
    if (c.limits.maxCommandSize > c.limits.maxMessageSize) {
      add(
        ['limits', 'maxCommandSize'],
        'limits.maxMessageSize',
        `must not exceed limits.maxMessageSize (${c.limits.maxMessageSize}), got ${c.limits.maxCommandSize}`,
      );
    }
    if (c.tls.listen !== '') {
      if (c.tls.cert === '') add(['tls', 'cert'], 'tls.listen', `is required when tls.listen (${c.tls.listen}) is set`);
      if (c.tls.key === '') add(['tls', 'key'], 'tls.listen', `is required when tls.listen (${c.tls.listen}) is set`);
    }
    if (c.acceptProxyProtocol !== 'off' && c.acceptProxyProtocolFrom === '') {
      add(
        ['acceptProxyProtocolFrom'],
        'acceptProxyProtocol',
        `is required when acceptProxyProtocol (${c.acceptProxyProtocol}) is on: list the load balancers' addresses (CIDR, comma-separated), or 0.0.0.0/0,::/0 to believe every client`,
      );
    }
    if (c.adminToken !== '' && c.adminTokenFile !== '') {
      add(['adminTokenFile'], 'adminToken', 'cannot be used together with adminToken (a token is set there too): keep one of them');
    }
    if (!TOKEN_RE.test(c.adminToken) && c.adminToken !== '') {
      ctx.addIssue({ code: 'custom', path: ['adminToken'], message: TOKEN_HINT });
    }
    if (c.redis.sessionTtlMs <= c.redis.heartbeatMs) {
      add(
        ['redis', 'sessionTtlMs'],
        'redis.heartbeatMs',
        `must be greater than redis.heartbeatMs (${formatDuration(c.redis.heartbeatMs)}), got ${formatDuration(c.redis.sessionTtlMs)}`,
      );
    }
  });

export type Config = z.infer<typeof ConfigSchema>;

// ---------------------------------------------------------------------------------------------
// Schema walking → setting docs
// ---------------------------------------------------------------------------------------------

export interface SettingDoc {
  path: string;
  env: string;
  flag: string;
  type: string;
  default: string;
  description: string;
}

interface Leaf {
  path: string[];
  meta: LeafMeta;
}

function unwrapGroup(s: z.ZodType): z.ZodObject | undefined {
  let cur: z.ZodType = s;
  for (;;) {
    if (cur instanceof z.ZodObject) return cur;
    if (cur instanceof z.ZodDefault || cur instanceof z.ZodPrefault || cur instanceof z.ZodOptional) {
      cur = cur.unwrap() as z.ZodType;
      continue;
    }
    return undefined;
  }
}

function walkSchema(obj: z.ZodObject, prefix: string[], out: Leaf[], groups: Map<string, string[]>): void {
  groups.set(prefix.join('.'), Object.keys(obj.shape));
  for (const [key, child] of Object.entries(obj.shape) as [string, z.ZodType][]) {
    const path = [...prefix, key];
    const meta = child.meta() as LeafMeta | undefined;
    if (meta?.kind) {
      out.push({ path, meta });
      continue;
    }
    const group = unwrapGroup(child);
    if (!group) throw new Error(`config schema: setting ${path.join('.')} has no metadata`);
    walkSchema(group, path, out, groups);
  }
}

let leafCache: { leaves: Leaf[]; groups: Map<string, string[]> } | undefined;
function schemaLeaves() {
  if (!leafCache) {
    const leaves: Leaf[] = [];
    const groups = new Map<string, string[]>();
    walkSchema(ConfigSchema, [], leaves, groups);
    leafCache = { leaves, groups };
  }
  return leafCache;
}

const words = (path: string[]) =>
  path.flatMap((seg) =>
    seg
      .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
      .toLowerCase()
      .split(' '),
  );
const envName = (l: Leaf) => ENV_PREFIX + words(l.path).join('_').toUpperCase();
const flagName = (l: Leaf) => `--${l.meta.flag ?? words(l.path).join('-')}`;
/** The key commander uses in `opts()` for a flag: `--health-interval-ms` → `healthIntervalMs`. */
const flagKey = (flag: string) => flag.replace(/^--/, '').replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** How each kind of setting is named: its type in docs/configuration.md and its `--flag <placeholder>`. */
const KIND_NAMES: Record<Exclude<Kind, 'enum'>, { doc: string; flag: string }> = {
  duration: { doc: 'duration', flag: 'duration' },
  size: { doc: 'size', flag: 'size' },
  integer: { doc: 'integer', flag: 'n' },
  number: { doc: 'number', flag: 'x' },
  boolean: { doc: 'boolean', flag: 'value' },
  hostport: { doc: 'host:port', flag: 'host:port' },
  string: { doc: 'string', flag: 'value' },
  url: { doc: 'URL', flag: 'url' },
  backends: { doc: 'list of name=host:port', flag: 'name=host:port' },
  routing: { doc: 'mapping (JSON in env/flag)', flag: 'json' },
};

function typeDoc(m: LeafMeta): string {
  return m.kind === 'enum' ? (m.values ?? []).join(' | ') : KIND_NAMES[m.kind].doc;
}

function defaultDoc(m: LeafMeta, v: unknown): string {
  if (m.defaultDoc !== undefined) return m.defaultDoc;
  if (v === undefined) return '(unset)';
  if (m.kind === 'duration') return formatDuration(v as number);
  if (m.kind === 'size') return formatSize(v as number);
  if (Array.isArray(v)) return v.length === 0 ? '(none)' : JSON.stringify(v);
  if (v === '') return '"" (disabled)';
  return String(v);
}

function getPath(obj: unknown, path: readonly PropertyKey[]): unknown {
  let cur = obj;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return cur;
}

function setPath(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = obj;
  for (const seg of path.slice(0, -1)) {
    const next = cur[seg];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) cur[seg] = {};
    cur = cur[seg] as Record<string, unknown>;
  }
  cur[path[path.length - 1]!] = value;
}

/** One row per setting, derived from the schema's metadata. */
export function settingDocs(): SettingDoc[] {
  const defaults = ConfigSchema.parse({});
  return schemaLeaves().leaves.map((l) => ({
    path: l.path.join('.'),
    env: envName(l),
    flag: flagName(l),
    type: typeDoc(l.meta),
    default: defaultDoc(l.meta, getPath(defaults, l.path)),
    description: l.meta.description,
  }));
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

function suggest(given: string, candidates: readonly string[], prefix = ''): string {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = norm(c) === norm(given) ? 0 : levenshtein(given.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.ceil(Math.max(given.length, best.length) * 0.4)) ? ` (did you mean ${prefix}${best}?)` : '';
}

function displayPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number' || (typeof seg === 'string' && /^\d+$/.test(seg))) s += `[${String(seg)}]`;
    else s += (s === '' ? '' : '.') + String(seg);
  }
  return s;
}

interface YamlSource {
  file: string;
  doc: Yaml.Document.Parsed;
  lines: Yaml.LineCounter;
}

/** `file path:line` for a path inside the YAML document (line of its key, when found). */
function yamlLabel(y: YamlSource, path: readonly PropertyKey[]): string {
  let node: unknown = y.doc.contents;
  let offset: number | undefined;
  for (const seg of path) {
    if (yaml().isMap(node)) {
      const pair = node.items.find((p) => (yaml().isScalar(p.key) ? p.key.value : p.key) === seg);
      if (!pair) break;
      if (yaml().isNode(pair.key) && pair.key.range) offset = pair.key.range[0];
      node = pair.value;
    } else if (yaml().isSeq(node)) {
      const item = node.items[Number(seg)];
      if (!item) break;
      if (yaml().isNode(item) && item.range) offset = item.range[0];
      node = item;
    } else break;
  }
  return offset === undefined ? `file ${y.file}` : `file ${y.file}:${y.lines.linePos(offset).line}`;
}

/** In YAML an empty value (`health:` with everything below commented out) means "use the default". */
function dropNulls(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, child] of Object.entries(v)) if (child !== null) out[k] = dropNulls(child);
  return out;
}

function readYaml(file: string, via: string): { data: Record<string, unknown>; source: YamlSource } {
  let text: string;
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    if (size > MAX_CONFIG_FILE_BYTES)
      throw new ConfigError(`config file ${file} (from ${via}) is ${size} bytes, more than the ${MAX_CONFIG_FILE_BYTES} allowed`);
    // Read at most one byte past the bound, whatever the file grows to meanwhile.
    const buf = Buffer.alloc(MAX_CONFIG_FILE_BYTES + 1);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n > MAX_CONFIG_FILE_BYTES) throw new ConfigError(`config file ${file} (from ${via}) is more than the ${MAX_CONFIG_FILE_BYTES} bytes allowed`);
    text = buf.toString('utf8', 0, n);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(`cannot read config file ${file} (from ${via}): ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  const lines = new (yaml().LineCounter)();
  const doc = yaml().parseDocument(text, { lineCounter: lines, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((err) => `invalid YAML in config file ${file}: ${err.message.split('\n')[0]}`));
  }
  const data: unknown = dropNulls(doc.toJS());
  if (data === null || data === undefined) return { data: {}, source: { file, doc, lines } };
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(`invalid config file ${file}: expected a mapping of settings at the top level, got ${show(data)}`);
  }
  return { data: data as Record<string, unknown>, source: { file, doc, lines } };
}

const FROM_FILE = '\0file';

export interface LoadConfigOptions {
  /** Parsed CLI options keyed as commander does (`healthIntervalMs`, `backend`, `config`, …). */
  flags?: Record<string, unknown>;
  /** Environment; defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** YAML config file; overrides `flags.config` and RTMP_GOAWAY_CONFIG. */
  file?: string;
}

/** The YAML config file `loadConfig` reads for these flags and environment (`--config`, else RTMP_GOAWAY_CONFIG), if any. */
export function configFileOf(flags: Record<string, unknown>, env: NodeJS.ProcessEnv): string | undefined {
  if (typeof flags['config'] === 'string' && flags['config'] !== '') return flags['config'];
  return env[CONFIG_FILE_ENV] || undefined;
}

/**
 * Resolve the configuration: defaults < YAML file < env < flags. Throws ConfigError listing every
 * problem, each naming the setting and where its value came from.
 */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const flags = opts.flags ?? {};
  const env = opts.env ?? process.env;
  const { leaves, groups } = schemaLeaves();
  const issues: string[] = [];
  const raw: Record<string, unknown> = {};
  /** dotted leaf path → where its effective raw value came from (FROM_FILE: resolved to file:line later) */
  const sources = new Map<string, string>();

  // 1. YAML file
  let file: string | undefined;
  let via = '';
  if (opts.file !== undefined && opts.file !== '') {
    file = opts.file;
    via = 'loadConfig({ file })';
  } else if (typeof flags.config === 'string' && flags.config !== '') {
    file = flags.config;
    via = 'flag --config';
  } else if (env[CONFIG_FILE_ENV]) {
    file = env[CONFIG_FILE_ENV];
    via = `env ${CONFIG_FILE_ENV}`;
  }
  let yaml: YamlSource | undefined;
  if (file !== undefined) {
    const r = readYaml(file, via);
    yaml = r.source;
    Object.assign(raw, r.data);
    // Every path the file sets to a non-mapping value (known settings, unknown keys, wrong types).
    const mark = (v: unknown, path: string[]): void => {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
        for (const [k, child] of Object.entries(v)) mark(child, [...path, k]);
      } else sources.set(path.join('.'), FROM_FILE);
    };
    mark(r.data, []);
  }

  // 2. Environment
  const known = new Set<string>([CONFIG_FILE_ENV, NO_TUNE_ENV]);
  for (const l of leaves) {
    const name = envName(l);
    known.add(name);
    const v = env[name];
    if (v === undefined || (v === '' && !l.meta.allowEmpty)) continue;
    setPath(raw, l.path, v);
    sources.set(l.path.join('.'), `env ${name}`);
  }
  for (const name of Object.keys(env)) {
    if (name.startsWith(ENV_PREFIX) && !known.has(name) && !KUBERNETES_SERVICE_LINK.test(name)) {
      issues.push(`unknown environment variable ${name}${suggest(name, [...known])}`);
    }
  }

  // 3. Flags
  for (const l of leaves) {
    const flag = flagName(l);
    const keys = l.meta.kind === 'backends' ? [flagKey(flag), 'backends'] : [flagKey(flag)];
    for (const key of keys) {
      const v = flags[key];
      if (v === undefined) continue;
      setPath(raw, l.path, v);
      sources.set(l.path.join('.'), `flag ${flag}`);
    }
  }

  // 4. Validate
  const sourceOf = (path: readonly PropertyKey[]): string => {
    for (let n = path.length; n > 0; n--) {
      const s = sources.get(path.slice(0, n).map(String).join('.'));
      if (s === FROM_FILE && yaml) return yamlLabel(yaml, path);
      if (s) return s;
    }
    return 'default';
  };
  const res = ConfigSchema.safeParse(raw);
  if (!res.success) {
    for (const iss of res.error.issues) {
      if (iss.code === 'unrecognized_keys') {
        const parent = iss.path
          .filter((p) => typeof p !== 'number' && !/^\d+$/.test(String(p)))
          .map(String)
          .join('.');
        const candidates = iss.path[0] === 'backends' ? Object.keys(BackendSchema.shape) : (groups.get(parent) ?? []);
        const parentDisplay = iss.path.length > 0 ? `${displayPath(iss.path)}.` : '';
        for (const key of iss.keys) {
          const p = [...iss.path, key];
          const where = yaml ? yamlLabel(yaml, p) : sourceOf(iss.path);
          issues.push(`unknown setting ${displayPath(p)} (from ${where})${suggest(key, candidates, parentDisplay)}`);
        }
        continue;
      }
      const where = sourceOf(iss.path);
      let message = iss.message;
      if (iss.code === 'invalid_type') {
        const got = getPath(raw, iss.path);
        message = iss.expected === 'object' ? `expected a mapping of settings, got ${show(got)}` : `expected ${iss.expected}, got ${show(got)}`;
      }
      const other = iss.code === 'custom' ? (iss.params as { other?: unknown } | undefined)?.other : undefined;
      if (typeof other === 'string') {
        const from = sourceOf(other.split('.'));
        message = message.replace(`${other} (`, `${other} (from ${from}: `);
      }
      issues.push(`invalid setting ${displayPath(iss.path)} (from ${where}): ${message}`);
    }
  }
  if (issues.length > 0 || !res.success) throw new ConfigError(issues);
  // The token file is read here, once: every consumer of the configuration sees `adminToken`.
  if (res.data.adminTokenFile !== '') {
    try {
      res.data.adminToken = readTokenFile(res.data.adminTokenFile);
    } catch (e) {
      throw new ConfigError(`invalid setting adminTokenFile (from ${sourceOf(['adminTokenFile'])}): ${(e as Error).message}`);
    }
  }
  return res.data;
}

// ---------------------------------------------------------------------------------------------
// Commander integration
// ---------------------------------------------------------------------------------------------

function placeholder(m: LeafMeta): string {
  return m.kind === 'enum' ? (m.values ?? []).join('|') : KIND_NAMES[m.kind].flag;
}

/**
 * Register one option per setting (booleans get `--x [bool]` plus `--no-x`), a repeatable
 * `--backend name=host:port` and `--config <path>`. No defaults are set on the commander side:
 * defaults live in the schema so that env and file values are not masked.
 */
export function addConfigOptions(cmd: Command): Command {
  const docs = new Map(settingDocs().map((d) => [d.path, d]));
  cmd.addOption(new Option('--config <path>', `YAML config file (env ${CONFIG_FILE_ENV})`));
  for (const l of schemaLeaves().leaves) {
    const d = docs.get(l.path.join('.'))!;
    const help = `${d.description} [${d.path}; env ${d.env}; default ${d.default}]`;
    if (l.meta.kind === 'boolean') {
      cmd.addOption(new Option(`${d.flag} [bool]`, help));
      cmd.addOption(new Option(`--no-${d.flag.slice(2)}`, `set ${d.path} to false`));
    } else if (l.meta.kind === 'backends') {
      cmd.addOption(
        new Option(`${d.flag} <${placeholder(l.meta)}>`, `${help} (repeatable)`).argParser((v: string, prev: unknown) => [
          ...(Array.isArray(prev) ? (prev as string[]) : []),
          v,
        ]),
      );
    } else {
      cmd.addOption(new Option(`${d.flag} <${placeholder(l.meta)}>`, help));
    }
  }
  return cmd;
}

// ---------------------------------------------------------------------------------------------
// Redaction
// ---------------------------------------------------------------------------------------------

function redactUrl(s: string): string {
  try {
    const u = new URL(s);
    if (u.password) {
      u.password = '***';
      return u.toString();
    }
    return s;
  } catch {
    return s.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@');
  }
}

/** Copy of the config safe to log (Redis password and admin token replaced by `***`). */
export function redactConfig(c: Config): Config {
  const copy = structuredClone(c);
  if (copy.redis.url) copy.redis.url = redactUrl(copy.redis.url);
  if (copy.adminToken) copy.adminToken = '***';
  return copy;
}
