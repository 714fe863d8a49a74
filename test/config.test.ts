import { describe, expect, it } from 'vitest';
import { ConfigError, envNameOf, flagNameOf, resolveOptions } from '../lib/config';
import { createCacheHandler } from '../lib/next/handler';

describe('configuration', () => {
  it('one name per option: factory key, NEXT_VOLUME_CACHE_<NAME>, --<name>', () => {
    expect(envNameOf('timeoutMs')).toBe('NEXT_VOLUME_CACHE_TIMEOUT_MS');
    expect(flagNameOf('timeoutMs')).toBe('--timeout-ms');
    expect(envNameOf('dir')).toBe('NEXT_VOLUME_CACHE_DIR');
  });

  it('factory options override env, env overrides defaults', () => {
    const env = { NEXT_VOLUME_CACHE_DIR: '/mnt/cache', NEXT_VOLUME_CACHE_TIMEOUT_MS: '500', NEXT_VOLUME_CACHE_FSYNC: 'true' };
    const resolved = resolveOptions({ timeoutMs: 250 }, env);
    expect(resolved).toMatchObject({ dir: '/mnt/cache', timeoutMs: 250, fsync: true, app: 'default' });
  });

  it.each([
    [{ dir: 'relative/path' }, 'dir', /absolute path/],
    [{ timeoutMs: -1 }, 'timeoutMs', /positive whole number/],
    [{ timeoutMs: 1.5 }, 'timeoutMs', /positive whole number/],
    [{ app: '../escape' }, 'app', /A-Za-z0-9/],
    [{ logLevel: 'loud' }, 'logLevel', /one of/],
    [{ colour: 'red' }, 'colour', /unknown option/],
    // Names every object inherits are unknown options too.
    [{ toString: 'x' }, 'toString', /unknown option/],
    [{ constructor: 'x' }, 'constructor', /unknown option/],
  ])('%j throws one clear error naming the setting', (options, setting, message) => {
    let error: unknown;
    try {
      resolveOptions(options as never, {});
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe(setting);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toContain(setting);
  });

  it('bad env values and unknown NEXT_VOLUME_CACHE_ variables are errors naming the variable', () => {
    expect(() => resolveOptions({}, { NEXT_VOLUME_CACHE_TIMEOUT_MS: 'soon' })).toThrow(/NEXT_VOLUME_CACHE_TIMEOUT_MS/);
    expect(() => resolveOptions({}, { NEXT_VOLUME_CACHE_DIRR: '/x' })).toThrow(/NEXT_VOLUME_CACHE_DIRR: unknown variable/);
  });

  it('createCacheHandler validates at once and touches no file', () => {
    expect(() => createCacheHandler({ dir: 'not/absolute' })).toThrow(ConfigError);
    const Handler = createCacheHandler({ dir: '/nonexistent/never/created' });
    expect(() => new Handler({ serverDistDir: '/x/.next/server' })).not.toThrow();
  });
});
