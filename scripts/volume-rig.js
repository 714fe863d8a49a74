// The network-volume rig: one backing folder mounted several times through libfuse's passthrough_ll
// example (Debian's libfuse3-dev), each mount an independent "client" with its own kernel attribute,
// name and page caches. Used by the reliability tests (test/rig.test.ts) and the benchmark.
//   efs:       coherent (timeout=0), every backing filesystem call delayed ~1 ms (EFS-like latency)
//   nfs-3s:    names and attributes cached 3 s (NFS-like attribute caching)
//   nfs-30s:   cached 30 s (the EFS mount helper's directory window)
//   writeback: coherent, with write-back caching (which mangles O_APPEND writes)
// The timeout profiles are more pessimistic than NFSv4: a client keeps following a cached name for
// the whole window even across a fresh open.
'use strict';
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const PROFILES = {
  efs: { name: 'efs', timeoutSeconds: 0, latencyUs: 1000, writeback: false },
  'nfs-3s': { name: 'nfs-3s', timeoutSeconds: 3, latencyUs: 0, writeback: false },
  'nfs-30s': { name: 'nfs-30s', timeoutSeconds: 30, latencyUs: 0, writeback: false },
  writeback: { name: 'writeback', timeoutSeconds: 0, latencyUs: 0, writeback: true },
};

const EXAMPLES = '/usr/share/doc/libfuse3-dev/examples';
const BUILD = path.join(__dirname, '..', 'node_modules', '.cache', 'nvc-rig');

/** Why the rig cannot run here, or undefined when it can. */
function rigUnavailable() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'needs root to mount FUSE';
  if (!fs.existsSync('/dev/fuse')) return 'no /dev/fuse';
  if (!fs.existsSync(path.join(EXAMPLES, 'passthrough_ll.c'))) return 'libfuse3-dev is not installed (apt-get install fuse3 libfuse3-dev pkg-config gcc)';
  if (spawnSync('pkg-config', ['--exists', 'fuse3']).status !== 0) return 'pkg-config cannot find fuse3';
  return undefined;
}

/** In CI the rig must run: a missing prerequisite fails there instead of skipping. */
function requireRigOrSkip() {
  const reason = rigUnavailable();
  if (reason && process.env.CI === 'true') throw new Error(`the network-volume rig must run in CI: ${reason}`);
  if (reason) console.log(`SKIP network-volume rig: ${reason}`);
  return reason === undefined;
}

function buildBinaries() {
  fs.mkdirSync(BUILD, { recursive: true });
  const passthrough = path.join(BUILD, 'passthrough_ll');
  const latency = path.join(BUILD, 'latency.so');
  if (!fs.existsSync(passthrough)) {
    const flags = execFileSync('pkg-config', ['--cflags', '--libs', 'fuse3'], { encoding: 'utf8' }).trim().split(/\s+/);
    execFileSync('gcc', ['-O2', `-I${EXAMPLES}`, path.join(EXAMPLES, 'passthrough_ll.c'), ...flags, '-o', passthrough]);
  }
  if (!fs.existsSync(latency)) execFileSync('gcc', ['-O2', '-shared', '-fPIC', path.join(__dirname, 'volume-rig-latency.c'), '-o', latency, '-ldl']);
  return { passthrough, latency };
}

/** Mounts `clients` FUSE clients of one new backing folder; resolves once all are mounted. */
async function startRig(profile, clients) {
  const { passthrough, latency } = buildBinaries();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), `nvc-rig-${profile.name}-`));
  const backing = path.join(base, 'backing');
  fs.mkdirSync(backing);
  const mounts = [];
  const processes = [];
  const ended = [];
  for (let i = 0; i < clients; i++) {
    const mount = path.join(base, `client-${i}`);
    fs.mkdirSync(mount);
    const options = [`source=${backing}`, `timeout=${profile.timeoutSeconds}`, 'cache=auto', ...(profile.writeback ? ['writeback'] : [])].join(',');
    const env = { ...process.env, ...(profile.latencyUs ? { LD_PRELOAD: latency, NVC_LATENCY_US: String(profile.latencyUs) } : {}) };
    const client = spawn(passthrough, ['-f', '-o', options, mount], { env, stdio: 'ignore' });
    // Followed from the spawn: a wait attached later misses a client that already ended.
    ended.push(new Promise((resolve) => (client.once('exit', resolve), client.on('error', resolve))));
    processes.push(client);
    mounts.push(mount);
  }
  const stop = async () => {
    for (const m of mounts) spawnSync('fusermount3', ['-u', '-z', m]);
    for (const p of processes) p.kill(); // a no-op for a client that has ended
    await Promise.all(ended);
  };
  const deadline = Date.now() + 10_000;
  while (!mounts.every((m) => fs.readFileSync('/proc/mounts', 'utf8').includes(` ${m} `))) {
    if (Date.now() > deadline) {
      await stop(); // no client left running behind a failed start
      throw new Error(`FUSE mounts did not come up: ${mounts.join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { profile, backing, mounts, stop };
}

module.exports = { PROFILES, rigUnavailable, requireRigOrSkip, startRig };
