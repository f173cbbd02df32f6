import { Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { startProxy } from './app.js';
import { ConfigError, addConfigOptions, loadConfig, parseDuration, redactConfig } from './config.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

function durationArg(v: string): number {
  try {
    return parseDuration(v);
  } catch {
    throw new InvalidArgumentError('expected a duration like 500ms, 30s or 2m');
  }
}

/** Admin API base URL from `--admin` (host:port or URL) or RTMP_GOAWAY_ADMIN. */
function adminUrl(v: string | undefined): string {
  const raw = v ?? process.env['RTMP_GOAWAY_ADMIN'] ?? '127.0.0.1:9935';
  const withScheme = /^https?:\/\//.test(raw) ? raw : `http://${raw.replace(/^0\.0\.0\.0:/, '127.0.0.1:')}`;
  return withScheme.replace(/\/+$/, '');
}

async function adminRequest(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new Error(`cannot reach the admin API at ${base}: ${(err as Error).message}`);
  }
  const text = await res.text();
  const json: unknown = text === '' ? null : JSON.parse(text);
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

export function buildCli(): Command {
  const program = new Command('rtmp-goaway-proxy')
    .description('RTMP-aware TCP proxy: drains ingest servers without losing a frame (RTMP Go Away)')
    .version(pkg.version)
    .showHelpAfterError();

  addConfigOptions(
    program
      .command('serve')
      .description('run the proxy (settings: flags > env RTMP_GOAWAY_* > --config YAML > defaults; see docs/configuration.md)'),
  ).action(async (flags: Record<string, unknown>) => {
    const config = loadConfig({ flags, env: process.env });
    if (config.backends.length === 0) {
      throw new ConfigError(['no backend configured: pass --backend name=host:port (repeatable), RTMP_GOAWAY_BACKENDS, or backends: in --config; `npm start` runs a self-contained demo instead']);
    }
    const proxy = await startProxy(config);
    proxy.log.debug({ config: redactConfig(config) }, 'configuration');
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) process.exit(1);
      stopping = true;
      proxy.log.info({ signal }, 'stopping');
      void proxy.stop(signal.toLowerCase()).then(() => process.exit(0));
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });

  program
    .command('drain <backend>')
    .description('stop routing new sessions to <backend> and tell its publishers to go away')
    .option('--deadline <duration>', 'close sessions still on the backend after this long', durationArg)
    .option('--reason <text>', 'free text recorded with the drain')
    .option('--admin <url>', 'admin API of the proxy (host:port or URL; env RTMP_GOAWAY_ADMIN)')
    .action(async (backend: string, o: { deadline?: number; reason?: string; admin?: string }) => {
      const body: Record<string, unknown> = {};
      if (o.deadline !== undefined) body['deadlineMs'] = o.deadline;
      if (o.reason !== undefined) body['reason'] = o.reason;
      const r = await adminRequest(adminUrl(o.admin), 'POST', `/api/backends/${encodeURIComponent(backend)}/drain`, body);
      console.log(JSON.stringify(r, null, 2));
    });

  program
    .command('undrain <backend>')
    .description('let <backend> take new sessions again')
    .option('--admin <url>', 'admin API of the proxy (host:port or URL; env RTMP_GOAWAY_ADMIN)')
    .action(async (backend: string, o: { admin?: string }) => {
      const r = await adminRequest(adminUrl(o.admin), 'POST', `/api/backends/${encodeURIComponent(backend)}/undrain`);
      console.log(JSON.stringify(r, null, 2));
    });

  program
    .command('status')
    .description('backends and sessions of a running proxy')
    .option('--json', 'print JSON')
    .option('--admin <url>', 'admin API of the proxy (host:port or URL; env RTMP_GOAWAY_ADMIN)')
    .action(async (o: { json?: boolean; admin?: string }) => {
      const base = adminUrl(o.admin);
      const [backends, sessions] = (await Promise.all([adminRequest(base, 'GET', '/api/backends'), adminRequest(base, 'GET', '/api/sessions')])) as [
        { name: string; host: string; port: number; state: string; sessions: number }[],
        { id: string; backend: string | null; app: string | null; streamKey: string | null; capability: string; state: string; bytesIn: number }[],
      ];
      if (o.json) {
        console.log(JSON.stringify({ backends, sessions }, null, 2));
        return;
      }
      console.log('BACKEND            ADDRESS                STATE      SESSIONS');
      for (const b of backends) console.log(`${b.name.padEnd(18)} ${`${b.host}:${b.port}`.padEnd(22)} ${b.state.padEnd(10)} ${b.sessions}`);
      console.log(`\n${sessions.length} session(s)`);
      for (const s of sessions) console.log(`  ${s.id}  ${s.backend ?? '-'}  ${s.app ?? '-'}/${s.streamKey ?? '-'}  ${s.capability}  ${s.state}  ${s.bytesIn} B in`);
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`rtmp-goaway-proxy: configuration error:\n  ${err.issues.join('\n  ')}`);
      process.exitCode = 2;
      return;
    }
    console.error(`rtmp-goaway-proxy: ${(err as Error).message}`);
    process.exitCode = 1;
  }
}
