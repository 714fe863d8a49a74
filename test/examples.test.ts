import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../bin/cli';
import { resolveOptions } from '../lib/config';
import { openCache, REPO, tempDir } from './helpers';
import { FETCH_CTX, fetchValue } from './values';

const EXAMPLE = path.join(REPO, 'examples', 'kubernetes');
const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string>; exports: Record<string, unknown>; name: string };

interface Container {
  name: string;
  env?: Array<{ name: string; value?: string }>;
  command?: string[];
  startupProbe?: { exec?: { command: string[] } };
  livenessProbe?: unknown;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}

interface PodTemplate {
  template: { spec: { containers: Container[] } };
}

/** The parts of a Kubernetes manifest these tests read (a CronJob nests its pod one level deeper). */
interface Manifest {
  kind: string;
  spec: PodTemplate & { jobTemplate: { spec: PodTemplate } };
}

function manifests(file: string): Manifest[] {
  return parseAllDocuments(readFileSync(path.join(EXAMPLE, file), 'utf8')).map((d) => {
    expect(d.errors).toEqual([]);
    return d.toJSON() as Manifest;
  });
}

function containersOf(doc: Manifest): Container[] {
  const spec = doc.kind === 'CronJob' ? doc.spec.jobTemplate.spec.template.spec : doc.spec.template.spec;
  return spec.containers;
}

const workloads = [...manifests('deployment.yaml'), ...manifests('cronjob.yaml')];
const containers = workloads.flatMap(containersOf);
const dockerfile = readFileSync(path.join(EXAMPLE, 'Dockerfile'), 'utf8');
const cliPath = `node_modules/${pkg.name}/${pkg.bin['next-volume-cache']}`;

/** Every CLI invocation in the manifests: probe commands and `sh -c` scripts. */
function cliInvocations(): string[][] {
  const out: string[][] = [];
  for (const c of containers) {
    const commands = [c.startupProbe?.exec?.command, c.command].filter((x): x is string[] => Array.isArray(x));
    for (const command of commands) {
      const scripts = command[0] === 'sh' ? command[2]!.split('&&').map((s) => s.trim().split(/\s+/)) : [command];
      for (const words of scripts) if (words[0] === 'node' && words[1]?.includes('next-volume-cache')) out.push(words);
    }
  }
  return out;
}

const savedEnv = { ...process.env };
afterEach(() => {
  for (const key of Object.keys(process.env)) if (key.startsWith('NEXT_VOLUME_CACHE_')) delete process.env[key];
  Object.assign(process.env, savedEnv);
});

describe('the Kubernetes example stays true to the library', () => {
  it('every manifest parses; every NEXT_VOLUME_CACHE_ variable is a real option with a valid value', () => {
    expect(manifests('pvc.yaml').map((d) => d.kind)).toEqual(['PersistentVolumeClaim', 'PersistentVolume']);
    for (const c of containers) {
      const env = Object.fromEntries((c.env ?? []).filter((e) => e.name.startsWith('NEXT_VOLUME_CACHE_')).map((e) => [e.name, e.value]));
      expect(Object.keys(env).length, c.name).toBeGreaterThan(0);
      expect(() => resolveOptions({}, env), c.name).not.toThrow();
    }
  });

  it('the cache root is the same path in the image, the pods and the CronJob, and no liveness probe touches the volume', () => {
    expect(dockerfile).toMatch(/NEXT_VOLUME_CACHE_DIR=\/cache\b/);
    for (const c of containers) {
      expect(c.volumeMounts?.find((v) => v.name === 'cache')?.mountPath).toBe('/cache');
      expect(c.env?.find((e) => e.name === 'NEXT_VOLUME_CACHE_DIR')?.value).toBe('/cache');
      expect(c.livenessProbe).toBeUndefined();
    }
  });

  it('the CLI path in the manifests is the one the image installs and package.json declares', () => {
    expect(dockerfile).toContain(`COPY --from=build /app/node_modules/${pkg.name} ./node_modules/${pkg.name}`);
    const invocations = cliInvocations();
    expect(invocations.length).toBeGreaterThanOrEqual(3);
    for (const words of invocations) expect(words[1]).toBe(cliPath);
  });

  it('next.config.js resolves entry points the package exports', () => {
    const config = readFileSync(path.join(EXAMPLE, 'next.config.js'), 'utf8');
    const specifiers = [...config.matchAll(/require\.resolve\('([^']+)'\)/g)].map((m) => m[1]!);
    expect(specifiers).toContain(pkg.name);
    for (const s of specifiers) expect(Object.keys(pkg.exports)).toContain(s === pkg.name ? '.' : `.${s.slice(pkg.name.length)}`);
  });

  it("every CLI command in the manifests runs successfully, with the manifests' environment, against a real cache", async () => {
    const dir = tempDir('nvc-example-');
    const c = await openCache({ dir, app: 'web' });
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    await c.runtime.close();
    let ran = 0;
    for (const container of containers) {
      for (const e of container.env ?? []) if (e.name.startsWith('NEXT_VOLUME_CACHE_') && e.value !== undefined) process.env[e.name] = e.value;
      process.env.NEXT_VOLUME_CACHE_DIR = dir;
      const own = [container.startupProbe?.exec?.command, container.command].flat().join(' ');
      for (const words of cliInvocations().filter((w) => own.includes(w.slice(1).join(' ')))) {
        let err = '';
        const code = await main(
          words.slice(2),
          () => {},
          (t) => (err += t),
        );
        expect(code, `${words.slice(2).join(' ')}: ${err}`).toBe(0);
        ran++;
      }
    }
    expect(ran).toBe(cliInvocations().length);
  });
});
