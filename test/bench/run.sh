#!/usr/bin/env bash
# `npm run bench` / `npm run bench:smoke`: raises the open-file limit for the 5,000-session
# fan-out, installs the peers the full bench compares against when they are missing (Debian,
# as root; the smoke run never installs anything), then runs test/bench/bench.ts.
set -euo pipefail
cd "$(dirname "$0")/../.."

smoke=false
for a in "$@"; do [ "$a" = "--smoke" ] && smoke=true; done

# 5,000 sessions = 10,000 sockets in the proxy; HAProxy/nginx size themselves from this too.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "$smoke" = false ] && [ "${BENCH_NO_INSTALL:-}" != "1" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  [ -x /usr/sbin/haproxy ] || need+=(haproxy)
  [ -x /usr/sbin/nginx ] || need+=(nginx)
  ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1 || need+=(libnginx-mod-stream)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  if [ "${#need[@]}" -gt 0 ]; then
    echo "bench: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    (apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; }) ||
      echo "bench: could not install ${need[*]}; those middles are skipped" >&2
    # Debian starts the services on install; the bench starts its own on ephemeral ports.
    (service nginx stop || true) >/dev/null 2>&1
    (service haproxy stop || true) >/dev/null 2>&1
    (service redis-server stop || true) >/dev/null 2>&1
  fi
fi

exec node --import tsx test/bench/bench.ts "$@"
