/** The console's paths (pure: the access policy reads them too). */

/** The console's files: path → content type. Nothing else is served from its folder. */
export const CONSOLE_ASSETS: Readonly<Record<string, string>> = {
  '/ui': 'text/html; charset=utf-8',
  '/ui/console.js': 'text/javascript; charset=utf-8',
  '/ui/console.css': 'text/css; charset=utf-8',
};

/** The server-sent-events stream of snapshots: guarded like every /api route. */
export const CONSOLE_EVENTS = '/api/events';

/** A request path the console answers. */
export function isConsolePath(path: string): boolean {
  return Object.hasOwn(CONSOLE_ASSETS, path) || path === CONSOLE_EVENTS;
}

/** A console file: open to anyone who passes the Host rule (it holds no data). */
export function isConsoleAsset(method: string, path: string): boolean {
  return method === 'GET' && Object.hasOwn(CONSOLE_ASSETS, path);
}
