// ESLint: the recommended JavaScript and typescript-eslint rules, plus the type-aware rules that
// catch bugs a strict typecheck does not (a forgotten promise, a promise where a callback's
// result is ignored, an unhandled member of a union). Formatting is Prettier's (.prettierrc.json),
// not a lint rule. `npm run lint` runs this, the format check and the layer check.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'test/fixtures/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // A promise nobody awaits or catches: its rejection crashes the process (Node's default) or is lost.
      // node:test's test() and describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] },
          ],
        },
      ],
      // An async function given where a void callback is expected (event listeners, timers): its rejection is unhandled.
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // States are unions: a switch over one must handle every member (or say `default`).
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // Errors here restate their cause in their own words; a `cause` would be printed twice (pino's err serializer adds it).
      'preserve-caught-error': 'off',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      // Prettier wraps code at 160 columns; this catches the comments it leaves long (strings may run over: log lines and help texts stay greppable).
      'max-len': ['error', { code: 160, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreUrls: true, ignoreRegExpLiterals: true }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    // Node's globals these scripts use (plain JavaScript: no type information tells them from typos).
    languageOptions: {
      globals: Object.fromEntries(['process', 'console', 'URL', 'Buffer', 'setTimeout', 'clearTimeout', 'fetch', 'AbortSignal'].map((g) => [g, 'readonly'])),
    },
  },
  {
    files: ['src/control/console/static/**/*.js'],
    // The console's script runs in the browser (no Node globals).
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(
        ['window', 'document', 'sessionStorage', 'fetch', 'AbortController', 'TextDecoderStream', 'setTimeout', 'console'].map((g) => [g, 'readonly']),
      ),
    },
  },
);
