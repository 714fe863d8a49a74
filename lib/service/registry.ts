import { defaultDir, type ResolvedOptions } from '../config';
import { Runtime, type RuntimeSettings } from './runtime';

const REGISTRY = Symbol.for('next-volume-cache.runtimes.v2');

type Registry = Map<string, Runtime>;

function registry(): Registry {
  const scope = globalThis as unknown as Record<symbol, Registry | undefined>;
  return (scope[REGISTRY] ??= new Map<string, Runtime>());
}

/**
 * What runtimeFor already answered for a handler class's resolved options (one object per class),
 * by serverDistDir: the registry's id is a JSON string, and building it on every construction cost
 * about 2% of a hot page view's CPU.
 */
const byOptions = new WeakMap<ResolvedOptions, Map<string | undefined, Runtime>>();

/**
 * One Runtime per process and configuration, even when the package is
 * loaded twice (CJS and ESM copies, or two entry points): the registry lives
 * on globalThis under a symbol shared by every copy. A Map lookup, no I/O:
 * Next constructs handlers several times per request.
 */
export function runtimeFor(options: ResolvedOptions, serverDistDir?: string): Runtime {
  const known = byOptions.get(options)?.get(serverDistDir);
  if (known) return known;
  const dir = options.dir ?? defaultDir(serverDistDir);
  const settings: RuntimeSettings = { ...options, dir };
  const id = JSON.stringify(settings);
  let runtime = registry().get(id);
  if (!runtime) {
    runtime = new Runtime({ settings, createParents: options.dir === undefined });
    registry().set(id, runtime);
  }
  let byDir = byOptions.get(options);
  if (!byDir) byOptions.set(options, (byDir = new Map<string | undefined, Runtime>()));
  byDir.set(serverDistDir, runtime);
  return runtime;
}

export function allRuntimes(): Runtime[] {
  return [...registry().values()];
}
