/**
 * Hand-written stand-ins for the VS Code API and the language server, for unit tests under
 * plain Node. They record what the code under test did, and answer from scripted values.
 */

import type * as vscode from 'vscode';
import type { ServerControl, ServerState } from '../../common/connection';
import { Emitter, type Disposable } from '../../common/events';
import { describeError, type Logger } from '../../common/log';
import type { Diagnostic } from '../../common/payloads';
import type { Notifications } from '../../common/payloads';
import type { CommandArgument, CommandResult, ServerCommandId } from '../../common/protocol';
import type { EditorApi, PickItem } from '../../common/vscodeapi';

/** A logger that keeps its lines. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add = (level: string) => (message: string) => { lines.push(`${level}: ${message}`); };
  return { lines, trace: add('trace'), debug: add('debug'), info: add('info'), warn: add('warn'), error: (m, e) => { lines.push(`error: ${m}${e === undefined ? '' : `: ${describeError(e)}`}`); } };
}

/** Scripted answers, typed by the generated payloads: a fixture that drifts does not compile. */
export class Answers {
  private readonly map = new Map<string, (argument: never) => unknown>();

  set<C extends ServerCommandId>(command: C, answer: (argument: CommandArgument<C>) => CommandResult<C>): void {
    this.map.set(command, answer);
  }

  get(command: ServerCommandId): ((argument: object) => unknown) | undefined {
    return this.map.get(command) as ((argument: object) => unknown) | undefined;
  }
}

/** A scripted server: answers commands from `answers`, records calls and notifications. */
export class FakeServer implements ServerControl {
  state: ServerState = 'running';
  readonly calls: { command: ServerCommandId; argument: object }[] = [];
  readonly notifications: { method: string; params: object }[] = [];
  readonly answers = new Answers();
  readonly stateEmitter = new Emitter<ServerState>();
  readonly onDidChangeState = this.stateEmitter.event;
  private readonly handlers = new Map<string, ((params: unknown) => void)[]>();
  restarts = 0;
  explained = 0;
  outputShown = 0;

  /** Called with each command as it is sent (to observe order against other effects). */
  onCall: ((command: ServerCommandId) => void) | undefined;

  executeCommand(command: ServerCommandId, argument: object): Promise<unknown> {
    this.calls.push({ command, argument });
    this.onCall?.(command);
    const answer = this.answers.get(command);
    try {
      return Promise.resolve(answer === undefined ? null : answer(argument));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  sendNotification(method: string, params: object): Promise<void> {
    if (this.state !== 'running') {
      return Promise.reject(new Error('the Keel language server is not running'));
    }
    this.notifications.push({ method, params });
    return Promise.resolve();
  }

  onNotification(method: string, handler: (params: unknown) => void): Disposable {
    const list = this.handlers.get(method) ?? [];
    list.push(handler);
    this.handlers.set(method, list);
    return { dispose: () => { this.handlers.set(method, (this.handlers.get(method) ?? []).filter((h) => h !== handler)); } };
  }

  /** Delivers a server notification to the registered handlers. */
  notify<M extends keyof Notifications>(method: M, params: Notifications[M]): void {
    this.deliver(method, params);
  }

  /** Delivers anything, as a server that does not follow the schema would. */
  deliver(method: string, params: unknown): void {
    (this.handlers.get(method) ?? []).forEach((h) => { h(params); });
  }

  setState(state: ServerState): void {
    this.state = state;
    this.stateEmitter.fire(state);
  }

  toProtocolDiagnostics(diagnostics: readonly vscode.Diagnostic[]): Diagnostic[] {
    if (this.state !== 'running') {
      throw new Error('the Keel language server is not running'); // as KeelServer does
    }
    const start = { line: 0, character: 0 };
    return diagnostics.map((d) => ({ range: { start, end: start }, message: d.message, source: d.source, severity: 1 }));
  }

  restart(): Promise<void> {
    this.restarts += 1;
    return Promise.resolve();
  }

  whenRunning(): Promise<boolean> {
    return Promise.resolve(this.state === 'running');
  }

  explainNotRunning(): Promise<void> {
    this.explained += 1;
    return Promise.resolve();
  }

  showOutput(): void {
    this.outputShown += 1;
  }
}

/** A fake `vscode.EventEmitter`. */
export function fakeEventEmitter<T>(): vscode.EventEmitter<T> {
  const emitter = new Emitter<T>();
  return { event: emitter.event, fire: (v: T) => { emitter.fire(v); }, dispose: () => { emitter.dispose(); } };
}

/** A scripted editor: the UI answers come from queues; everything shown is recorded. */
export class FakeApi {
  activeUri: string | undefined;
  roots: string[] = ['/work/ws'];
  readonly messages: string[] = [];
  readonly executed: { id: string; args: unknown[] }[] = [];
  readonly inputAnswers: (string | undefined)[] = [];
  readonly pickAnswers: ((items: readonly PickItem<unknown>[]) => PickItem<unknown> | undefined)[] = [];
  readonly buttonAnswers: (string | undefined)[] = [];
  confirmAnswer = true;
  readonly picksShown: (readonly PickItem<unknown>[])[] = [];
  readonly diagnostics = new Map<string, vscode.Diagnostic[]>();
  readonly versions = new Map<string, number>();
  readonly diagnosticsEmitter = new Emitter<string[]>();
  /** The open tabs (their URIs); closing one removes it and records it in `closedTabs`. */
  tabs: string[][] = [];
  readonly closedTabs: string[][] = [];

  asApi(): EditorApi {
    const answerButton = (message: string): Promise<string | undefined> => {
      this.messages.push(message);
      return Promise.resolve(this.buttonAnswers.shift());
    };
    const api: Partial<EditorApi> = {
      showInformationMessage: answerButton,
      showWarningMessage: answerButton,
      showErrorMessage: answerButton,
      confirm: (message) => { this.messages.push(message); return Promise.resolve(this.confirmAnswer); },
      showInputBox: () => Promise.resolve(this.inputAnswers.shift()),
      showQuickPick: <T>(items: readonly PickItem<T>[]) => {
        this.picksShown.push(items);
        const answer = this.pickAnswers.shift();
        return Promise.resolve(answer === undefined ? undefined : (answer(items as readonly PickItem<unknown>[]) as PickItem<T> | undefined));
      },
      activeEditorUri: () => this.activeUri,
      workspaceRoots: () => this.roots,
      documentVersion: (uri) => this.versions.get(uri),
      getDiagnostics: (uri) => this.diagnostics.get(uri) ?? [],
      onDidChangeDiagnostics: this.diagnosticsEmitter.event,
      executeCommand: <T>(id: string, ...args: unknown[]) => { this.executed.push({ id, args }); return Promise.resolve(undefined as T); },
      registerCommand: () => ({ dispose: () => undefined }),
      editorTabs: () =>
        this.tabs.map((uris) => ({
          uris,
          close: () => {
            this.tabs = this.tabs.filter((t) => t !== uris);
            this.closedTabs.push(uris);
            return Promise.resolve(true);
          },
        })),
      codeLens: (line, title, command, args, tooltip) => ({ range: { start: { line } }, command: { title, command, arguments: args, tooltip } }) as unknown as vscode.CodeLens,
      setContext: () => Promise.resolve(),
      uri: (value) => ({ toString: () => value, path: value.replace(/^[^:]*:/, '').replace(/\?.*$/, '') }) as unknown as vscode.Uri,
      eventEmitter: fakeEventEmitter,
      markdown: (value) => ({ value }) as unknown as vscode.MarkdownString,
      themeIcon: (id, color) => ({ id, color }),
      themeColor: (id) => ({ id }),
      treeItem: (label, collapsible) => ({ label, collapsibleState: collapsible }) as unknown as vscode.TreeItem,
    };
    return api as EditorApi;
  }
}

/** A diagnostic as VS Code would hold it (only the fields the extension reads). */
export function diagnostic(message: string, source?: string): vscode.Diagnostic {
  return { message, source, severity: 0, range: {} } as unknown as vscode.Diagnostic;
}

/** Timers driven by hand: `advance(ms)` runs what falls due. */
export class ManualTimers {
  private time = 0;
  private nextId = 1;
  private readonly due = new Map<number, { at: number; callback: () => void }>();

  setTimeout = (callback: () => void, ms: number): unknown => {
    const id = this.nextId++;
    this.due.set(id, { at: this.time + ms, callback });
    return id;
  };

  clearTimeout = (handle: unknown): void => {
    this.due.delete(handle as number);
  };

  now = (): number => this.time;

  /** Moves time forward, running callbacks in order of their due time. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const next = [...this.due.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (next === undefined) {
        break;
      }
      this.due.delete(next[0]);
      this.time = next[1].at;
      next[1].callback();
    }
    this.time = end;
  }

  get pending(): number {
    return this.due.size;
  }
}

/** Lets promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    await Promise.resolve();
  }
}
