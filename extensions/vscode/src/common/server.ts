/**
 * Creating, starting and restarting the `LanguageClient` for `keel serve --stdio`.
 *
 * One client per window. Its output and its LSP trace go to the single "Keel" log channel
 * (`keel.trace.server` sets the trace level; vscode-languageclient reads it by the client id).
 * The settings reach the server three ways, always in the `keel.toml` shape of
 * docs/reference/configuration.md: as `initializationOptions`, as the answer to
 * `workspace/configuration` for section `keel`, and pushed with `workspace/didChangeConfiguration` when a setting the server reads
 * changes (the middleware and sync options of `middleware.ts`).
 *
 * Notification handlers registered here outlive restarts: each new client gets them all.
 */

import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  CodeLensRequest,
  ExecuteCommandRequest,
  LanguageClient,
  RevealOutputChannelOn,
  State,
  type LanguageClientOptions,
  type ServerOptions,
} from 'vscode-languageclient/node';
import type { ServerControl, ServerState } from './connection';
import { ApprovalTracker } from './edits';
import { Emitter, type Disposable } from './events';
import { describeError, type Logger } from './log';
import type { Diagnostic } from './payloads';
import { ServerCommand, type CommandArgument, type ServerCommandId } from './protocol';
import { expandPath, resolveServer, type Resolution } from './python';
import { keelMiddleware, synchronizeOptions } from './middleware';
import { readSettings, RESTART_KEYS, toServerSettings, type KeelSettings } from './settings';
import type { EditorApi } from './vscodeapi';
import { NotificationProgressFeature, type OpenProgress } from '../features/progress';

/** The part of the Python extension's API used to find the selected interpreter. */
interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { path: string } | undefined;
    resolveEnvironment(env: { path: string } | string): Promise<{ executable?: { uri?: vscode.Uri } } | undefined>;
    onDidChangeActiveEnvironmentPath?: vscode.Event<unknown>;
  };
}

const CLIENT_ID = 'keel';
const CLIENT_NAME = 'Keel';

export class KeelServer implements ServerControl, Disposable {
  private client: LanguageClient | undefined;
  private current: ServerState = 'stopped';
  private resolution: Resolution | undefined;
  private readonly stateEmitter = new Emitter<ServerState>();
  private readonly handlers = new Map<string, Set<(params: unknown) => void>>();
  private readonly subscriptions: Disposable[] = [];
  private readonly reportedProblems = new Set<string>();
  private restarting: Promise<void> = Promise.resolve();
  private intentionalStop = false;

  readonly onDidChangeState = this.stateEmitter.event;
  /** Approvals in flight, for the one-approval rule (see `edits.ts`). */
  readonly approvals = new ApprovalTracker();
  /** The last server progresses shown, and where (the e2e self-test reports them). */
  readonly progressShown: { title: string; place: string; cancellable: boolean }[] = [];
  /**
   * Where the server commands the editor runs from CodeLenses and hover links go first (the
   * palette commands' flow, set by `extension.ts`); see `keelMiddleware`.
   */
  editorCommand: ((command: string, args: readonly unknown[]) => Promise<unknown> | undefined) | undefined;
  /** The pending bundles as the extension last knew them: lenses of others are stale. */
  pendingBundles: (() => ReadonlySet<string> | undefined) | undefined;

  constructor(
    private readonly api: EditorApi,
    private readonly channel: vscode.LogOutputChannel,
    private readonly log: Logger,
  ) {
    this.subscriptions.push(
      api.onDidChangeConfiguration((event) => {
        if (RESTART_KEYS.some((key) => event.affectsConfiguration(key))) {
          this.log.info('The server path or Python setting changed: restarting the server.');
          void this.restart();
        }
      }),
    );
    void this.watchInterpreter();
  }

  get state(): ServerState {
    return this.current;
  }

  private setState(state: ServerState): void {
    if (state !== this.current) {
      this.current = state;
      this.stateEmitter.fire(state);
    }
  }

  /** The validated settings for `scope`; problems are shown once each. */
  settings(scope?: string): KeelSettings {
    const config = this.api.getConfiguration('keel', scope);
    const { settings, problems } = readSettings((key) => config.get(key));
    for (const problem of problems) {
      if (!this.reportedProblems.has(problem.message)) {
        this.reportedProblems.add(problem.message);
        this.log.warn(problem.message);
        void this.api.showWarningMessage(`Keel: ${problem.message}. The setting is ignored.`);
      }
    }
    return settings;
  }

  // -- starting and stopping -------------------------------------------------------------------

  /** Starts the server (searching for `keel` first). Never throws: failures become the state. */
  async start(): Promise<void> {
    this.setState('starting');
    const roots = this.api.workspaceRoots();
    const settings = this.settings();
    const home = os.homedir();
    this.resolution = await resolveServer({
      serverPath: expandPath(settings.serverPath, home, roots[0]),
      pythonSetting: expandPath(settings.python, home, roots[0]),
      activeInterpreter: () => this.activeInterpreter(),
      isExecutable: async (file) => access(file, constants.X_OK).then(() => true, () => false),
      canImportKeel: (python) =>
        new Promise((resolve) => {
          execFile(python, ['-c', 'import keel'], { timeout: 15_000 }, (error) => { resolve(error === null); });
        }),
      which: (name) => which(name),
      platform: process.platform,
    });
    if (this.resolution.kind === 'missing') {
      this.log.error(this.resolution.reason);
      this.setState('missing');
      void this.explainNotRunning();
      return;
    }
    const { command, args, origin } = this.resolution.server;
    this.log.info(`Starting the Keel server (${origin}): ${command} ${args.join(' ')}`);
    this.log.info(`Settings sent to the server: ${JSON.stringify(toServerSettings(settings))}`);
    const client = this.createClient(command, [...args], roots[0]);
    this.client = client;
    try {
      await client.start();
      this.setState('running');
    } catch (error) {
      this.log.error('The Keel server did not start', error);
      this.setState('failed');
      void this.explainNotRunning();
    }
  }

  private createClient(command: string, args: string[], cwd: string | undefined): LanguageClient {
    const owner: { client?: LanguageClient } = {}; // the client these options belong to
    const serverOptions: ServerOptions = { command, args, options: { ...(cwd === undefined ? {} : { cwd }), env: { ...process.env } } };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file' }],
      outputChannel: this.channel,
      traceOutputChannel: this.channel,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      diagnosticCollectionName: 'keel',
      initializationOptions: () => toServerSettings(this.settings()),
      synchronize: synchronizeOptions(),
      markdown: { isTrusted: { enabledCommands: [...Object.values(ServerCommand), 'keel.showPendingDiff', 'keel.approveBundle', 'keel.rejectBundle'] }, supportThemeIcons: true },
      middleware: keelMiddleware({
        settings: (scope) => this.settings(scope),
        sendNotification: (method, params) => owner.client?.sendNotification(method, params) ?? Promise.resolve(),
        approvals: this.approvals,
        editorCommand: (command, args) => this.editorCommand?.(command, args),
        pendingBundles: () => this.pendingBundles?.(),
      }),
    };
    const client = new LanguageClient(CLIENT_ID, CLIENT_NAME, serverOptions, clientOptions);
    owner.client = client;
    const openProgress: OpenProgress = (options, run) => {
      this.progressShown.push({ title: options.title, place: options.place, cancellable: options.cancellable });
      this.progressShown.splice(0, Math.max(0, this.progressShown.length - 20));
      void this.api.withProgress(
        {
          location: options.place === 'notification' ? this.api.ProgressLocation.Notification : this.api.ProgressLocation.Window,
          title: options.title,
          cancellable: options.cancellable,
        },
        (progress, token) => run(progress, (listener) => { token.onCancellationRequested(listener); }),
      );
    };
    client.registerFeature(new NotificationProgressFeature(client, openProgress));
    for (const [method, handlers] of this.handlers) {
      client.onNotification(method, (params: unknown) => { handlers.forEach((h) => { h(params); }); });
    }
    client.onDidChangeState((event) => {
      if (this.client !== client) {
        return;
      }
      if (event.newState === State.Running) {
        this.setState('running');
      } else if (event.newState === State.Starting) {
        this.setState('starting');
      } else {
        this.setState(this.intentionalStop ? 'stopped' : 'failed');
      }
    });
    return client;
  }

  /** Stops the running client, if any. */
  async stop(): Promise<void> {
    const client = this.client;
    if (client === undefined) {
      return;
    }
    this.intentionalStop = true;
    try {
      await client.stop(5000);
    } catch (error) {
      this.log.warn(`The Keel server did not stop cleanly: ${describeError(error)}`);
    } finally {
      this.intentionalStop = false;
      if (this.client === client) {
        this.client = undefined;
      }
      this.setState('stopped');
    }
  }

  restart(): Promise<void> {
    this.restarting = this.restarting.then(async () => {
      await this.stop();
      await this.start();
    });
    return this.restarting;
  }

  whenRunning(timeoutMs: number): Promise<boolean> {
    if (this.current === 'running') {
      return Promise.resolve(true);
    }
    if (this.current === 'missing' || this.current === 'failed') {
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => { sub.dispose(); resolve(this.current === 'running'); }, timeoutMs);
      const sub = this.onDidChangeState((state) => {
        if (state === 'running' || state === 'missing' || state === 'failed') {
          clearTimeout(timer);
          sub.dispose();
          resolve(state === 'running');
        }
      });
    });
  }

  async explainNotRunning(): Promise<void> {
    if (this.current === 'missing' && this.resolution?.kind === 'missing') {
      const install = 'Install Keel';
      const choose = 'Set Server Path';
      const choice = await this.api.showErrorMessage(
        `${this.resolution.reason} Install it into the selected Python with \`${this.resolution.installCommand}\`, or set keel.server.path.`,
        install,
        choose,
        'Show Output',
      );
      if (choice === install) {
        this.api.runInTerminal('Install Keel', this.resolution.installCommand);
        const restart = await this.api.showInformationMessage('Keel: when the install has finished, restart the server.', 'Restart Server');
        if (restart !== undefined) {
          await this.restart();
        }
      } else if (choice === choose) {
        await this.api.executeCommand('workbench.action.openSettings', 'keel.server.path');
      } else if (choice !== undefined) {
        this.showOutput();
      }
      return;
    }
    const choice = await this.api.showErrorMessage(
      this.current === 'starting' ? 'Keel: the server is still starting.' : 'Keel: the language server is not running.',
      'Restart Server',
      'Show Output',
    );
    if (choice === 'Restart Server') {
      await this.restart();
    } else if (choice === 'Show Output') {
      this.showOutput();
    }
  }

  showOutput(): void {
    this.channel.show(true);
  }

  // -- talking to the server -------------------------------------------------------------------

  private running(): LanguageClient {
    if (this.client === undefined || this.current !== 'running') {
      throw new Error('the Keel language server is not running');
    }
    return this.client;
  }

  async executeCommand<C extends ServerCommandId>(command: C, argument: CommandArgument<C>): Promise<unknown> {
    const client = this.running();
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [argument] });
  }

  /**
   * Asks VS Code for the server's CodeLenses again, in every open file (as the server's
   * `workspace/codeLens/refresh` does): called when the pending bundles change, so no lens of
   * a decided bundle stays on screen.
   */
  refreshCodeLenses(): void {
    const client = this.current === 'running' ? this.client : undefined;
    if (client === undefined) {
      return;
    }
    const feature = client.getFeature(CodeLensRequest.method);
    const emitters = new Set<vscode.EventEmitter<void>>();
    for (const document of vscode.workspace.textDocuments) {
      const provider = feature.getProvider(document);
      if (provider !== undefined) {
        emitters.add(provider.onDidChangeCodeLensEmitter);
      }
    }
    emitters.forEach((emitter) => { emitter.fire(); });
  }

  async sendNotification(method: string, params: object): Promise<void> {
    await this.running().sendNotification(method, params);
  }

  onNotification(method: string, handler: (params: unknown) => void): Disposable {
    let set = this.handlers.get(method);
    if (set === undefined) {
      set = new Set();
      this.handlers.set(method, set);
      const handlers = set;
      this.client?.onNotification(method, (params: unknown) => { handlers.forEach((h) => { h(params); }); });
    }
    set.add(handler);
    return { dispose: () => this.handlers.get(method)?.delete(handler) };
  }

  toProtocolDiagnostics(diagnostics: readonly vscode.Diagnostic[]): Diagnostic[] {
    const client = this.running();
    // Keel reads a diagnostic's message as text: a Markdown message is sent as its source text.
    return client.code2ProtocolConverter
      .asDiagnosticsSync([...diagnostics])
      .map((d) => ({ ...d, message: typeof d.message === 'string' ? d.message : d.message.value }));
  }

  // -- the Python extension ----------------------------------------------------------------------

  private async pythonApi(): Promise<PythonExtensionApi | undefined> {
    const extension = vscode.extensions.getExtension<PythonExtensionApi>('ms-python.python');
    if (extension === undefined) {
      return undefined;
    }
    try {
      return extension.isActive ? extension.exports : await extension.activate();
    } catch (error) {
      this.log.warn(`The Python extension did not activate: ${describeError(error)}`);
      return undefined;
    }
  }

  private async activeInterpreter(): Promise<string | undefined> {
    const environments = (await this.pythonApi())?.environments;
    if (environments === undefined) {
      return undefined;
    }
    try {
      const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
      const active = environments.getActiveEnvironmentPath(folder);
      if (active === undefined) {
        return undefined;
      }
      const resolved = await environments.resolveEnvironment(active);
      return resolved?.executable?.uri?.fsPath ?? active.path;
    } catch (error) {
      this.log.warn(`Could not read the selected Python interpreter: ${describeError(error)}`);
      return undefined;
    }
  }

  /** Restarts the server when the user picks another interpreter (unless a path setting pins it). */
  private async watchInterpreter(): Promise<void> {
    const environments = (await this.pythonApi())?.environments;
    const event = environments?.onDidChangeActiveEnvironmentPath;
    if (event === undefined) {
      return;
    }
    this.subscriptions.push(
      event(() => {
        const settings = this.settings();
        if (settings.serverPath === undefined && settings.python === undefined) {
          this.log.info('The selected Python interpreter changed: restarting the server.');
          void this.restart();
        }
      }),
    );
  }

  dispose(): void {
    this.subscriptions.forEach((s) => { s.dispose(); });
    this.stateEmitter.dispose();
  }

  /** Stops the server for `deactivate`. */
  async shutdown(): Promise<void> {
    await this.stop();
    this.dispose();
  }
}

/** The full path of `name` on PATH (PATHEXT is not needed: we look for `keel` / `keel.exe`). */
async function which(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') {
      continue;
    }
    const candidate = path.join(dir, name);
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) {
      return candidate;
    }
  }
  return undefined;
}
