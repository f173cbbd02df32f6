// deploy/grafana/dashboard.json: importable (datasource variable, unique ids, no overlapping
// panels), and every query uses only metrics the proxy exports, with labels those metrics have:
// names come from the `${p}…` declarations in src/ (labelNames included) and from the registry of
// ProxyMetrics (Node's default process metrics, under their standard names). Annotation queries
// are checked the same way.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type MetricsSources, ProxyMetrics } from '../../src/control/metrics.js';
import { root } from './helpers.js';

interface Target {
  expr: string;
  legendFormat?: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Annotation {
  name: string;
  builtIn?: number;
  expr?: string;
  titleFormat?: string;
  datasource?: { type: string; uid: string };
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
  annotations: { list: Annotation[] };
}

const dashboard = JSON.parse(readFileSync(join(root, 'deploy', 'grafana', 'dashboard.json'), 'utf8')) as Dashboard;
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row');
const exprs = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));
const annotations = dashboard.annotations.list.filter((a) => a.builtIn !== 1);

interface MetricInfo {
  type: string;
  labels: Set<string>;
}

/** Metrics declared in src/ as `name: \`${p}…\`` (the prefix variable), with their labelNames. */
function declaredMetrics(): Map<string, MetricInfo> {
  const out = new Map<string, MetricInfo>();
  const walk = (d: string): string[] =>
    readdirSync(join(root, d)).flatMap((e) => (statSync(join(root, d, e)).isDirectory() ? walk(join(d, e)) : e.endsWith('.ts') ? [join(d, e)] : []));
  for (const f of walk('src')) {
    const text = readFileSync(join(root, f), 'utf8');
    const prefix = /const p = '([a-z_]+)'/.exec(text)?.[1];
    if (!prefix) continue;
    const parts = text.split(/\bnew (Counter|Gauge|Histogram|Summary)\b/);
    for (let i = 1; i < parts.length; i += 2) {
      const body = parts[i + 1]!;
      const name = /name: `\$\{p\}(\w+)`/.exec(body)?.[1];
      if (!name) continue;
      const labels = /labelNames: \[([^\]]*)\]/.exec(body.split(/\bnew (?:Counter|Gauge|Histogram|Summary)\b/)[0]!)?.[1] ?? '';
      out.set(prefix + name, { type: parts[i]!.toLowerCase(), labels: new Set([...labels.matchAll(/'([^']+)'/g)].map((m) => m[1]!)) });
    }
  }
  return out;
}

/** Everything the proxy's registry serves, the Node process metrics included. */
function registryMetrics(): Map<string, MetricInfo> {
  const noSources = new Proxy({}, { get: () => () => [] }) as unknown as MetricsSources;
  const m = new ProxyMetrics(noSources);
  const out = new Map<string, MetricInfo>();
  for (const metric of m.registry.getMetricsAsArray() as unknown as { name: string; labelNames?: string[]; constructor: { name: string } }[]) {
    out.set(metric.name, { type: metric.constructor.name.toLowerCase(), labels: new Set(metric.labelNames ?? []) });
  }
  return out;
}

/** Series names a metric exposes: histograms add _bucket (with `le`), _sum and _count. */
function seriesNames(metrics: Map<string, MetricInfo>): Map<string, MetricInfo> {
  const out = new Map<string, MetricInfo>();
  for (const [name, info] of metrics) {
    out.set(name, info);
    if (info.type === 'histogram' || info.type === 'summary') {
      out.set(`${name}_bucket`, { type: 'counter', labels: new Set([...info.labels, 'le']) });
      out.set(`${name}_sum`, { type: 'counter', labels: info.labels });
      out.set(`${name}_count`, { type: 'counter', labels: info.labels });
    }
  }
  return out;
}

const PROMQL_WORDS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'count',
  'stddev',
  'topk',
  'bottomk',
  'quantile',
  'group',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'rate',
  'irate',
  'increase',
  'delta',
  'idelta',
  'deriv',
  'changes',
  'resets',
  'histogram_quantile',
  'clamp_min',
  'clamp_max',
  'abs',
  'ceil',
  'floor',
  'round',
  'vector',
  'scalar',
  'time',
  'label_replace',
  'label_join',
  'sort',
  'sort_desc',
  'avg_over_time',
  'max_over_time',
  'min_over_time',
  'sum_over_time',
  'last_over_time',
  'absent',
  'absent_over_time',
]);
/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = ['instance', 'job', 'namespace', 'pod', 'service', 'container', 'endpoint'];

interface ExprCheck {
  metrics: string[];
  problems: string[];
}

/** A small PromQL reading: metric names, their matchers' labels, `by (…)` labels and legend labels. */
function checkExpr(expr: string, legend: string | undefined, known: Map<string, MetricInfo>): ExprCheck {
  const problems: string[] = [];
  const metrics: string[] = [];
  let depth = 0;
  for (const ch of expr) {
    if ('({['.includes(ch)) depth++;
    if (')}]'.includes(ch)) depth--;
    if (depth < 0) problems.push('unbalanced brackets');
  }
  if (depth !== 0) problems.push('unbalanced brackets');
  // Drop ranges, strings inside matchers are read separately.
  const noRanges = expr.replace(/\[[^\]]*\]/g, '');
  const labelsInExpr = new Set<string>(TARGET_LABELS);
  for (const m of noRanges.matchAll(/([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?/g)) {
    const word = m[1]!;
    const before = noRanges.slice(0, m.index).trimEnd();
    if (PROMQL_WORDS.has(word) || /\b(by|without|on|ignoring)\s*\([^)]*$/.test(before) || /\{[^}]*$/.test(before)) continue;
    if (/^\d/.test(word)) continue;
    const info = known.get(word);
    if (!info) {
      problems.push(`unknown metric ${word}`);
      continue;
    }
    metrics.push(word);
    for (const l of info.labels) labelsInExpr.add(l);
    for (const mm of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)\s*(=~|!~|!=|=)/g)) {
      if (!info.labels.has(mm[1]!) && !TARGET_LABELS.includes(mm[1]!)) problems.push(`${word} has no label ${mm[1]}`);
    }
  }
  const byLabels = new Set<string>();
  let aggregated = false;
  for (const m of noRanges.matchAll(/\b(by|without)\s*\(([^)]*)\)/g)) {
    aggregated = true;
    for (const l of m[2]!
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      if (!labelsInExpr.has(l)) problems.push(`by (${l}): no metric of the expression has that label`);
      if (m[1] === 'by') byLabels.add(l);
    }
  }
  if (/^\s*(sum|min|max|avg|count)\s*\(/.test(noRanges) && !/\bby\s*\(/.test(noRanges)) aggregated = true;
  for (const m of (legend ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
    const ok = aggregated ? byLabels.has(m[1]!) : labelsInExpr.has(m[1]!);
    if (!ok) problems.push(`legend {{${m[1]}}} is not a label of the result`);
  }
  return { metrics, problems };
}

describe('Grafana dashboard', () => {
  const declared = declaredMetrics();
  const registry = registryMetrics();
  const known = seriesNames(new Map([...registry, ...declared]));

  test('src declares the metrics the README lists (the parser finds them)', () => {
    for (const n of [
      'rtmp_goaway_sessions_active',
      'rtmp_goaway_bytes_total',
      'rtmp_goaway_goaway_sent_total',
      'rtmp_goaway_drain_duration_seconds',
      'rtmp_goaway_parse_fallbacks_total',
      'rtmp_goaway_bus_connected',
    ]) {
      assert.ok(declared.has(n), `${n} not found in src/`);
    }
    assert.deepEqual([...declared.get('rtmp_goaway_sessions_active')!.labels].sort(), ['backend', 'capability']);
    assert.equal(declared.get('rtmp_goaway_drain_duration_seconds')!.type, 'histogram');
    // What ProxyMetrics registers is declared in src (the parser sees it all).
    for (const name of registry.keys()) if (!/^(process|nodejs)_/.test(name)) assert.ok(declared.has(name), `${name} is registered but the parser missed it`);
  });

  test('importable: title/uid, a Prometheus datasource variable used by every panel, unique ids, panels not overlapping', () => {
    assert.equal(dashboard.uid, 'rtmp-goaway-proxy');
    assert.ok(dashboard.schemaVersion >= 36);
    const ds = dashboard.templating.list.find((v) => v.type === 'datasource');
    assert.ok(ds && ds.query === 'prometheus', 'a datasource variable of type prometheus');
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'unique panel ids');
    for (const p of queryPanels) {
      assert.deepEqual(p.datasource, { type: 'prometheus', uid: `\${${ds.name}}` }, `${p.title}: datasource`);
      assert.ok(p.targets && p.targets.length > 0, `${p.title}: no query`);
      assert.ok(p.description, `${p.title}: no description`);
      assert.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title}: outside the 24-column grid`);
    }
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          const c = `${x},${y}`;
          assert.ok(!cells.has(c), `${p.title} overlaps another panel at ${c}`);
          cells.add(c);
        }
      }
    }
  });

  test('every query uses only exported metrics, with labels they have', () => {
    const problems: string[] = [];
    for (const e of [...exprs, ...annotations.map((a) => ({ panel: `annotation ${a.name}`, expr: a.expr ?? '', legendFormat: a.titleFormat }))]) {
      const r = checkExpr(e.expr, e.legendFormat, known);
      if (r.metrics.length === 0) problems.push(`${e.panel}: no metric in ${e.expr}`);
      problems.push(...r.problems.map((p) => `${e.panel}: ${p} in ${e.expr}`));
    }
    assert.deepEqual(problems, []);
  });

  test('a replica selector filters every query; Node default metrics keep their standard names', () => {
    const replica = dashboard.templating.list.find((v) => v.name === 'replica');
    assert.ok(replica && replica.type === 'query', 'a replica template variable');
    for (const e of [...exprs, ...annotations.map((a) => ({ panel: a.name, expr: a.expr ?? '' }))]) {
      for (const m of e.expr.matchAll(/\b((?:rtmp_goaway|process|nodejs)_\w+)(\{[^}]*\})?/g)) {
        assert.match(m[2] ?? '', /instance=~"\$replica"/, `${e.panel}: ${m[1]} is not filtered by $replica`);
      }
    }
    assert.ok(
      registry.has('process_cpu_seconds_total') && registry.has('process_open_fds') && registry.has('nodejs_eventloop_lag_p99_seconds'),
      'standard Node metric names',
    );
    assert.ok(![...registry.keys()].some((n) => /^rtmp_goaway_(process|nodejs)_/.test(n)), 'no prefixed copy of the Node metrics');
  });

  test('shows a drain as it happens: annotations from a metric, sessions left per draining backend, outcomes', () => {
    assert.ok(
      annotations.some((a) => /rtmp_goaway_drain_commands_total|rtmp_goaway_backend_draining/.test(a.expr ?? '')),
      'drain annotations',
    );
    for (const a of annotations) assert.deepEqual(a.datasource, { type: 'prometheus', uid: '${datasource}' }, `${a.name}: datasource`);
    const panel = (title: string) => queryPanels.find((p) => p.title === title);
    const left = panel('Sessions left on draining backends');
    assert.ok(left && /rtmp_goaway_sessions_active[\s\S]*rtmp_goaway_backend_draining/.test(left.targets![0]!.expr), 'sessions left on draining backends');
    const outcomes = panel('Drain outcomes')!
      .targets!.map((t) => t.expr)
      .join('\n');
    for (const m of [
      'rtmp_goaway_goaway_sent_total',
      'rtmp_goaway_reconnect_requests_sent_total',
      'rtmp_goaway_migrations_total',
      'rtmp_goaway_drain_deadline_closes_total',
    ])
      assert.ok(outcomes.includes(m), `drain outcomes: ${m}`);
  });

  test('covers what operators watch: sessions by backend and capability, bytes/s, Go Away sent, migrations, drain duration, parse fallbacks, bus state', () => {
    const uses = (metric: string, re: RegExp = /./) => exprs.some((e) => e.expr.includes(metric) && re.test(e.expr));
    assert.ok(uses('rtmp_goaway_sessions_active', /by \(backend\)/), 'sessions by backend');
    assert.ok(uses('rtmp_goaway_sessions_active', /by \(capability\)/), 'sessions by capability');
    assert.ok(uses('rtmp_goaway_bytes_total', /rate\(/), 'bytes per second');
    assert.ok(uses('rtmp_goaway_goaway_sent_total'), 'Go Away sent');
    assert.ok(uses('rtmp_goaway_drain_duration_seconds_bucket', /histogram_quantile/), 'drain duration');
    assert.ok(uses('rtmp_goaway_parse_fallbacks_total'), 'parse fallbacks');
    assert.ok(uses('rtmp_goaway_bus_connected'), 'bus state');
    assert.ok(uses('rtmp_goaway_bytes_total', /by \(backend, direction\)/), 'bytes per backend');
    assert.ok(uses('rtmp_goaway_sessions_closed_total', /by \(backend, reason\)/), 'close reasons per backend');
    assert.ok(uses('process_cpu_seconds_total', /rate\(/), 'CPU');
    assert.ok(uses('process_open_fds') && uses('process_max_fds'), 'open descriptors against the limit');
    assert.ok(uses('rtmp_goaway_config_reloads_total'), 'configuration reloads');
    // Migrations: shown once the proxy exports them (proxy-side migration is its own feature).
    const migrationMetrics = [...declared.keys()].filter((n) => /migration/.test(n));
    if (migrationMetrics.length > 0)
      assert.ok(
        exprs.some((e) => /rtmp_goaway_migration/.test(e.expr)),
        `the proxy exports ${migrationMetrics.join(', ')}: add a migrations panel`,
      );
  });

  test('the query checker is not vacuous', () => {
    const bad = (expr: string, legend?: string) => checkExpr(expr, legend, known).problems.join('; ');
    assert.match(bad('sum(rtmp_goaway_sesions_active)'), /unknown metric rtmp_goaway_sesions_active/);
    assert.match(bad('sum(rate(rtmp_goaway_bytes_total{reason="a"}[5m]))'), /has no label reason/);
    assert.match(bad('sum by (reason) (rtmp_goaway_sessions_active)'), /by \(reason\)/);
    assert.match(bad('sum by (backend) (rtmp_goaway_sessions_active)', '{{capability}}'), /legend \{\{capability\}\}/);
    assert.match(bad('sum(rate(rtmp_goaway_bytes_total[5m])'), /unbalanced/);
    assert.equal(bad('histogram_quantile(0.9, sum by (le) (rate(rtmp_goaway_drain_duration_seconds_bucket[5m])))'), '');
    assert.equal(bad('process_resident_memory_bytes', '{{instance}}'), '');
    assert.match(bad('rtmp_goaway_process_resident_memory_bytes'), /unknown metric/);
  });
});
