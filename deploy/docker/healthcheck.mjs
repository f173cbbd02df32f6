// Container HEALTHCHECK (Dockerfile): GET /healthz on the admin API, exit 0 when it answers 200.
// The admin address comes from RTMP_GOAWAY_ADMIN (the image sets 0.0.0.0:9935); a wildcard host
// is checked on loopback. With the admin API disabled (empty RTMP_GOAWAY_ADMIN) there is nothing
// to ask, so the check passes. Kubernetes ignores HEALTHCHECK and uses the manifests' probes.
const raw = process.env.RTMP_GOAWAY_ADMIN ?? '127.0.0.1:9935';
if (raw.trim() === '') {
  console.log('admin API disabled: nothing to check');
  process.exit(0);
}
const m = /^(.*):(\d+)$/.exec(raw.trim());
if (m === null) {
  console.error(`cannot read the admin address ${JSON.stringify(raw)}`);
  process.exit(1);
}
let host = m[1];
if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
else if (host === '[::]') host = '[::1]';
else if (!host.startsWith('[') && host.includes(':')) host = `[${host}]`;
try {
  const res = await fetch(`http://${host}:${m[2]}/healthz`, { signal: AbortSignal.timeout(2500) });
  process.exit(res.ok ? 0 : 1);
} catch (e) {
  console.error(`GET http://${host}:${m[2]}/healthz: ${e.cause?.code ?? e.message}`);
  process.exit(1);
}
