/**
 * The only module (with `server.ts`, `extension.ts` and the e2e self-test) that touches the
 * `vscode` namespace at run time. Everything else receives an {@link EditorApi} and imports
 * `vscode` for types only, so the logic runs under plain Node with a hand-written stub.
 *
 * Each member is a thin pass-through; the few that do more (string URIs instead of `Uri`
 * objects, the active editor's resource) say so.
 */

import * as vscode from 'vscode';
import type { Disposable, Event } from './events';

/** A quick-pick item carrying a value. */
export interface PickItem<T> extends vscode.QuickPickItem {
  readonly value: T;
}

/** An open editor tab, as far as the review cares: the URIs (strings) it shows, and how to close it. */
export interface EditorTab {
  /** Every document of the tab: a text editor's one, both sides of a diff, each pair of a multi-file diff. */
  readonly uris: readonly string[];
  close(): Thenable<boolean>;
}

/** The subset of the VS Code API that the extension's features use. */
export interface EditorApi {
  // -- window ---------------------------------------------------------------------------------
  showInformationMessage(message: string, ...buttons: string[]): Thenable<string | undefined>;
  showWarningMessage(message: string, ...buttons: string[]): Thenable<string | undefined>;
  showErrorMessage(message: string, ...buttons: string[]): Thenable<string | undefined>;
  /** A modal confirmation; resolves true only when `confirm` was clicked. */
  confirm(message: string, detail: string, confirm: string): Thenable<boolean>;
  showInputBox(options: vscode.InputBoxOptions): Thenable<string | undefined>;
  showQuickPick<T>(items: readonly PickItem<T>[], options: vscode.QuickPickOptions): Thenable<PickItem<T> | undefined>;
  /** The URI (as a string) of the active text editor's document, if any. */
  activeEditorUri(): string | undefined;
  /** Fires when the active text editor changes. */
  onDidChangeActiveEditor: Event<string | undefined>;
  /** Runs `command` in a new terminal named `name` and shows it. */
  runInTerminal(name: string, command: string): void;
  withProgress<R>(options: vscode.ProgressOptions, task: (progress: vscode.Progress<{ message?: string; increment?: number }>, token: vscode.CancellationToken) => Thenable<R>): Thenable<R>;
  createStatusBarItem(id: string, alignment: 'left' | 'right', priority: number): vscode.StatusBarItem;
  createTreeView<T>(id: string, provider: vscode.TreeDataProvider<T>): vscode.TreeView<T>;
  /** Every open editor tab of every group. */
  editorTabs(): EditorTab[];

  // -- workspace ------------------------------------------------------------------------------
  /** Filesystem paths of the workspace folders. */
  workspaceRoots(): string[];
  /** The version of an open document, or undefined when it is not open. */
  documentVersion(uri: string): number | undefined;
  /** The text of an open document, or undefined when it is not open. */
  documentText(uri: string): string | undefined;
  /** Replaces a document's whole text as an unsaved edit; `create` first creates the (empty) file. */
  replaceText(uri: string, text: string, create: boolean): Promise<boolean>;
  /** Reloads a dirty document from disk (VS Code's Revert File acts on the active editor only). */
  revert(uri: string): Promise<void>;
  /** Deletes a file that is empty on disk. */
  deleteIfEmpty(uri: string): Promise<void>;
  /** A file's text on disk (UTF-8), or undefined when it does not exist or is not UTF-8. */
  diskText(uri: string): Promise<string | undefined>;
  getConfiguration(section: string, scope?: string): vscode.WorkspaceConfiguration;
  onDidChangeConfiguration: Event<vscode.ConfigurationChangeEvent>;
  registerTextDocumentContentProvider(scheme: string, provider: vscode.TextDocumentContentProvider): Disposable;
  openTextDocument(uri: string): Thenable<vscode.TextDocument>;
  showTextDocument(document: vscode.TextDocument, options?: vscode.TextDocumentShowOptions): Thenable<vscode.TextEditor>;

  // -- languages ------------------------------------------------------------------------------
  getDiagnostics(uri: string): vscode.Diagnostic[];
  /** Fires the URIs (as strings) whose diagnostics changed, from any source. */
  onDidChangeDiagnostics: Event<string[]>;
  setTextDocumentLanguage(document: vscode.TextDocument, languageId: string): Thenable<vscode.TextDocument>;
  /** A CodeLens provider for the documents of one URI scheme. */
  registerCodeLensProvider(scheme: string, provider: vscode.CodeLensProvider): Disposable;

  // -- commands -------------------------------------------------------------------------------
  registerCommand(id: string, handler: (...args: unknown[]) => unknown): Disposable;
  executeCommand<T = unknown>(id: string, ...args: unknown[]): Thenable<T>;
  setContext(key: string, value: unknown): Thenable<unknown>;

  // -- value factories (classes that must be real `vscode` instances) ---------------------------
  uri(value: string): vscode.Uri;
  themeIcon(id: string, color?: string): vscode.ThemeIcon;
  themeColor(id: string): vscode.ThemeColor;
  treeItem(label: string, collapsible: 'none' | 'expanded'): vscode.TreeItem;
  markdown(value: string): vscode.MarkdownString;
  /** A CodeLens at the start of `line` (0-based) that runs `command` with `args`. */
  codeLens(line: number, title: string, command: string, args: unknown[], tooltip?: string): vscode.CodeLens;
  /** A `vscode.EventEmitter`, for providers whose change events VS Code subscribes to. */
  eventEmitter<T>(): vscode.EventEmitter<T>;
  readonly ProgressLocation: typeof vscode.ProgressLocation;
}

/** The open document with this URI (compared in VS Code's own spelling). */
function openDocument(uri: string): vscode.TextDocument | undefined {
  const wanted = vscode.Uri.parse(uri).toString();
  return vscode.workspace.textDocuments.find((d) => d.uri.toString() === wanted);
}

/** A URI as a string: a `keel-proposed:` one unencoded, so its query reads back (as `vscode.Uri` arguments of commands are). */
function uriText(uri: vscode.Uri): string {
  return uri.scheme === 'keel-proposed' ? uri.toString(true) : uri.toString();
}

/** The URIs a tab shows; a multi-file diff's pairs are read by shape, as 1.91's API has no class for it. */
function tabUris(tab: vscode.Tab): string[] {
  const input: unknown = tab.input;
  if (input instanceof vscode.TabInputTextDiff) {
    return [uriText(input.original), uriText(input.modified)];
  }
  if (input instanceof vscode.TabInputText) {
    return [uriText(input.uri)];
  }
  const pairs = (input as { textDiffs?: unknown } | undefined)?.textDiffs;
  if (Array.isArray(pairs)) {
    return (pairs as { original?: vscode.Uri; modified?: vscode.Uri }[]).flatMap((pair) => [pair.original, pair.modified]).filter((u): u is vscode.Uri => u !== undefined).map(uriText);
  }
  return [];
}

/** The real API. */
export function createVsCodeApi(): EditorApi {
  return {
    showInformationMessage: (message, ...buttons) => vscode.window.showInformationMessage(message, ...buttons),
    showWarningMessage: (message, ...buttons) => vscode.window.showWarningMessage(message, ...buttons),
    showErrorMessage: (message, ...buttons) => vscode.window.showErrorMessage(message, ...buttons),
    confirm: (message, detail, confirm) =>
      vscode.window.showWarningMessage(message, { modal: true, detail }, confirm).then((choice) => choice === confirm),
    showInputBox: (options) => vscode.window.showInputBox(options),
    showQuickPick: (items, options) => vscode.window.showQuickPick(items, options),
    activeEditorUri: () => vscode.window.activeTextEditor?.document.uri.toString(),
    onDidChangeActiveEditor: (listener) => vscode.window.onDidChangeActiveTextEditor((editor) => { listener(editor?.document.uri.toString()); }),
    runInTerminal: (name, command) => {
      const terminal = vscode.window.createTerminal({ name });
      terminal.show();
      terminal.sendText(command, true);
    },
    withProgress: (options, task) => vscode.window.withProgress(options, task),
    createStatusBarItem: (id, alignment, priority) =>
      vscode.window.createStatusBarItem(id, alignment === 'left' ? vscode.StatusBarAlignment.Left : vscode.StatusBarAlignment.Right, priority),
    createTreeView: (id, provider) => vscode.window.createTreeView(id, { treeDataProvider: provider, showCollapseAll: true }),
    editorTabs: () =>
      vscode.window.tabGroups.all.flatMap((group) => group.tabs).map((tab) => ({ uris: tabUris(tab), close: () => vscode.window.tabGroups.close(tab) })),

    workspaceRoots: () => (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath),
    documentVersion: (uri) => openDocument(uri)?.version,
    documentText: (uri) => openDocument(uri)?.getText(),
    replaceText: async (uri, text, create) => {
      const target = vscode.Uri.parse(uri);
      const edit = new vscode.WorkspaceEdit();
      if (create) {
        edit.createFile(target, { ignoreIfExists: true });
        edit.insert(target, new vscode.Position(0, 0), text);
      } else {
        const document = await vscode.workspace.openTextDocument(target);
        const end = document.lineAt(document.lineCount - 1).range.end;
        edit.replace(target, new vscode.Range(new vscode.Position(0, 0), end), text);
      }
      return vscode.workspace.applyEdit(edit);
    },
    revert: async (uri) => {
      const document = openDocument(uri);
      if (document === undefined || !document.isDirty) {
        return;
      }
      const previous = vscode.window.activeTextEditor;
      await vscode.window.showTextDocument(document, { preview: false, preserveFocus: false });
      await vscode.commands.executeCommand('workbench.action.files.revert');
      if (previous !== undefined && previous.document !== document) {
        await vscode.window.showTextDocument(previous.document, { viewColumn: previous.viewColumn, preserveFocus: false });
      }
    },
    deleteIfEmpty: async (uri) => {
      const target = vscode.Uri.parse(uri);
      const stat = await Promise.resolve(vscode.workspace.fs.stat(target)).catch(() => undefined);
      if (stat !== undefined && stat.size === 0) {
        await vscode.workspace.fs.delete(target);
      }
    },
    diskText: async (uri) => {
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(await vscode.workspace.fs.readFile(vscode.Uri.parse(uri)));
      } catch {
        return undefined;
      }
    },
    getConfiguration: (section, scope) => vscode.workspace.getConfiguration(section, scope === undefined ? undefined : vscode.Uri.parse(scope)),
    onDidChangeConfiguration: (listener) => vscode.workspace.onDidChangeConfiguration(listener),
    registerTextDocumentContentProvider: (scheme, provider) => vscode.workspace.registerTextDocumentContentProvider(scheme, provider),
    openTextDocument: (uri) => vscode.workspace.openTextDocument(vscode.Uri.parse(uri)),
    showTextDocument: (document, options) => vscode.window.showTextDocument(document, options),

    getDiagnostics: (uri) => vscode.languages.getDiagnostics(vscode.Uri.parse(uri)),
    onDidChangeDiagnostics: (listener) => vscode.languages.onDidChangeDiagnostics((e) => { listener(e.uris.map((u) => u.toString())); }),
    setTextDocumentLanguage: (document, languageId) => vscode.languages.setTextDocumentLanguage(document, languageId),
    registerCodeLensProvider: (scheme, provider) => vscode.languages.registerCodeLensProvider({ scheme }, provider),

    registerCommand: (id, handler) => vscode.commands.registerCommand(id, handler),
    executeCommand: <T>(id: string, ...args: unknown[]) => vscode.commands.executeCommand<T>(id, ...args),
    setContext: (key, value) => vscode.commands.executeCommand('setContext', key, value),

    uri: (value) => vscode.Uri.parse(value),
    themeIcon: (id, color) => new vscode.ThemeIcon(id, color === undefined ? undefined : new vscode.ThemeColor(color)),
    themeColor: (id) => new vscode.ThemeColor(id),
    treeItem: (label, collapsible) =>
      new vscode.TreeItem(label, collapsible === 'expanded' ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None),
    markdown: (value) => new vscode.MarkdownString(value, true),
    codeLens: (line, title, command, args, tooltip) =>
      new vscode.CodeLens(new vscode.Range(line, 0, line, 0), { title, command, arguments: args, ...(tooltip === undefined ? {} : { tooltip }) }),
    eventEmitter: <T>() => new vscode.EventEmitter<T>(),
    ProgressLocation: vscode.ProgressLocation,
  };
}
