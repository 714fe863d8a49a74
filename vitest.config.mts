import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Child-process stress tests already use both cores; two files at a time is the most this machine takes.
    maxWorkers: 2,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
