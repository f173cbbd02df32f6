import type http from 'node:http';
import type { Logger } from 'pino';
import type { BackendSnapshot, DrainResult } from '../balancer/types.js';
import type { SessionSnapshot } from '../proxy/session/session.js';
import type { AdminAccess } from './admin-access.js';
import { type AdminApi, type AdminDrainOptions, adminRoutes } from './admin-routes.js';
import { createAdminHttpServer } from './admin-server.js';
import type { ProxyMetrics } from './metrics.js';

/** What the admin API needs from the running proxy. */
export interface AdminTarget {
  backends(): BackendSnapshot[];
  sessions(): SessionSnapshot[];
  /** Drains here and tells the fleet; the answer body. Throws UnknownBackendError, LastRoutableBackendError. */
  drain(name: string, opts: AdminDrainOptions): Promise<DrainResult>;
  /** Undrains here and tells the fleet: whether the backend was draining. Throws UnknownBackendError. */
  undrain(name: string): Promise<boolean>;
  /** null when ready, else why not (shown in the 503 body). */
  notReadyReason(): string | null;
}

export interface AdminOptions {
  /** Who may use the API: address kind, token (admin-access.ts). */
  access: AdminAccess;
}

/** The proxy's admin HTTP server: the routes of admin-routes.ts answered from this process. */
export function createAdminServer(target: AdminTarget, metrics: ProxyMetrics, log: Logger, opts: AdminOptions): http.Server {
  const api: AdminApi = {
    health: () => ({}),
    readiness() {
      const why = target.notReadyReason();
      return why === null ? { ready: true } : { ready: false, reason: why };
    },
    metrics: () => metrics.registry,
    backends: () => target.backends(),
    sessions(backend) {
      const all = target.sessions();
      return backend === null ? all : all.filter((s) => s.backend === backend);
    },
    drain: async (name, o) => ({ status: 200, json: await target.drain(name, o) }),
    undrain: async (name) => ({ status: 200, json: { backend: name, undrained: await target.undrain(name) } }),
  };
  const refused = (): void => metrics.controlMessages.inc({ source: 'admin', result: 'rejected' });
  return createAdminHttpServer({ access: opts.access, log, refused }, adminRoutes(api));
}
