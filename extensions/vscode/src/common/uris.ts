/**
 * URI helpers that work on strings, without `vscode.Uri`, so that matching a file against a
 * session's files is pure and unit-testable.
 *
 * The server and VS Code may spell the same file differently (`%3A` vs `:`, `%20` vs a space,
 * an upper- or lower-case drive letter), so every comparison goes through {@link uriKey}.
 */

import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

/** A canonical form of a URI for equality: scheme lower-cased, percent-escapes decoded. */
export function uriKey(uri: string): string {
  const match = /^([a-zA-Z][\w+.-]*):(.*)$/s.exec(uri);
  if (!match) {
    return uri;
  }
  const scheme = (match[1] ?? '').toLowerCase();
  let rest = match[2] ?? '';
  try {
    rest = decodeURIComponent(rest);
  } catch {
    // A malformed escape: compare the raw text.
  }
  // file:///c:/x and file:///C:/x are the same file on Windows.
  rest = rest.replace(/^\/\/\/([a-zA-Z]):/, (_m, drive: string) => `///${drive.toLowerCase()}:`);
  return `${scheme}:${rest}`;
}

/** True when two URIs name the same resource. */
export function sameUri(a: string, b: string): boolean {
  return uriKey(a) === uriKey(b);
}

/** True for a string that already carries a URI scheme (and is not a Windows drive path). */
export function hasScheme(value: string): boolean {
  return /^[a-zA-Z][\w+.-]+:/.test(value) && !/^[a-zA-Z]:[\\/]/.test(value);
}

/**
 * Turns what the server sent for a file into a URI: URIs pass through; workspace-relative paths
 * (as in `owns` of a plan) are resolved against `root`, a filesystem path.
 */
export function toFileUri(pathOrUri: string, root: string | undefined): string {
  if (hasScheme(pathOrUri)) {
    return pathOrUri;
  }
  const absolute = path.isAbsolute(pathOrUri) || root === undefined ? pathOrUri : path.join(root, pathOrUri);
  return pathToFileURL(absolute).href;
}

/** The filesystem path of a `file:` URI, or undefined for other schemes. */
export function fileUriToPath(uri: string): string | undefined {
  if (!/^file:/i.test(uri)) {
    return undefined;
  }
  try {
    return decodeURIComponent(new URL(uri).pathname).replace(/^\/([a-zA-Z]:)/, '$1');
  } catch {
    return undefined;
  }
}

/** The last segment of a URI's path, for labels. */
export function baseName(uri: string): string {
  const withoutQuery = uri.replace(/[?#].*$/s, '');
  const segment = withoutQuery.split('/').filter((s) => s.length > 0).pop() ?? uri;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** A path relative to the first root that contains the file, for labels; else the base name. */
export function relativeLabel(uri: string, roots: readonly string[]): string {
  const file = fileUriToPath(uri);
  if (file !== undefined) {
    for (const root of roots) {
      const rel = path.relative(root, file);
      if (rel.length > 0 && !rel.startsWith('..') && !path.isAbsolute(rel)) {
        return rel.split(path.sep).join('/');
      }
    }
  }
  return baseName(uri);
}

/** True when the `file:` URI lies inside one of the filesystem `roots`. */
export function isInside(uri: string, roots: readonly string[]): boolean {
  const file = fileUriToPath(uri);
  if (file === undefined) {
    return false;
  }
  return roots.some((root) => {
    const rel = path.relative(root, file);
    return rel.length > 0 && !rel.startsWith('..') && !path.isAbsolute(rel);
  });
}
