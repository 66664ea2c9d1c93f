// Bundles the extension with esbuild. Usage:
//   node scripts/build.mjs               dist/extension.js + dist/selftest.js, with source maps
//   node scripts/build.mjs --production  the same without source maps (what `vsce package` ships)
//   node scripts/build.mjs --tests       out/test/unit/*.test.js for `node --test`
//   node scripts/build.mjs --watch       rebuild dist/ on change
// `vscode` is always external: it exists only inside the extension host. The unit-test bundles
// keep it external too, so a logic module that imports it at run time fails its tests loudly.
import * as esbuild from 'esbuild';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // ./selftest.js is loaded at run time by extension.ts, only for the e2e run.
  external: ['vscode', './selftest.js'],
  logLevel: 'warning',
  absWorkingDir: root,
};

if (args.has('--tests')) {
  const dir = join(root, 'src', 'test', 'unit');
  const entryPoints = readdirSync(dir)
    .filter((name) => name.endsWith('.test.ts'))
    .map((name) => join(dir, name));
  await esbuild.build({ ...common, entryPoints, outdir: join(root, 'out', 'test', 'unit'), sourcemap: 'inline' });
} else {
  const options = {
    ...common,
    entryPoints: { extension: 'src/extension.ts', selftest: 'src/test/e2e/selftest.ts' },
    outdir: join(root, 'dist'),
    sourcemap: !args.has('--production'),
    minify: args.has('--production'),
    keepNames: true,
  };
  if (args.has('--watch')) {
    const ctx = await esbuild.context(options);
    await ctx.watch();
  } else {
    await esbuild.build(options);
  }
}
