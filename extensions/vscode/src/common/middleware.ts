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
    // Approvals from code actions and CodeLens run the server command through the client.
    executeCommand: async (command, args, next): Promise<unknown> =>
      command === ServerCommand.approve
        ? d.approvals.track(async () => (await next(command, args)) as unknown)
        : ((await next(command, args)) as unknown),
  };
}
