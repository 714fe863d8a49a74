import { defineConfig } from 'vitest/config';

/**
 * Test files that spawn `next`, run child processes in loops, mount FUSE, run the benchmark or need
 * the built dist/: the `integration` project. Everything else is the `unit` project, which needs no
 * build and runs in seconds (`npm run test:unit`). A new test file that spawns processes belongs here.
 */
const INTEGRATION = [
  'test/e2e/**/*.test.ts',
  'test/bench-smoke.test.ts',
  'test/cli.test.ts',
  'test/crash.test.ts',
  'test/images.test.ts',
  'test/loading.test.ts',
  'test/log.test.ts',
  'test/package.test.ts',
  'test/rig.test.ts',
  'test/stress.test.ts',
  'test/tag-log.test.ts',
  'test/telemetry.test.ts',
  'test/volume-errors.test.ts',
];

export default defineConfig({
  test: {
    setupFiles: ['test/setup.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 600_000,
    // Child-process stress tests already use both cores; two files at a time is the most this machine takes.
    maxWorkers: 2,
    reporters: ['default', './test/summary-reporter.ts'],
    coverage: {
      provider: 'v8',
      include: ['lib/**/*.ts'],
      reporter: ['text'],
    },
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: INTEGRATION } },
      { extends: true, test: { name: 'integration', include: INTEGRATION } },
    ],
  },
});
