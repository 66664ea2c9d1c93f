/**
 * The `LanguageClient` options that carry Keel's settings and approvals, without the `vscode`
 * module at run time (so unit tests run the real thing; `server.ts` plugs them into the client).
 *
 * Settings reach the server in the `keel.toml` shape of docs/reference/configuration.md, three ways:
 * `initializationOptions`; the answer to `workspace/configuration` for section `keel` (or a part
 * of it); and `workspace/didChangeConfiguration` when one of {@link PUSH_KEYS} changes. The last
 * is vscode-languageclient's own configuration sync, told to watch exactly those keys
 * (`synchronize.configurationSection`); its default message would carry VS Code's raw settings
 * object, so the middleware sends the `keel.toml` shape instead. A change of another `keel.*`
 * setting is not the server's business (`keel.review.*`, `keel.diagnostics.forward`,
 * `keel.trace.server`) or restarts it (`keel.server.path`, `keel.python`).
 */

import type { Middleware } from 'vscode-languageclient';
import { CancellationToken, DidChangeConfigurationNotification } from 'vscode-languageserver-protocol';
import { withoutConfirmation, type ApprovalTracker } from './edits';
import { ServerCommand } from './protocol';
import { configurationFor, PUSH_KEYS, toServerSettings, type KeelSettings } from './settings';

export interface MiddlewareDeps {
  /** The validated settings (for a resource scope, when given). */
  settings(scopeUri?: string): KeelSettings;
  /** Sends a notification through the client the middleware belongs to. */
  sendNotification(method: string, params: object): Promise<void>;
  readonly approvals: ApprovalTracker;
  /**
   * Runs a server command that the editor invoked (a CodeLens, a hover link) through the
   * extension's own flow; undefined when the client should send it as it is.
   */
  editorCommand?(command: string, args: readonly unknown[]): Promise<unknown> | undefined;
  /** The ids of the pending bundles as last known; undefined before any summary. */
  pendingBundles?(): ReadonlySet<string> | undefined;
}

interface LensLike {
  readonly command?: { readonly arguments?: readonly unknown[] };
}

/**
 * The lenses that act on a bundle still pending (`pending`: its ids; undefined keeps every
 * lens). A lens whose argument names another bundle is stale: the bundle was decided or
 * replaced after the lenses were computed, so it is dropped rather than shown.
 */
export function dropStaleLenses<L extends LensLike>(lenses: readonly L[] | null | undefined, pending: ReadonlySet<string> | undefined): L[] {
  return (lenses ?? []).filter((lens) => {
    const argument = lens.command?.arguments?.[0];
    const bundleId = typeof argument === 'object' && argument !== null ? (argument as { bundleId?: unknown }).bundleId : undefined;
    return pending === undefined || typeof bundleId !== 'string' || pending.has(bundleId);
  });
}

/** `synchronize` of the client options: which settings' changes are pushed to the server. */
export function synchronizeOptions(): { configurationSection: string[] } {
  return { configurationSection: [...PUSH_KEYS] };
}

/** True for `keel` and the sections below it. */
export function isKeelSection(section: string): boolean {
  return section === 'keel' || section.startsWith('keel.');
}

export function keelMiddleware(d: MiddlewareDeps): Middleware {
  return {
    workspace: {
      configuration: async (params, token, next) => {
        const answers: unknown = await next(params, token);
        const list = Array.isArray(answers) ? (answers as unknown[]) : [];
        return params.items.map((item, i) => {
          const ours = configurationFor(item.section, toServerSettings(d.settings(item.scopeUri)));
          return ours === undefined ? list[i] : ours;
        });
      },
      didChangeConfiguration: async (sections, next) => {
        if (sections?.some(isKeelSection) !== true) {
          await next(sections);
          return;
        }
        // Read now, not when the client was made: this is the changed value.
        await d.sendNotification(DidChangeConfigurationNotification.method, { settings: { keel: toServerSettings(d.settings()) } });
      },
      handleApplyEdit: (params, next) =>
        next(d.approvals.active && !d.settings().confirmEdits ? withoutConfirmation(params) : params, CancellationToken.None),
    },
    // Approvals and rejections from CodeLens and hover links take the palette commands' flow;
    // what the extension leaves to the client (per-file decisions from code actions) is sent
    // as it is, an approval still counted as one.
    executeCommand: async (command, args, next): Promise<unknown> => {
      const routed = d.editorCommand?.(command, args as unknown[]);
      if (routed !== undefined) {
        return routed;
      }
      return command === ServerCommand.approve
        ? d.approvals.track(async () => (await next(command, args)) as unknown)
        : ((await next(command, args)) as unknown);
    },
    provideCodeLenses: async (document, token, next) => dropStaleLenses(await next(document, token), d.pendingBundles?.()),
  };
}
