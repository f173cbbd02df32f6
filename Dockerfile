# syntax=docker/dockerfile:1
# rtmp-goaway-proxy image: the CLI is the entrypoint (`serve` by default).
#
#   docker build -t rtmp-goaway-proxy:0.1.0 .
#   docker run --rm -p 1935:1935 -e RTMP_GOAWAY_BACKENDS=a=10.0.0.11:1935,b=10.0.0.12:1935 rtmp-goaway-proxy:0.1.0
#   docker run --rm rtmp-goaway-proxy:0.1.0 --help
#
# Settings are the RTMP_GOAWAY_* variables of docs/configuration.md (or flags after `serve`).
# The build context is an allowlist (.dockerignore): sources, lockfile and bin only.
# Node 24 LTS is the target; CI also runs the suite on the machine's Node (>= 20, see .ci/run).
ARG NODE_VERSION=24

# 1. Compile TypeScript with the dev dependencies.
FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied; it runs below instead.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# 2. Production dependencies only (all pure JavaScript: nothing is compiled).
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# 3. Runtime: node, tini, the compiled proxy and its production dependencies. Files belong to
#    root and are read-only for the proxy's user, so the root filesystem can be mounted read-only.
FROM node:${NODE_VERSION}-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.* \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json LICENSE ./
COPY --chmod=755 bin/rtmp-goaway-proxy.js ./bin/rtmp-goaway-proxy.js
COPY deploy/docker/healthcheck.mjs ./healthcheck.mjs
RUN ln -s /app/bin/rtmp-goaway-proxy.js /usr/local/bin/rtmp-goaway-proxy
# Inside a container the listeners bind every interface: probes and Prometheus reach the admin
# port on the pod/container IP. Off loopback, /api and POST need the admin token
# (RTMP_GOAWAY_ADMIN_TOKEN_FILE; 403 without one): do not publish 9935 beyond the cluster / host
# all the same (compose binds it to 127.0.0.1). docs/security.md.
ENV NODE_ENV=production \
    RTMP_GOAWAY_LISTEN=0.0.0.0:1935 \
    RTMP_GOAWAY_ADMIN=0.0.0.0:9935
# The image's `node` user, numeric so that Kubernetes `runAsNonRoot` can verify it.
USER 1000:1000
EXPOSE 1935 9935
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["node", "/app/healthcheck.mjs"]
# tini is PID 1: it forwards SIGTERM/SIGINT to node (whose handlers drain in sidecar mode) and
# reaps zombies; a signal that arrives before node installs its handlers still stops the container.
STOPSIGNAL SIGTERM
# The entry point is run as a program, as `npm`/`npx` users run it: its shell half starts node with
# the runtime settings (GLIBC_TUNABLES, --initial-old-space-size, --max-semi-space-size;
# src/runtime-tuning.ts, docs/performance.md) by `exec`, so node is tini's child, one process.
# RTMP_GOAWAY_NO_TUNE=1 turns them off; GLIBC_TUNABLES or the flag in NODE_OPTIONS set here win.
ENTRYPOINT ["/usr/bin/tini", "--", "/app/bin/rtmp-goaway-proxy.js"]
CMD ["serve"]
