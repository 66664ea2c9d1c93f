// Flat ESLint config: typed linting of the extension's TypeScript, run with --max-warnings=0.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'out/**', 'node_modules/**', 'scripts/**', 'tests/**', '*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // Promises must be awaited or explicitly voided: a dropped rejection is a silent failure.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // The server never sees stdout of the extension host; logging goes to the output channel.
      'no-console': ['error', { allow: ['warn', 'error'] }],
      eqeqeq: ['error', 'always'],
      curly: ['error', 'all'],
    },
  },
  {
    files: ['src/test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-floating-promises': 'off',
      // Assertions narrow types, after which optional chains in later checks look redundant to
      // the linter; in tests they keep a failing run readable instead of crashing on undefined.
      '@typescript-eslint/no-unnecessary-condition': 'off',
      // Fakes stand in for vscode classes (ThemeIcon, EventEmitter) by shape: that is their job.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
    },
  },
);
