/**
 * Read-only Markdown documents for "Keel: Show Status" and "Keel: Show Ledger", served from a
 * `keel-info:` content provider so they open as ordinary tabs (searchable, previewable with
 * VS Code's Markdown preview) without writing files into the workspace.
 */

import type * as vscode from 'vscode';
import type { Disposable } from '../common/events';
import { type LedgerEntry } from '../common/protocol';
import type { EditorApi } from '../common/vscodeapi';

export const INFO_SCHEME = 'keel-info';

/** The ledger as Markdown, newest first (as the server lists it). */
export function renderLedgerMarkdown(entries: readonly LedgerEntry[]): string {
  if (entries.length === 0) {
    return '# Keel ledger\n\n_No ledger entries yet: every approved bundle becomes one git commit._\n';
  }
  const lines = ['# Keel ledger', '', '| entry | title | node | energy | approved by | date |', '| --- | --- | --- | --- | --- | --- |'];
  for (const e of entries) {
    const cell = (value: string | undefined): string => (value ?? '').replace(/\|/g, '\\|');
    lines.push(`| \`${e.entry.slice(0, 12)}\` | ${cell(e.title)} | ${cell(e.node)} | ${cell(e.energy)} | ${cell(e.approvedBy)} | ${cell(e.date)} |`);
  }
  lines.push('', 'Roll an entry back with **Keel: Roll Back Ledger Entry** (a revert commit; history is never rewritten).');
  return `${lines.join('\n')}\n`;
}

/** Serves the latest rendering of each info document and reopens it on update. */
export class InfoDocuments implements vscode.TextDocumentContentProvider, Disposable {
  private readonly contents = new Map<string, string>();
  private readonly emitter: vscode.EventEmitter<vscode.Uri>;
  readonly onDidChange: vscode.Event<vscode.Uri>;

  constructor(private readonly api: Pick<EditorApi, 'eventEmitter' | 'uri' | 'openTextDocument' | 'showTextDocument' | 'setTextDocumentLanguage'>) {
    this.emitter = api.eventEmitter<vscode.Uri>();
    this.onDidChange = this.emitter.event;
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.path) ?? '';
  }

  /** Sets the content of `name` (e.g. `/Keel Status.md`) and shows it. */
  async show(name: string, markdown: string): Promise<void> {
    this.contents.set(name, markdown);
    const uri = `${INFO_SCHEME}:${name}`;
    this.emitter.fire(this.api.uri(uri));
    let document = await this.api.openTextDocument(uri);
    if (document.languageId !== 'markdown') {
      document = await this.api.setTextDocumentLanguage(document, 'markdown');
    }
    await this.api.showTextDocument(document, { preview: true });
  }

  dispose(): void {
    this.emitter.dispose();
  }
}
