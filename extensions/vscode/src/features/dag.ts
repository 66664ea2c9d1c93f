/**
 * The "Session" tree in Keel's activity-bar container: the plan's nodes in dependency order,
 * each with its lifecycle state and latest V(x), pending bundles as children of their node,
 * and the files of each bundle below it (click: its diff; inline: approve that file).
 *
 * {@link buildDagModel} turns a session summary into plain items (unit-tested); the provider
 * only maps them onto `TreeItem`s.
 */

import type * as vscode from 'vscode';
import type { Disposable } from '../common/events';
import { formatEnergy, stateLabel, type BundleInfo, type Energy, type NodeInfo, type SessionInfo } from '../common/protocol';
import type { SessionStore } from '../common/session';
import { relativeLabel } from '../common/uris';
import type { EditorApi } from '../common/vscodeapi';

/** An icon: a codicon id and an optional theme colour id. */
export interface IconRef {
  readonly id: string;
  readonly color?: string;
}

/** One row of the tree. Context-menu commands receive the item itself as their argument. */
export interface DagItem {
  readonly key: string;
  readonly kind: 'node' | 'bundle' | 'file' | 'info';
  readonly label: string;
  readonly description: string;
  /** Markdown. */
  readonly tooltip: string;
  readonly icon: IconRef;
  readonly contextValue: string;
  readonly children: readonly DagItem[];
  readonly nodeId?: string;
  readonly bundle?: BundleInfo;
  readonly fileUri?: string;
  /** The command a click runs. */
  readonly command?: { readonly command: string; readonly title: string; readonly arguments: readonly unknown[] };
}

const STATE_ICONS: Record<string, IconRef> = {
  queued: { id: 'circle-outline', color: 'descriptionForeground' },
  running: { id: 'sync~spin' },
  verifying: { id: 'loading~spin' },
  retrying: { id: 'debug-rerun', color: 'charts.yellow' },
  awaiting_approval: { id: 'bell-dot', color: 'charts.blue' },
  committed: { id: 'pass-filled', color: 'testing.iconPassed' },
  failed: { id: 'error', color: 'testing.iconFailed' },
  escalated: { id: 'warning', color: 'list.warningForeground' },
  waiting: { id: 'clock', color: 'descriptionForeground' },
};

/** The icon of a lifecycle state. */
export function stateIcon(state: string): IconRef {
  return STATE_ICONS[state] ?? { id: 'circle-outline' };
}

/**
 * Nodes in dependency order (a node after everything it depends on), keeping the server's
 * order among independent nodes; nodes in a cycle (which a valid plan never has) keep theirs.
 */
export function topologicalOrder(nodes: readonly NodeInfo[]): NodeInfo[] {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const done = new Set<string>();
  const visiting = new Set<string>();
  const out: NodeInfo[] = [];
  const visit = (node: NodeInfo): void => {
    if (done.has(node.id) || visiting.has(node.id)) {
      return;
    }
    visiting.add(node.id);
    for (const dep of node.dependsOn) {
      const target = byId.get(dep);
      if (target !== undefined) {
        visit(target);
      }
    }
    visiting.delete(node.id);
    done.add(node.id);
    out.push(node);
  };
  nodes.forEach(visit);
  return out;
}

/** A Markdown table of an energy report, for tooltips. */
export function energyMarkdown(energy: Energy | undefined): string {
  if (energy === undefined) {
    return '_No energy measured yet._';
  }
  const rows = energy.components.map((c) => `| ${c.name} | ${formatEnergy(c.value)} |`);
  const header = `**V(x) = ${formatEnergy(energy.total)}**, ε = ${formatEnergy(energy.epsilon)} (${energy.stable ? 'stable' : 'not stable'})`;
  return `${header}\n\n| component | value |\n| --- | --- |\n${rows.join('\n')}`;
}

function fileItems(bundle: BundleInfo, roots: readonly string[]): DagItem[] {
  return bundle.files.map((uri) => ({
    key: `file:${bundle.bundleId}:${uri}`,
    kind: 'file',
    label: relativeLabel(uri, roots),
    description: '',
    tooltip: `Proposed change to \`${relativeLabel(uri, roots)}\` in bundle \`${bundle.bundleId}\`. Click to see the diff.`,
    icon: { id: 'diff-single' },
    contextValue: 'keel.bundleFile',
    children: [],
    bundle,
    fileUri: uri,
    command: { command: 'keel.showFileDiff', title: 'Show File Diff', arguments: [{ bundle, fileUri: uri }] },
  }));
}

function bundleItem(bundle: BundleInfo, roots: readonly string[]): DagItem {
  const count = bundle.files.length;
  return {
    key: `bundle:${bundle.bundleId}`,
    kind: 'bundle',
    label: `Pending bundle ${bundle.bundleId.length > 12 ? bundle.bundleId.slice(0, 8) : bundle.bundleId}`,
    description: `${String(count)} file${count === 1 ? '' : 's'}${bundle.energy?.total === undefined ? '' : ` · V ${formatEnergy(bundle.energy.total)}`}`,
    tooltip: `**${bundle.title}**: bundle \`${bundle.bundleId}\` awaits your approval.\n\n${energyMarkdown(bundle.energy)}`,
    icon: { id: 'git-pull-request', color: 'charts.blue' },
    contextValue: 'keel.bundle',
    children: fileItems(bundle, roots),
    bundle,
    ...(bundle.nodeId === undefined ? {} : { nodeId: bundle.nodeId }),
    command: { command: 'keel.showPendingDiff', title: 'Show Pending Diff', arguments: [{ bundle }] },
  };
}

/** The tree for a session summary; an empty list when there is no session (the welcome view shows). */
export function buildDagModel(session: SessionInfo | undefined, roots: readonly string[]): DagItem[] {
  if (session === undefined) {
    return [];
  }
  const items: DagItem[] = [];
  const placed = new Set<string>();
  for (const node of topologicalOrder(session.nodes)) {
    const bundles = session.pending.filter((b) => b.nodeId === node.id);
    bundles.forEach((b) => placed.add(b.bundleId));
    const energy = node.energy?.total;
    // V(x) first: it is what the view is for, and the sidebar is narrow.
    const parts = energy === undefined ? [stateLabel(node.state)] : [`V ${formatEnergy(energy)}`, stateLabel(node.state)];
    if (node.dependsOn.length > 0) {
      parts.push(`after ${node.dependsOn.join(', ')}`);
    }
    const files = node.files.map((f) => `\`${relativeLabel(f, roots)}\``).join(', ');
    items.push({
      // A node that gains children gets a new id, so VS Code shows it expanded (it would keep
      // the "collapsed" state it gives to a former leaf with the same id).
      key: bundles.length > 0 ? `node:${node.id}/pending` : `node:${node.id}`,
      kind: 'node',
      label: node.title,
      description: parts.join(' · '),
      tooltip: [
        `**${node.title}** (\`${node.id}\`${node.kind === undefined ? '' : `, ${node.kind}`}): ${stateLabel(node.state)}`,
        energyMarkdown(node.energy),
        `Attempts: ${String(node.attempts)}`,
        node.dependsOn.length > 0 ? `Depends on: ${node.dependsOn.join(', ')}` : '',
        files === '' ? '' : `Owns: ${files}`,
      ].filter((s) => s !== '').join('\n\n'),
      icon: stateIcon(node.state),
      contextValue: `keel.node.${node.state}`,
      children: bundles.map((b) => bundleItem(b, roots)),
      nodeId: node.id,
    });
  }
  // Bundles whose node the summary does not list still need a place to be approved from.
  for (const bundle of session.pending) {
    if (!placed.has(bundle.bundleId)) {
      items.push(bundleItem(bundle, roots));
    }
  }
  if (items.length === 0) {
    items.push({
      key: 'info:planning',
      kind: 'info',
      label: session.task ?? 'Session',
      description: stateLabel(session.state),
      tooltip: `Session \`${session.sessionId ?? '?'}\`: ${stateLabel(session.state)}`,
      icon: { id: 'loading~spin' },
      contextValue: 'keel.info',
      children: [],
    });
  }
  return items;
}

/** Maps {@link DagItem}s onto the tree view; rebuilt on every session change. */
export class DagTreeProvider implements vscode.TreeDataProvider<DagItem>, Disposable {
  private items: DagItem[] = [];
  private view: vscode.TreeView<DagItem> | undefined;
  private readonly seenBundles = new Set<string>();
  private readonly emitter: vscode.EventEmitter<DagItem | undefined>;
  private readonly subscription: Disposable;
  readonly onDidChangeTreeData: vscode.Event<DagItem | undefined>;

  constructor(
    private readonly api: Pick<EditorApi, 'eventEmitter' | 'themeIcon' | 'markdown' | 'workspaceRoots' | 'treeItem'>,
    session: SessionStore,
  ) {
    this.emitter = api.eventEmitter<DagItem | undefined>();
    this.onDidChangeTreeData = this.emitter.event;
    this.subscription = session.onDidChange((summary) => {
      this.items = buildDagModel(summary, api.workspaceRoots());
      this.emitter.fire(undefined);
      const fresh = this.pendingItems().filter((item) => !this.seenBundles.has(item.key));
      fresh.forEach((item) => this.seenBundles.add(item.key));
      if (this.view?.visible === true) {
        void this.reveal(fresh);
      }
    });
  }

  /** The tree view showing this provider: newly proposed bundles are revealed in it while it is visible. */
  attach(view: vscode.TreeView<DagItem>): vscode.TreeView<DagItem> {
    this.view = view;
    return view;
  }

  /** Expands the tree down to the given bundle items (all pending ones by default). */
  async reveal(items: readonly DagItem[] = this.pendingItems()): Promise<void> {
    for (const item of items) {
      await this.view?.reveal(item, { expand: true, select: false, focus: false }).then(undefined, () => undefined);
    }
  }

  /** The current top-level items (the e2e self-test reads them). */
  get roots(): readonly DagItem[] {
    return this.items;
  }

  /** The parent of an item (VS Code needs it to reveal an item). */
  getParent(element: DagItem): DagItem | undefined {
    const search = (items: readonly DagItem[], parent: DagItem | undefined): DagItem | undefined => {
      for (const item of items) {
        if (item.key === element.key) {
          return parent;
        }
        const found = search(item.children, item);
        if (found !== undefined) {
          return found;
        }
      }
      return undefined;
    };
    return search(this.items, undefined);
  }

  /** The items of pending bundles, for revealing them. */
  pendingItems(): DagItem[] {
    const out: DagItem[] = [];
    const walk = (items: readonly DagItem[]): void => {
      for (const item of items) {
        if (item.kind === 'bundle') {
          out.push(item);
        }
        walk(item.children);
      }
    };
    walk(this.items);
    return out;
  }

  getChildren(element?: DagItem): DagItem[] {
    return element === undefined ? this.items : [...element.children];
  }

  getTreeItem(element: DagItem): vscode.TreeItem {
    const item = this.api.treeItem(element.label, element.children.length > 0 ? 'expanded' : 'none');
    item.id = element.key;
    item.description = element.description;
    item.tooltip = this.api.markdown(element.tooltip);
    item.iconPath = this.api.themeIcon(element.icon.id, element.icon.color);
    item.contextValue = element.contextValue;
    if (element.command !== undefined) {
      item.command = { ...element.command, arguments: [...element.command.arguments] };
    }
    return item;
  }

  dispose(): void {
    this.subscription.dispose();
    this.emitter.dispose();
  }
}
