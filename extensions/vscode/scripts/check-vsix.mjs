// Checks the packaged .vsix: every image its README links relatively is in the package.
//   node scripts/check-vsix.mjs dist/keel.vsix
// (A README image that is not shipped shows as a broken image wherever the README is shown
// from the installed extension.) Reads the zip's central directory itself: no dependency.
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { inflateRawSync } from 'node:zlib';

function entries(zip) {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip file');
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const out = new Map();
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('bad central directory');
    const method = zip.readUInt16LE(at + 10);
    const size = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extra = zip.readUInt16LE(at + 30);
    const comment = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLength);
    out.set(name, () => {
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + size);
      return method === 0 ? data : inflateRawSync(data);
    });
    at += 46 + nameLength + extra + comment;
  }
  return out;
}

const vsix = process.argv[2];
if (vsix === undefined) {
  console.error('usage: check-vsix.mjs FILE.vsix');
  process.exit(2);
}
const files = entries(readFileSync(vsix));
const readmeName = [...files.keys()].find((n) => n.toLowerCase() === 'extension/readme.md');
if (readmeName === undefined) throw new Error(`${vsix} has no extension/readme.md`);
const readme = files.get(readmeName)().toString('utf8');
const missing = [];
let images = 0;
for (const match of readme.matchAll(/!\[[^\]]*\]\(([^)\s]+)\)|<img\s[^>]*src="([^"]+)"/g)) {
  const target = match[1] ?? match[2];
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // an absolute URL
  images += 1;
  const inside = posix.normalize(posix.join('extension', target));
  if (!files.has(inside)) missing.push(`${target} (${inside})`);
}
if (missing.length > 0) {
  console.error(`check-vsix: the README of ${vsix} links images the package lacks: ${missing.join(', ')}`);
  process.exit(1);
}
console.log(`check-vsix: ${vsix}: all ${images} README image(s) are in the package`);
