import { defaultDir, type ResolvedOptions } from '../config';
import { Runtime, type RuntimeSettings } from './runtime';

const REGISTRY = Symbol.for('next-volume-cache.runtimes.v2');

type Registry = Map<string, Runtime>;

function registry(): Registry {
  const scope = globalThis as unknown as Record<symbol, Registry | undefined>;
  return (scope[REGISTRY] ??= new Map<string, Runtime>());
}

/**
 * One Runtime per process and configuration, even when the package is
 * loaded twice (CJS and ESM copies, or two entry points): the registry lives
 * on globalThis under a symbol shared by every copy. A Map lookup, no I/O:
 * Next constructs handlers several times per request.
 */
export function runtimeFor(options: ResolvedOptions, serverDistDir?: string): Runtime {
  const dir = options.dir ?? defaultDir(serverDistDir);
  const settings: RuntimeSettings = { ...options, dir };
  const id = JSON.stringify(settings);
  let runtime = registry().get(id);
  if (!runtime) {
    runtime = new Runtime({ settings, createParents: options.dir === undefined });
    registry().set(id, runtime);
  }
  return runtime;
}

export function allRuntimes(): Runtime[] {
  return [...registry().values()];
}
