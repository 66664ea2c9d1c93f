/**
 * Finding the `keel` executable that serves the language server.
 *
 * Order, as a user of a Python tool extension would expect: the explicit `keel.server.path`
 * setting; else the `keel` script next to the selected interpreter (`keel.python`, or the
 * Python extension's active environment), or `python -m keel` when the package is importable
 * but its script is elsewhere; else `keel` on `PATH`. When nothing is found the caller shows a
 * message with a one-click install; this module only decides, through injected file-system and
 * process probes, so the decision is unit-testable.
 */

import * as path from 'node:path';

/** How the server process is started: `command args... serve --stdio`. */
export interface ServerCommand {
  readonly command: string;
  readonly args: readonly string[];
  /** Where the command came from, for the log and the "not found" message. */
  readonly origin: 'setting' | 'python' | 'python -m' | 'path';
}

/** The result of the search: a command, or why there is none and how to install it. */
export type Resolution =
  | { readonly kind: 'found'; readonly server: ServerCommand; readonly python: string | undefined }
  | { readonly kind: 'missing'; readonly reason: string; readonly python: string | undefined; readonly installCommand: string };

/** The probes the search needs; the real ones touch the disk and spawn `python`. */
export interface ResolverDeps {
  /** `keel.server.path`, already expanded. */
  readonly serverPath: string | undefined;
  /** `keel.python`, already expanded. */
  readonly pythonSetting: string | undefined;
  /** The Python extension's selected interpreter, when that extension is present. */
  activeInterpreter(): Promise<string | undefined>;
  /** True when `file` exists and is executable. */
  isExecutable(file: string): Promise<boolean>;
  /** True when `python -c "import keel"` succeeds. */
  canImportKeel(python: string): Promise<boolean>;
  /** The full path of `name` on PATH, if any. */
  which(name: string): Promise<string | undefined>;
  readonly platform: NodeJS.Platform;
}

/** The arguments that start the language server over stdio (docs/reference/cli.md). */
export const SERVE_ARGS = ['serve', '--stdio'] as const;

/** `~` and `${workspaceFolder}` / `${userHome}` in a path setting. */
export function expandPath(value: string | undefined, home: string, workspaceFolder: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') {
    return undefined;
  }
  let out = value.trim();
  if (out === '~' || out.startsWith('~/')) {
    out = home + out.slice(1);
  }
  out = out.replace(/\$\{userHome\}/g, home);
  if (workspaceFolder !== undefined) {
    out = out.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  }
  return out;
}

/** The `keel` script that pip installs beside `python` (bin/ on POSIX, Scripts\ on Windows). */
export function scriptBesidePython(python: string, platform: NodeJS.Platform): string {
  const dir = path.dirname(python);
  return platform === 'win32' ? path.join(dir, 'keel.exe') : path.join(dir, 'keel');
}

/** The install hint: pip of the selected interpreter when known, else plain pip. */
export function installCommand(python: string | undefined): string {
  return python !== undefined ? `"${python}" -m pip install keel` : 'pip install keel';
}

/** Decides how to start the server; see the module comment for the order. */
export async function resolveServer(deps: ResolverDeps): Promise<Resolution> {
  const python = deps.pythonSetting ?? (await deps.activeInterpreter());
  if (deps.serverPath !== undefined) {
    if (await deps.isExecutable(deps.serverPath)) {
      return { kind: 'found', server: { command: deps.serverPath, args: [...SERVE_ARGS], origin: 'setting' }, python };
    }
    return {
      kind: 'missing',
      reason: `keel.server.path is set to "${deps.serverPath}", which is not an executable file.`,
      python,
      installCommand: installCommand(python),
    };
  }
  if (python !== undefined) {
    const script = scriptBesidePython(python, deps.platform);
    if (await deps.isExecutable(script)) {
      return { kind: 'found', server: { command: script, args: [...SERVE_ARGS], origin: 'python' }, python };
    }
    if (await deps.canImportKeel(python)) {
      return { kind: 'found', server: { command: python, args: ['-m', 'keel', ...SERVE_ARGS], origin: 'python -m' }, python };
    }
  }
  const onPath = await deps.which(deps.platform === 'win32' ? 'keel.exe' : 'keel');
  if (onPath !== undefined) {
    return { kind: 'found', server: { command: onPath, args: [...SERVE_ARGS], origin: 'path' }, python };
  }
  const where = python !== undefined ? `in the environment of ${python} or ` : '';
  return {
    kind: 'missing',
    reason: `The Keel language server (keel) was not found ${where}on PATH.`,
    python,
    installCommand: installCommand(python),
  };
}
