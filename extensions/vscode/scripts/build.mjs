// Bundles the extension with esbuild. Usage:
//   node scripts/build.mjs               dist/extension.js + dist/selftest.js, with source maps
//   node scripts/build.mjs --production  the same without source maps (what `vsce package` ships),
//                                        plus dist/README.md and media/ (see packageReadme)
//   node scripts/build.mjs --tests       out/test/unit/*.test.js for `node --test`
//   node scripts/build.mjs --watch       rebuild dist/ on change
// `vscode` is always external: it exists only inside the extension host. The unit-test bundles
// keep it external too, so a logic module that imports it at run time fails its tests loudly.
import * as esbuild from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
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

/**
 * The README the .vsix ships (`vsce package --readme-path dist/README.md`): README.md with every
 * image that lives outside the extension (the screenshots in ../../docs/images/) copied into
 * media/ (generated, not in git) and linked as media/<name>, relative to the installed extension.
 * The README in the repository keeps its links to docs/images/. Returns the shipped image paths.
 */
function packageReadme() {
  const media = join(root, 'media');
  rmSync(media, { recursive: true, force: true });
  const shipped = [];
  const readme = readFileSync(join(root, 'README.md'), 'utf8').replace(/(!\[[^\]]*\]\()([^)\s]+)(\))/g, (whole, open, target, close) => {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) {
      return whole; // an absolute URL
    }
    const source = resolve(root, target);
    if (!existsSync(source)) {
      throw new Error(`README.md links the image ${target}, which does not exist`);
    }
    if (!source.startsWith(`${root}/`)) {
      mkdirSync(media, { recursive: true });
      copyFileSync(source, join(media, basename(source)));
      target = `media/${basename(source)}`;
    }
    shipped.push(target);
    return `${open}${target}${close}`;
  });
  mkdirSync(join(root, 'dist'), { recursive: true });
  writeFileSync(join(root, 'dist', 'README.md'), readme);
  return shipped;
}

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
    if (args.has('--production')) {
      packageReadme();
    }
  }
}
