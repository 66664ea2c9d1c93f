/**
 * The language-server surface of contract section 9, as the extension sees it: command and
 * notification names, and tolerant readers that turn the server's JSON into typed views.
 *
 * The contract fixes the names and the top-level shapes (`{"files": [{uri, before, after,
 * unifiedDiff}]}` for a diff, `{bundleId, nodeId, title, files, energy}` for a proposal) but not
 * every key of the session summary. The readers therefore accept the spellings the server is
 * likely to use (camelCase on the LSP wire, snake_case as in the headless events) and never
 * throw: an unreadable field becomes "unknown" in the UI rather than a broken view.
 */

import { toFileUri } from './uris';

/** Server commands (`workspace/executeCommand`); each takes one JSON object argument. */
export const ServerCommand = {
  startSession: 'keel.server.startSession',
  status: 'keel.server.status',
  approve: 'keel.server.approve',
  reject: 'keel.server.reject',
  correct: 'keel.server.correct',
  diff: 'keel.server.diff',
  abort: 'keel.server.abort',
  resume: 'keel.server.resume',
  ledger: 'keel.server.ledger',
  rollback: 'keel.server.rollback',
  plan: 'keel.server.plan',
  explain: 'keel.server.explain',
} as const;
export type ServerCommandId = (typeof ServerCommand)[keyof typeof ServerCommand];

/** Custom notifications in both directions. */
export const Notification = {
  sessionChanged: 'keel/sessionChanged',
  bundleProposed: 'keel/bundleProposed',
  editorDiagnostics: 'keel/editorDiagnostics',
} as const;

/** The `source` of Keel's own diagnostics: never forwarded back to the server. */
export const KEEL_DIAGNOSTIC_SOURCE = 'keel';

/** One energy component, e.g. `{name: "V_log", value: 2}`. */
export interface EnergyComponent {
  readonly name: string;
  readonly value: number;
}

/** An energy report: V(x), its components, and epsilon when the server says it. */
export interface Energy {
  readonly total: number | undefined;
  readonly components: readonly EnergyComponent[];
  readonly epsilon: number | undefined;
  readonly stable: boolean | undefined;
}

/** A node of the session's plan. `files` are URIs. */
export interface NodeInfo {
  readonly id: string;
  readonly title: string;
  readonly state: string;
  readonly kind: string | undefined;
  readonly files: readonly string[];
  readonly dependsOn: readonly string[];
  readonly energy: Energy | undefined;
  readonly attempts: number | undefined;
}

/** A bundle waiting for the user's decision. `files` are URIs. */
export interface BundleInfo {
  readonly bundleId: string;
  readonly nodeId: string | undefined;
  readonly title: string;
  readonly files: readonly string[];
  readonly energy: Energy | undefined;
}

/** A session the server knows (for Resume Session). */
export interface SessionRef {
  readonly sessionId: string;
  readonly task: string | undefined;
  readonly running: boolean;
  readonly outcome: string | undefined;
}

/** The session summary (`keel.server.status`, `keel/sessionChanged`). */
export interface SessionInfo {
  readonly sessionId: string | undefined;
  readonly state: string;
  readonly task: string | undefined;
  readonly nodes: readonly NodeInfo[];
  readonly pending: readonly BundleInfo[];
  readonly energy: Energy | undefined;
  readonly epsilon: number | undefined;
  /** Every session the server knows, when it lists them. */
  readonly sessions: readonly SessionRef[];
}

/** One file of `keel.server.diff`. `before` is empty for a created file, `after` for a deleted one. */
export interface DiffFile {
  readonly uri: string;
  readonly before: string;
  readonly after: string;
  readonly unifiedDiff: string;
  readonly created: boolean;
  readonly deleted: boolean;
}

/** One entry of `keel.server.ledger`. */
export interface LedgerEntry {
  readonly entry: string;
  readonly title: string;
  readonly node: string | undefined;
  readonly session: string | undefined;
  readonly date: string | undefined;
  readonly energy: string | undefined;
  readonly approvedBy: string | undefined;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The first of `keys` present in `obj` with a non-null value. */
function pick(obj: Json, ...keys: string[]): unknown {
  for (const key of keys) {
    const value = obj[key];
    if (value !== undefined && value !== null) {
      return value;
    }
  }
  return undefined;
}

function str(value: unknown): string | undefined {
  if (typeof value === 'string') {
    return value;
  }
  if (typeof value === 'number' || typeof value === 'boolean') {
    return String(value);
  }
  return undefined;
}

function num(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) {
    return value;
  }
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return undefined;
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function strings(value: unknown): string[] {
  return list(value)
    .map((item) => (isObject(item) ? str(pick(item, 'uri', 'path', 'id')) : str(item)))
    .filter((item): item is string => item !== undefined);
}

const COMPONENTS: readonly [string, readonly string[]][] = [
  ['V_syn', ['V_syn', 'v_syn', 'vSyn', 'syn']],
  ['V_str', ['V_str', 'v_str', 'vStr', 'str']],
  ['V_log', ['V_log', 'v_log', 'vLog', 'log']],
  ['V_boot', ['V_boot', 'v_boot', 'vBoot', 'boot']],
  ['V_sheaf', ['V_sheaf', 'v_sheaf', 'vSheaf', 'sheaf']],
];

/** Reads an energy report: a bare number, or an object with a total and/or components. */
export function readEnergy(raw: unknown): Energy | undefined {
  const bare = num(raw);
  if (bare !== undefined) {
    return { total: bare, components: [], epsilon: undefined, stable: undefined };
  }
  if (!isObject(raw)) {
    return undefined;
  }
  const inner = isObject(raw.components) ? raw.components : raw;
  const components: EnergyComponent[] = [];
  for (const [name, keys] of COMPONENTS) {
    const value = num(pick(inner, ...keys));
    if (value !== undefined) {
      components.push({ name, value });
    }
  }
  let total = num(pick(raw, 'V', 'v', 'total', 'vTotal', 'value', 'energy'));
  if (total === undefined && components.length > 0) {
    total = components.reduce((sum, c) => sum + c.value, 0);
  }
  const epsilon = num(pick(raw, 'epsilon', 'stabilityThreshold', 'stability_threshold'));
  const stableRaw = pick(raw, 'stable');
  const stable = typeof stableRaw === 'boolean' ? stableRaw : undefined;
  if (total === undefined && components.length === 0) {
    return undefined;
  }
  return { total, components, epsilon, stable };
}

/** Resolves file names from the server (URIs, or paths relative to the workspace) to URIs. */
export type FileResolver = (pathOrUri: string) => string;

/** A resolver for a workspace root (a filesystem path), or one that keeps names as they are. */
export function fileResolver(root: string | undefined): FileResolver {
  return (name) => toFileUri(name, root);
}

/** Reads a bundle: from `keel/bundleProposed`, from a summary's pending list, or nested in a node. */
export function readBundle(raw: unknown, resolve: FileResolver, parent?: NodeInfo): BundleInfo | undefined {
  if (typeof raw === 'string') {
    return { bundleId: raw, nodeId: parent?.id, title: parent?.title ?? raw, files: parent?.files ?? [], energy: undefined };
  }
  if (!isObject(raw)) {
    return undefined;
  }
  const bundleId = str(pick(raw, 'bundleId', 'bundle_id', 'bundle', 'id'));
  if (bundleId === undefined) {
    return undefined;
  }
  const nodeId = str(pick(raw, 'nodeId', 'node_id', 'node')) ?? parent?.id;
  const files = strings(pick(raw, 'files', 'uris', 'paths'));
  return {
    bundleId,
    nodeId,
    title: str(pick(raw, 'title', 'nodeTitle', 'node_title')) ?? parent?.title ?? nodeId ?? bundleId,
    files: (files.length > 0 ? files : (parent?.files ?? [])).map(resolve),
    energy: readEnergy(pick(raw, 'energy', 'V', 'v')) ?? parent?.energy,
  };
}

function readNode(raw: unknown, resolve: FileResolver, fallbackId: string): NodeInfo | undefined {
  if (!isObject(raw)) {
    return undefined;
  }
  const id = str(pick(raw, 'id', 'nodeId', 'node_id', 'node')) ?? fallbackId;
  const energy = readEnergy(pick(raw, 'energy', 'latestEnergy', 'latest_energy', 'V', 'v'));
  return {
    id,
    title: str(pick(raw, 'title', 'name')) ?? id,
    state: str(pick(raw, 'state', 'status', 'lifecycle')) ?? 'unknown',
    kind: str(pick(raw, 'kind')),
    files: strings(pick(raw, 'files', 'owns', 'uris')).map(resolve),
    dependsOn: strings(pick(raw, 'dependsOn', 'depends_on', 'deps')),
    energy,
    attempts: num(pick(raw, 'attempts', 'attempt')),
  };
}

function deriveState(nodes: readonly NodeInfo[], pending: readonly BundleInfo[]): string {
  if (pending.length > 0) {
    return 'awaiting_approval';
  }
  if (nodes.length === 0) {
    return 'idle';
  }
  const busy = ['queued', 'running', 'verifying', 'retrying'];
  if (nodes.some((n) => busy.includes(n.state))) {
    return 'running';
  }
  if (nodes.every((n) => n.state === 'committed')) {
    return 'finished';
  }
  return nodes.some((n) => n.state === 'failed' || n.state === 'escalated') ? 'partial' : 'running';
}

/**
 * Reads the session summary. Returns undefined when there is no session (`null`, `{}`, or
 * `{"session": null}`), so that the views can show their "start a task" state.
 */
export function readSummary(raw: unknown, resolve: FileResolver): SessionInfo | undefined {
  if (!isObject(raw)) {
    return undefined;
  }
  // Accept {session: {...}, nodes, pending} as well as a flat summary.
  const sessionPart = isObject(raw.session) ? raw.session : undefined;
  const top: Json = sessionPart ? { ...sessionPart, ...raw } : raw;
  const sessionId = str(pick(top, 'sessionId', 'session_id', 'id')) ?? (typeof raw.session === 'string' ? raw.session : undefined);
  const nodeSource = pick(top, 'nodes', 'plan');
  const rawNodes = isObject(nodeSource)
    ? Object.entries(nodeSource).map(([id, value]) => (isObject(value) ? { id, ...value } : { id, state: value }))
    : list(nodeSource);
  const nodes = rawNodes
    .map((n, i) => readNode(n, resolve, `node-${i + 1}`))
    .filter((n): n is NodeInfo => n !== undefined);

  const pending: BundleInfo[] = [];
  const seen = new Set<string>();
  const add = (bundle: BundleInfo | undefined): void => {
    if (bundle !== undefined && !seen.has(bundle.bundleId)) {
      seen.add(bundle.bundleId);
      const owner = nodes.find((n) => n.id === bundle.nodeId);
      pending.push(owner && bundle.title === bundle.bundleId ? { ...bundle, title: owner.title } : bundle);
    }
  };
  for (const item of list(pick(top, 'pendingBundles', 'pending_bundles', 'pending', 'bundles'))) {
    const parent = isObject(item) ? nodes.find((n) => n.id === str(pick(item, 'nodeId', 'node_id', 'node'))) : undefined;
    add(readBundle(item, resolve, parent));
  }
  rawNodes.forEach((rawNode, i) => {
    const node = nodes[i];
    if (!isObject(rawNode) || node === undefined) {
      return;
    }
    const nested = pick(rawNode, 'pendingBundles', 'pending_bundles', 'pendingBundle', 'pending_bundle', 'pending');
    for (const item of Array.isArray(nested) ? nested : nested === undefined ? [] : [nested]) {
      add(readBundle(item, resolve, node));
    }
  });

  if (sessionId === undefined && nodes.length === 0 && pending.length === 0) {
    return undefined;
  }
  const energy = readEnergy(pick(top, 'energy', 'V', 'v'));
  const epsilon = num(pick(top, 'epsilon', 'stabilityThreshold', 'stability_threshold')) ?? energy?.epsilon;
  const running = pick(top, 'running');
  const derived = deriveState(nodes, pending);
  const state =
    str(pick(top, 'state', 'status', 'phase')) ??
    (running === true ? (derived === 'finished' || derived === 'idle' ? 'running' : derived) : undefined) ??
    str(pick(top, 'outcome')) ??
    derived;
  const sessions: SessionRef[] = [];
  for (const item of list(pick(raw, 'sessions'))) {
    const id = isObject(item) ? str(pick(item, 'sessionId', 'session_id', 'id')) : str(item);
    if (id !== undefined) {
      sessions.push({
        sessionId: id,
        task: isObject(item) ? str(pick(item, 'task')) : undefined,
        running: isObject(item) && item.running === true,
        outcome: isObject(item) ? str(pick(item, 'outcome')) : undefined,
      });
    }
  }
  return {
    sessionId,
    state,
    task: str(pick(top, 'task', 'title')),
    nodes,
    pending,
    energy,
    epsilon,
    sessions,
  };
}

/** Reads the result of `keel.server.diff`. */
export function readDiff(raw: unknown, resolve: FileResolver): DiffFile[] {
  const files = isObject(raw) ? list(raw.files) : list(raw);
  const out: DiffFile[] = [];
  for (const item of files) {
    if (!isObject(item)) {
      continue;
    }
    const uri = str(pick(item, 'uri', 'path'));
    if (uri === undefined) {
      continue;
    }
    const beforeRaw = item.before;
    const afterRaw = item.after;
    out.push({
      uri: resolve(uri),
      before: typeof beforeRaw === 'string' ? beforeRaw : '',
      after: typeof afterRaw === 'string' ? afterRaw : '',
      unifiedDiff: str(pick(item, 'unifiedDiff', 'unified_diff', 'diff')) ?? '',
      created: beforeRaw === null || beforeRaw === undefined,
      deleted: afterRaw === null || afterRaw === undefined,
    });
  }
  return out;
}

/** Reads the result of `keel.server.ledger`: a list, or `{entries: [...]}`. */
export function readLedger(raw: unknown): LedgerEntry[] {
  const items = isObject(raw) ? list(pick(raw, 'entries', 'ledger', 'commits')) : list(raw);
  const out: LedgerEntry[] = [];
  for (const item of items) {
    if (!isObject(item)) {
      continue;
    }
    const entry = str(pick(item, 'entry', 'sha', 'commit', 'id', 'ledgerEntry'));
    if (entry === undefined) {
      continue;
    }
    const energyRaw = pick(item, 'energy', 'keelEnergy', 'keel_energy');
    const energy = readEnergy(energyRaw);
    out.push({
      entry,
      title: str(pick(item, 'title', 'message', 'subject', 'summary')) ?? entry,
      node: str(pick(item, 'node', 'nodeId', 'node_id')),
      session: str(pick(item, 'session', 'sessionId', 'session_id')),
      date: str(pick(item, 'date', 'time', 'timestamp', 'ts')),
      energy: typeof energyRaw === 'string' ? energyRaw : energy?.total !== undefined ? `V=${formatEnergy(energy.total)}` : undefined,
      approvedBy: str(pick(item, 'approvedBy', 'approved_by')),
    });
  }
  return out;
}

/** Reads `{"sessionId": ...}` / `{"ledgerEntry": ...}` style results. */
export function readString(raw: unknown, ...keys: string[]): string | undefined {
  return isObject(raw) ? str(pick(raw, ...keys)) : str(raw);
}

/** A compact, stable rendering of an energy value for labels: `0`, `0.042`, `3.5`, `1.2e-5`, `120`. */
export function formatEnergy(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) {
    return '?';
  }
  if (value === 0) {
    return '0';
  }
  const abs = Math.abs(value);
  if (abs < 0.001) {
    return value.toExponential(1);
  }
  if (abs >= 100) {
    return value.toFixed(0);
  }
  return String(Number(value.toFixed(abs < 10 ? 3 : 1)));
}

/** The human label of a lifecycle state: `awaiting_approval` → `awaiting approval`. */
export function stateLabel(state: string): string {
  return state.replace(/_/g, ' ');
}

/**
 * The V(x) to show "at a glance": the session's own figure if it sends one; else the
 * largest latest V among pending bundles, then among unfinished nodes, then among all nodes.
 */
export function currentEnergy(session: SessionInfo | undefined): number | undefined {
  if (session === undefined) {
    return undefined;
  }
  if (session.energy?.total !== undefined) {
    return session.energy.total;
  }
  const max = (values: (number | undefined)[]): number | undefined => {
    const known = values.filter((v): v is number => v !== undefined);
    return known.length > 0 ? Math.max(...known) : undefined;
  };
  return (
    max(session.pending.map((b) => b.energy?.total)) ??
    max(session.nodes.filter((n) => n.state !== 'committed').map((n) => n.energy?.total)) ??
    max(session.nodes.map((n) => n.energy?.total))
  );
}
