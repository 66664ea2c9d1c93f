/**
 * What the features need from the language server, as an interface: the real implementation
 * is `KeelServer` in `server.ts` (over vscode-languageclient); unit tests pass a fake.
 */

import type * as vscode from 'vscode';
import type { Disposable, Event } from './events';
import type { Diagnostic } from './payloads';
import type { CommandArgument, ServerCommandId } from './protocol';

/** The lifecycle of the server process as the user sees it. */
export type ServerState = 'starting' | 'running' | 'stopped' | 'missing' | 'failed';

export interface ServerConnection {
  readonly state: ServerState;
  readonly onDidChangeState: Event<ServerState>;
  /**
   * `workspace/executeCommand` with the command's one JSON argument (docs/reference/lsp.md).
   * The result is the raw JSON: read it with the readers of `protocol.ts`.
   */
  executeCommand<C extends ServerCommandId>(command: C, argument: CommandArgument<C>): Promise<unknown>;
  sendNotification(method: string, params: object): Promise<void>;
  /** A handler for a server notification; it stays registered across server restarts. */
  onNotification(method: string, handler: (params: unknown) => void): Disposable;
  /** VS Code diagnostics in LSP shape, with the running client's converter. */
  toProtocolDiagnostics(diagnostics: readonly vscode.Diagnostic[]): Diagnostic[];
}

/** The server as the commands see it: a connection they can also restart and wait for. */
export interface ServerControl extends ServerConnection {
  /** Stops the running server (if any) and starts a new one, searching for `keel` again. */
  restart(): Promise<void>;
  /** Resolves true once the server runs, false if it did not within `timeoutMs`. */
  whenRunning(timeoutMs: number): Promise<boolean>;
  /** Tells the user why the server is not running, with the buttons that fix it. */
  explainNotRunning(): Promise<void>;
  /** Reveals the "Keel" output channel. */
  showOutput(): void;
}
