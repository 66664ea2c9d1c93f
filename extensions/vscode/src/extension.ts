/**
 * Entry point. `activate` only wires: one log channel, the server, the session store, the
 * features, the commands; then it starts the server. Everything with logic lives in
 * `common/` and `features/`.
 *
 * With `KEEL_VSCODE_E2E=<results.json>` in the environment, the end-to-end self-test
 * (`dist/selftest.js`) runs after activation and writes its results to that file.
 */

import * as vscode from 'vscode';
import type { Disposable } from './common/events';
import { createLogger } from './common/log';
import { fileResolver } from './common/protocol';
import { KeelServer } from './common/server';
import { SessionStore } from './common/session';
import { createVsCodeApi } from './common/vscodeapi';
import { bundlesForFile, KeelCommands } from './features/commands';
import { DagTreeProvider } from './features/dag';
import { registerDiagnosticsForwarding, type DiagnosticsForwarder } from './features/diagnostics';
import { INFO_SCHEME, InfoDocuments } from './features/info';
import { HunkLensProvider, ReviewFollower } from './features/hunks';
import { BundlePreview, previewAllowed } from './features/preview';
import { DiffCache, PROPOSED_SCHEME, ProposedContentProvider, showBundleDiff } from './features/review';
import { StatusBar } from './features/status';

/** What `activate` returns: the pieces the e2e self-test observes. */
export interface KeelExtensionApi {
  readonly server: KeelServer;
  readonly session: SessionStore;
  readonly commands: KeelCommands;
  readonly follower: ReviewFollower;
  readonly forwarder: DiagnosticsForwarder;
  readonly dag: DagTreeProvider;
  readonly statusBar: StatusBar;
  readonly channel: vscode.LogOutputChannel;
}

let server: KeelServer | undefined;

/**
 * Context keys for the `when` clauses of package.json: `keel.hasPending`, and
 * `keel.activeFilePending` (the active editor shows a file of a pending bundle), which puts
 * Approve / Reject in the title bar of that file's editor and of its review diff.
 */
function registerContextKeys(api: ReturnType<typeof createVsCodeApi>, session: SessionStore): Disposable[] {
  const update = (): void => {
    const pending = session.current?.pending ?? [];
    const active = api.activeEditorUri();
    void api.setContext('keel.hasPending', pending.length > 0);
    void api.setContext('keel.activeFilePending', active !== undefined && bundlesForFile(pending, active).length > 0);
  };
  return [session.onDidChange(update), api.onDidChangeActiveEditor(update)];
}

export async function activate(context: vscode.ExtensionContext): Promise<KeelExtensionApi> {
  const channel = vscode.window.createOutputChannel('Keel', { log: true });
  const log = createLogger(channel, process.env.CI === 'true' || process.env.KEEL_VSCODE_E2E !== undefined);
  const api = createVsCodeApi();
  const add = (...items: Disposable[]): void => { context.subscriptions.push(...items); };
  add(channel);

  server = new KeelServer(api, channel, log);
  const keel = server;
  const resolver = () => fileResolver(api.workspaceRoots()[0]);
  const session = new SessionStore(keel, resolver, log);
  const diffs = new DiffCache(keel, session);
  const proposed = new ProposedContentProvider(api, diffs, log);
  const info = new InfoDocuments(api);
  const dag = new DagTreeProvider(api, session);
  const statusBar = new StatusBar(api, keel, session);
  const { forwarder, disposables } = registerDiagnosticsForwarding({
    api,
    server: keel,
    session,
    scope: () => keel.settings().forwardDiagnostics,
    log,
  });
  const preview = new BundlePreview(api, session, () => previewAllowed(keel.settings().previewInEditor, api.getConfiguration('files').get('autoSave')), log);
  const follower = new ReviewFollower({ api, session, open: (bundle) => showBundleDiff(api, diffs, bundle, undefined, preview), log });
  const hunkLenses = new HunkLensProvider(api, diffs, session);
  let pendingKey = '';
  const commands = new KeelCommands({ api, server: keel, session, diffs, info, approvals: keel.approvals, preview, follower, settings: () => keel.settings(), log });
  keel.editorCommand = (command, args) => commands.fromEditor(command, args);
  keel.pendingBundles = () => (session.current === undefined ? undefined : new Set(session.current.pending.map((b) => b.bundleId)));
  add(
    keel,
    session,
    diffs,
    proposed,
    info,
    dag,
    statusBar,
    ...disposables,
    api.registerTextDocumentContentProvider(PROPOSED_SCHEME, proposed),
    api.registerTextDocumentContentProvider(INFO_SCHEME, info),
    dag.attach(api.createTreeView('keel.dag', dag)),
    ...commands.register(),
    preview,
    follower,
    hunkLenses,
    api.registerCodeLensProvider(PROPOSED_SCHEME, hunkLenses),
    // No lens of a decided bundle stays: the server's lenses are asked for again whenever the
    // pending bundles change (not on every summary).
    session.onDidChange(() => {
      const key = (session.current?.pending ?? []).map((b) => b.bundleId).join(' ');
      if (key !== pendingKey) {
        pendingKey = key;
        keel.refreshCodeLenses();
      }
    }),
    ...registerContextKeys(api, session),
    session.onDidProposeBundle((bundle) => {
      log.info(`Bundle ${bundle.bundleId} proposed for "${bundle.title}"`);
    }),
  );

  await keel.start();

  const exported: KeelExtensionApi = { server: keel, session, commands, follower, forwarder, dag, statusBar, channel };
  const results = process.env.KEEL_VSCODE_E2E;
  if (results !== undefined && results !== '') {
    // Loaded only for the e2e run; see src/test/e2e/selftest.ts.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const selftest = require('./selftest.js') as { run(api: KeelExtensionApi, results: string): Promise<void> };
    void selftest.run(exported, results);
  }
  return exported;
}

export async function deactivate(): Promise<void> {
  await server?.shutdown();
  server = undefined;
}
