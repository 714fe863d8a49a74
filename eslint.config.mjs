// ESLint 9 flat config. Type-aware rules for the TypeScript (lib, bin, test) through tsconfig.test.json,
// which is the one program that holds all three; the plain CommonJS scripts get the core rules only.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const typedTs = {
  languageOptions: {
    parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
  },
};

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/', '.cache/', 'fixtures/', 'examples/', 'bench/results/', '**/.next*/'] },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },

  // The library and the CLI: the full type-checked set, plus the house rules on boundaries and imports.
  {
    files: ['lib/**/*.ts', 'bin/**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    ...typedTs,
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/explicit-module-boundary-types': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-import-type-side-effects': 'error',
      // Passing a caught `unknown` on unchanged (as the gate does with a task's rejection) is a rethrow, not a new error.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
    },
  },

  // The layers (README, "Development"): imports point down only. next/ and maintenance/ sit on the
  // service; the service on store/ and tags/; those on fs/ and util/. Nothing below imports above.
  ...layerRules({
    'lib/next/**/*.ts': ['maintenance'],
    'lib/service/**/*.ts': ['next', 'maintenance'],
    'lib/tags/**/*.ts': ['service', 'next', 'maintenance', 'config'],
    'lib/store/**/*.ts': ['tags', 'service', 'next', 'maintenance', 'config'],
    'lib/fs/**/*.ts': ['store', 'tags', 'service', 'next', 'maintenance', 'config'],
    'lib/util/**/*.ts': ['fs', 'store', 'tags', 'service', 'next', 'maintenance', 'config'],
  }),

  // Tests: promises and type imports are checked as strictly; values from require()d JS scripts and
  // JSON.parse are `any` by nature, so the no-unsafe-* family is off.
  {
    files: ['test/**/*.ts', 'vitest.config.mts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    ...typedTs,
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },

  // Plain CommonJS: benchmarks, scripts and the test children run by Node directly.
  {
    files: ['**/*.js', '**/*.cjs'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'commonjs', globals: { ...globals.node } },
    rules: {
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
    },
  },
  { files: ['*.mjs'], extends: [js.configs.recommended], languageOptions: { globals: { ...globals.node } } },
);

/** One no-restricted-imports rule per layer: `above` are the lib/ folders (or lib/config) it must not import. */
function layerRules(layers) {
  return Object.entries(layers).map(([files, above]) => ({
    files: [files],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: `^\\.\\./(${above.join('|')})(/|$)`, message: `${files.split('/')[1]}/ is below ${above.join(', ')}: imports point down only (README, Development).` }] }],
    },
  }));
}
