/**
 * Energy at a glance: a status-bar item with the session's state and current V(x), which runs
 * "Keel: Show Status", and the Markdown status report that command opens.
 *
 * The texts are pure functions of the server state and the session summary ({@link statusBarView},
 * {@link renderStatusMarkdown}); the item only displays them.
 */

import type * as vscode from 'vscode';
import type { ServerConnection, ServerState } from '../common/connection';
import type { Disposable } from '../common/events';
import { currentEnergy, formatEnergy, stateLabel, type SessionInfo } from '../common/protocol';
import type { SessionStore } from '../common/session';
import { relativeLabel } from '../common/uris';
import type { EditorApi } from '../common/vscodeapi';
import { energyMarkdown, topologicalOrder } from './dag';

/** What the status bar shows. */
export interface StatusBarView {
  readonly text: string;
  /** Markdown. */
  readonly tooltip: string;
  /** A theme colour id for the background, for states that need the user. */
  readonly background: string | undefined;
}

const SESSION_ICONS: Record<string, string> = {
  running: '$(sync~spin)',
  planning: '$(sync~spin)',
  verifying: '$(sync~spin)',
  awaiting_approval: '$(bell-dot)',
  finished: '$(pass)',
  success: '$(pass)',
  partial: '$(warning)',
  failed: '$(error)',
  aborted: '$(circle-slash)',
  budget_exceeded: '$(warning)',
  idle: '$(circle-large-outline)',
};

/** The status-bar text for the server state and session. */
export function statusBarView(server: ServerState, session: SessionInfo | undefined): StatusBarView {
  switch (server) {
    case 'starting':
      return { text: '$(loading~spin) Keel', tooltip: 'Keel: starting the language server…', background: undefined };
    case 'missing':
      return { text: '$(warning) Keel: server not found', tooltip: 'The Keel language server (`keel`) was not found. Click for details.', background: 'statusBarItem.warningBackground' };
    case 'failed':
      return { text: '$(error) Keel: server failed', tooltip: 'The Keel language server stopped. Run **Keel: Restart Server**, or see **Keel: Show Output**.', background: 'statusBarItem.errorBackground' };
    case 'stopped':
      return { text: '$(circle-slash) Keel: stopped', tooltip: 'The Keel language server is not running. Run **Keel: Restart Server**.', background: undefined };
    case 'running':
      break;
  }
  if (session === undefined) {
    return { text: '$(circle-large-outline) Keel: no session', tooltip: 'No Keel session yet. Run **Keel: Start Task**.', background: undefined };
  }
  const icon = SESSION_ICONS[session.state] ?? '$(pulse)';
  const energy = currentEnergy(session);
  const pending = session.pending.length;
  const parts = [`${icon} Keel: ${stateLabel(session.state)}`];
  if (energy !== undefined) {
    parts.push(`V ${formatEnergy(energy)}`);
  }
  if (pending > 1) {
    parts.push(`${String(pending)} pending`);
  }
  const committed = session.nodes.filter((n) => n.state === 'committed').length;
  const tooltip = [
    `**Keel** session \`${session.sessionId ?? '?'}\`: ${stateLabel(session.state)}`,
    session.task === undefined ? '' : `Task: ${session.task}`,
    `Nodes: ${String(committed)}/${String(session.nodes.length)} committed; ${String(pending)} bundle${pending === 1 ? '' : 's'} pending`,
    energy === undefined ? '' : `Current V(x) = ${formatEnergy(energy)}${session.epsilon === undefined ? '' : ` (ε = ${formatEnergy(session.epsilon)})`}`,
    'Click for the full status.',
  ].filter((s) => s !== '').join('\n\n');
  return {
    text: parts.join(' · '),
    tooltip,
    background: session.state === 'awaiting_approval' ? 'statusBarItem.warningBackground' : undefined,
  };
}

/** The full status report opened by "Keel: Show Status". */
export function renderStatusMarkdown(session: SessionInfo | undefined, server: ServerState, roots: readonly string[]): string {
  if (session === undefined) {
    return `# Keel status\n\nServer: ${server}. No session in this workspace yet: run **Keel: Start Task**.\n`;
  }
  const lines = [
    '# Keel status',
    '',
    `- Session: \`${session.sessionId ?? '?'}\``,
    `- State: ${stateLabel(session.state)}`,
    ...(session.task === undefined ? [] : [`- Task: ${session.task}`]),
    `- Current V(x): ${formatEnergy(currentEnergy(session))}${session.epsilon === undefined ? '' : ` (ε = ${formatEnergy(session.epsilon)})`}`,
    `- Server: ${server}`,
    '',
    '## Nodes',
    '',
  ];
  if (session.nodes.length === 0) {
    lines.push('_No plan yet._', '');
  }
  for (const node of topologicalOrder(session.nodes)) {
    lines.push(`### ${node.title} (\`${node.id}\`): ${stateLabel(node.state)}`, '');
    if (node.dependsOn.length > 0) {
      lines.push(`Depends on: ${node.dependsOn.join(', ')}`, '');
    }
    if (node.files.length > 0) {
      lines.push(`Owns: ${node.files.map((f) => `\`${relativeLabel(f, roots)}\``).join(', ')}`, '');
    }
    lines.push(energyMarkdown(node.energy), '');
  }
  lines.push('## Pending bundles', '');
  if (session.pending.length === 0) {
    lines.push('_None._', '');
  }
  for (const bundle of session.pending) {
    lines.push(
      `- \`${bundle.bundleId}\` (${bundle.title}${bundle.nodeId === undefined ? '' : `, ${bundle.nodeId}`}): ` +
        bundle.files.map((f) => `\`${relativeLabel(f, roots)}\``).join(', ') +
        (bundle.energy?.total === undefined ? '' : `; V = ${formatEnergy(bundle.energy.total)}`),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The status-bar item; refreshed on every server-state or session change. */
export class StatusBar implements Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly subscriptions: Disposable[];

  constructor(
    api: Pick<EditorApi, 'createStatusBarItem' | 'markdown' | 'themeColor'>,
    private readonly server: ServerConnection,
    private readonly session: SessionStore,
  ) {
    this.item = api.createStatusBarItem('keel.status', 'left', 50);
    this.item.name = 'Keel';
    this.item.command = 'keel.showStatus';
    this.subscriptions = [
      server.onDidChangeState(() => { this.render(api); }),
      session.onDidChange(() => { this.render(api); }),
    ];
    this.render(api);
    this.item.show();
  }

  /** The text currently shown (the e2e self-test reads it). */
  get text(): string {
    return this.item.text;
  }

  private render(api: Pick<EditorApi, 'markdown' | 'themeColor'>): void {
    const view = statusBarView(this.server.state, this.session.current);
    this.item.text = view.text;
    this.item.tooltip = api.markdown(view.tooltip);
    this.item.backgroundColor = view.background === undefined ? undefined : api.themeColor(view.background);
  }

  dispose(): void {
    this.subscriptions.forEach((s) => { s.dispose(); });
    this.item.dispose();
  }
}
