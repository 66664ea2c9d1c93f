/**
 * Forwarding the editor's diagnostics to the server as `keel/editorDiagnostics`
 * (docs/reference/lsp.md), which the verifier uses as V_syn.
 *
 * `languages.onDidChangeDiagnostics` is chatty (every keystroke of every language server), so
 * changed URIs are collected and sent after 300 ms of quiet, or at the latest one second after
 * the first change, because the server promises hovers that reflect forwarded diagnostics within
 * a second. Each message carries the full current list for its URI (not a delta), the open
 * document's version so the server can match it to the text it verified, and never Keel's own
 * diagnostics (`source: "keel"`), which would otherwise feed back into V_syn.
 *
 * The server is not always there to be told (activation, Restart Server, no `keel` found, a
 * crash). What could not be sent then is kept, and sent with the current diagnostics of the
 * session's files once the server runs again: a restarted server knows nothing.
 */

import type * as vscode from 'vscode';
import type { ServerConnection } from '../common/connection';
import type { Disposable } from '../common/events';
import type { Logger } from '../common/log';
import type { Diagnostic as ProtocolDiagnostic, EditorDiagnosticsParams } from '../common/payloads';
import { KEEL_DIAGNOSTIC_SOURCE, Notification } from '../common/protocol';
import type { SessionStore } from '../common/session';
import type { ForwardScope } from '../common/settings';
import { isInside, sameUri, uriKey } from '../common/uris';
import type { EditorApi } from '../common/vscodeapi';

/** The `keel/editorDiagnostics` params (generated from the server's schema). */
export type { EditorDiagnosticsParams };

/** Timer functions, injectable so tests drive time by hand. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export const realTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => { clearTimeout(handle as ReturnType<typeof setTimeout>); },
  now: () => Date.now(),
};

/** What the forwarder needs from the editor and the server. */
export interface ForwarderDeps {
  getDiagnostics(uri: string): readonly vscode.Diagnostic[];
  documentVersion(uri: string): number | undefined;
  workspaceRoots(): string[];
  /** The session's files, or undefined when no session lists any. */
  sessionFiles(): readonly string[] | undefined;
  scope(): ForwardScope;
  /** True while the server can be sent to; `convert` and `send` are called only then. */
  ready(): boolean;
  convert(diagnostics: readonly vscode.Diagnostic[]): ProtocolDiagnostic[];
  send(method: string, params: EditorDiagnosticsParams): Promise<void>;
  readonly timers: Timers;
  readonly log: Logger;
}

export const DEBOUNCE_MS = 300;
export const MAX_WAIT_MS = 1000;

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** True for diagnostics Keel did not produce itself. */
export function isForeign(diagnostic: Pick<vscode.Diagnostic, 'source'>): boolean {
  return diagnostic.source !== KEEL_DIAGNOSTIC_SOURCE;
}

/** Decides whether diagnostics of `uri` go to the server, by the `keel.diagnostics.forward` scope. */
export function inScope(uri: string, scope: ForwardScope, sessionFiles: readonly string[] | undefined, roots: readonly string[]): boolean {
  if (scope === 'off' || !/^file:/i.test(uri)) {
    return false;
  }
  if (scope === 'session' && sessionFiles !== undefined && sessionFiles.length > 0) {
    return sessionFiles.some((f) => sameUri(f, uri));
  }
  // No session files known yet (or scope "workspace"): every file of the workspace folders.
  return isInside(uri, roots);
}

export class DiagnosticsForwarder implements Disposable {
  private readonly pending = new Map<string, string>();
  /** URIs that could not be sent (server not running, or the send failed), for the next start. */
  private readonly deferred = new Map<string, string>();
  /** What was last sent per URI, so an unchanged list is not sent twice. */
  private readonly lastSent = new Map<string, string>();
  private timer: unknown;
  private firstChangeAt: number | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly listeners: ((params: EditorDiagnosticsParams) => void)[] = [];

  constructor(private readonly deps: ForwarderDeps) {}

  /** Observers of every message sent (the e2e self-test uses it as evidence). */
  onDidForward(listener: (params: EditorDiagnosticsParams) => void): Disposable {
    this.listeners.push(listener);
    return { dispose: () => { this.listeners.splice(this.listeners.indexOf(listener), 1); } };
  }

  /** Call with the URIs of a `languages.onDidChangeDiagnostics` event. */
  changed(uris: readonly string[]): void {
    const scope = this.deps.scope();
    const files = this.deps.sessionFiles();
    const roots = this.deps.workspaceRoots();
    let any = false;
    for (const uri of uris) {
      if (inScope(uri, scope, files, roots)) {
        this.pending.set(uriKey(uri), uri);
        any = true;
      }
    }
    if (any) {
      this.schedule();
    }
  }

  /**
   * Call when the session's files change: files that just joined the session are sent once with
   * their current diagnostics, since no change event will come for them on its own.
   */
  sessionFilesChanged(previous: readonly string[], current: readonly string[]): void {
    const before = new Set(previous.map(uriKey));
    const joined = current.filter((uri) => !before.has(uriKey(uri)));
    joined.forEach((uri) => this.lastSent.delete(uriKey(uri)));
    if (joined.length > 0) {
      this.changed(joined);
    }
  }

  private schedule(): void {
    const { timers } = this.deps;
    const now = timers.now();
    this.firstChangeAt ??= now;
    if (this.timer !== undefined) {
      timers.clearTimeout(this.timer);
    }
    const delay = Math.max(0, Math.min(DEBOUNCE_MS, this.firstChangeAt + MAX_WAIT_MS - now));
    this.timer = timers.setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delay);
  }

  /** Sends everything pending now; resolves when the notifications were handed to the client. */
  flush(): Promise<void> {
    if (this.timer !== undefined) {
      this.deps.timers.clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.firstChangeAt = undefined;
    const uris = [...this.pending.values()];
    this.pending.clear();
    // Chain flushes so that messages for one URI never overtake each other. The chain never
    // stays rejected: a failed flush must not stop every later one.
    this.flushing = this.flushing
      .then(() => this.sendAll(uris))
      .catch((error: unknown) => { this.deps.log.warn(`Diagnostics forwarding failed: ${describe(error)}`); });
    return this.flushing;
  }

  private async sendAll(uris: readonly string[]): Promise<void> {
    for (const uri of uris) {
      const key = uriKey(uri);
      if (!this.deps.ready()) {
        // Sent with the current diagnostics when the server runs again (serverStarted).
        this.deferred.set(key, uri);
        continue;
      }
      try {
        const foreign = this.deps.getDiagnostics(uri).filter(isForeign);
        const version = this.deps.documentVersion(uri);
        const params: EditorDiagnosticsParams = {
          uri,
          ...(version === undefined ? {} : { version }),
          diagnostics: this.deps.convert(foreign),
        };
        const fingerprint = JSON.stringify(params);
        if (this.lastSent.get(key) === fingerprint) {
          continue;
        }
        await this.deps.send(Notification.editorDiagnostics, params);
        this.lastSent.set(key, fingerprint);
        this.deferred.delete(key);
        this.deps.log.trace(`Forwarded ${String(foreign.length)} diagnostic(s) for ${uri}`);
        this.listeners.forEach((l) => { l(params); });
      } catch (error) {
        this.deferred.set(key, uri);
        this.deps.log.warn(`Could not forward diagnostics for ${uri}: ${describe(error)}`);
      }
    }
  }

  /** URIs waiting for the server to run (for tests and the log). */
  get waiting(): string[] {
    return [...this.deferred.values()];
  }

  /** Forget what was sent (after a server restart every file must be sent again). */
  reset(): void {
    this.lastSent.clear();
  }

  /**
   * Call when the server (re)starts: it knows nothing, so every file that could not be sent
   * while it was down, and every file of the session, is sent with its current diagnostics.
   */
  serverStarted(): void {
    this.reset();
    const uris = [...this.deferred.values(), ...(this.deps.sessionFiles() ?? [])];
    this.deferred.clear();
    this.changed(uris);
  }

  dispose(): void {
    if (this.timer !== undefined) {
      this.deps.timers.clearTimeout(this.timer);
    }
    this.pending.clear();
    this.deferred.clear();
    this.listeners.length = 0;
  }
}

/** What {@link registerDiagnosticsForwarding} wires together. */
export interface ForwardingWiring {
  readonly api: Pick<EditorApi, 'getDiagnostics' | 'documentVersion' | 'workspaceRoots' | 'onDidChangeDiagnostics'>;
  readonly server: ServerConnection;
  readonly session: SessionStore;
  scope(): ForwardScope;
  readonly log: Logger;
  readonly timers?: Timers;
}

/**
 * Creates the forwarder and connects it: diagnostic changes in, session file changes in,
 * server (re)starts send what the new server must know. Returns the forwarder (for its `onDidForward`) and the disposables.
 */
export function registerDiagnosticsForwarding(w: ForwardingWiring): { forwarder: DiagnosticsForwarder; disposables: Disposable[] } {
  const forwarder = new DiagnosticsForwarder({
    getDiagnostics: (uri) => w.api.getDiagnostics(uri),
    documentVersion: (uri) => w.api.documentVersion(uri),
    workspaceRoots: () => w.api.workspaceRoots(),
    sessionFiles: () => (w.session.current === undefined ? undefined : w.session.files()),
    scope: () => w.scope(),
    ready: () => w.server.state === 'running',
    convert: (diagnostics) => w.server.toProtocolDiagnostics(diagnostics),
    send: (method, params) => w.server.sendNotification(method, params),
    timers: w.timers ?? realTimers,
    log: w.log,
  });
  let files: string[] = [];
  let sessionId: string | undefined;
  const disposables: Disposable[] = [
    forwarder,
    w.api.onDidChangeDiagnostics((uris) => { forwarder.changed(uris); }),
    w.session.onDidChange((summary) => {
      if (summary?.sessionId !== sessionId) {
        sessionId = summary?.sessionId;
        files = [];
      }
      const next = w.session.files();
      forwarder.sessionFilesChanged(files, next);
      files = next;
    }),
    w.server.onDidChangeState((state) => {
      if (state === 'running') {
        // What could not be sent while the server was down, and the session's files as the
        // store knows them now, are sent at once; files the new server lists later join
        // through onDidChange.
        forwarder.serverStarted();
        files = w.session.current === undefined ? [] : w.session.files();
      }
    }),
  ];
  return { forwarder, disposables };
}
