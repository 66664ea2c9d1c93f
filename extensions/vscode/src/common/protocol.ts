/**
 * The language-server surface as the extension sees it (docs/reference/lsp.md): command and
 * notification names, and readers that turn the server's payloads into the views' shapes.
 *
 * Every payload type comes from `payloads.ts`, generated from the server's schema
 * (docs/reference/lsp.schema.json). The readers read exactly the keys the server sends, no
 * other spelling; `expect` checks a payload's required keys first, so a server that drifted
 * from the schema is reported by name (`ProtocolError`) instead of showing "unknown".
 */

import type * as P from './payloads';
import { REQUIRED_KEYS } from './payloads';
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
} as const satisfies Record<string, keyof P.Commands>;
export type ServerCommandId = (typeof ServerCommand)[keyof typeof ServerCommand];
/** The argument a command takes. */
export type CommandArgument<C extends ServerCommandId> = P.Commands[C]['argument'];
/** The result a command answers with. */
export type CommandResult<C extends ServerCommandId> = P.Commands[C]['result'];

/** Custom notifications in both directions. */
export const Notification = {
  sessionChanged: 'keel/sessionChanged',
  bundleProposed: 'keel/bundleProposed',
  editorDiagnostics: 'keel/editorDiagnostics',
} as const satisfies Record<string, keyof P.Notifications>;

/** The `source` of Keel's own diagnostics: never forwarded back to the server. */
export const KEEL_DIAGNOSTIC_SOURCE = 'keel';

/** A payload that does not have the keys the schema requires. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

type PayloadName = keyof P.Payloads & keyof typeof REQUIRED_KEYS;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}

/**
 * `raw` as the payload `name`, once it is an object with every key the schema requires
 * (nested payloads are checked where they are read). Throws {@link ProtocolError} otherwise.
 */
export function expect<N extends PayloadName>(name: N, raw: unknown): P.Payloads[N] {
  if (!isObject(raw)) {
    throw new ProtocolError(`${name}: expected a JSON object, got ${kindOf(raw)}`);
  }
  const missing = REQUIRED_KEYS[name].filter((key) => !(key in raw));
  if (missing.length > 0) {
    throw new ProtocolError(`${name}: missing ${missing.join(', ')}`);
  }
  return raw as unknown as P.Payloads[N];
}

/** One energy component, e.g. `{name: "V_log", value: 2}`. */
export interface EnergyComponent {
  readonly name: string;
  readonly value: number;
}

/** An energy report: V(x), its components, epsilon and the verdict. */
export interface Energy {
  readonly total: number;
  readonly components: readonly EnergyComponent[];
  readonly epsilon: number;
  readonly stable: boolean;
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
  readonly attempts: number;
  readonly ledgerEntry: string | undefined;
}

/**
 * A bundle waiting for the user's decision. `files` are URIs. A command given only a bundle
 * id that the summary does not list yet knows nothing else: `nodeId`, `energy` and
 * `sessionId` are undefined then, and always set for a bundle the server sent.
 */
export interface BundleInfo {
  readonly bundleId: string;
  readonly nodeId: string | undefined;
  readonly title: string;
  readonly files: readonly string[];
  readonly energy: Energy | undefined;
  readonly sessionId: string | undefined;
}

/** A session the server knows (for Resume Session). */
export interface SessionRef {
  readonly sessionId: string;
  readonly task: string;
  readonly running: boolean;
  readonly outcome: string | undefined;
}

/** The session summary (`keel.server.status`, `keel/sessionChanged`). */
export interface SessionInfo {
  readonly sessionId: string | undefined;
  /** `running`, `awaiting_approval`, the outcome, or what the nodes say (`finished`, ...). */
  readonly state: string;
  readonly task: string | undefined;
  readonly nodes: readonly NodeInfo[];
  readonly pending: readonly BundleInfo[];
  readonly epsilon: number | undefined;
  /** Every session the server knows. */
  readonly sessions: readonly SessionRef[];
}

/**
 * One changed region of a file of a bundle, exactly as the server sends it (`DiffHunk`): its id
 * is stable, so the hunk keeps it when other hunks are committed or dropped and the rest comes
 * back as a new bundle.
 */
export type Hunk = P.DiffHunk;

/** One file of `keel.server.diff`. `before` is empty for a created file, `after` for a deleted one. */
export interface DiffFile {
  readonly uri: string;
  readonly before: string;
  readonly after: string;
  readonly unifiedDiff: string;
  readonly created: boolean;
  readonly deleted: boolean;
  /** The file's changed regions, in order; a created, deleted or binary file is one hunk. */
  readonly hunks: readonly Hunk[];
}

/** One entry of `keel.server.ledger`. */
export interface LedgerEntry {
  readonly entry: string;
  readonly title: string;
  readonly node: string;
  readonly session: string;
  readonly date: string;
  /** The `Keel-Energy` trailer, e.g. `V=0.000`. */
  readonly energy: string;
  readonly approvedBy: string;
}

const COMPONENTS = [
  ['V_syn', 'v_syn'],
  ['V_str', 'v_str'],
  ['V_log', 'v_log'],
  ['V_boot', 'v_boot'],
  ['V_sheaf', 'v_sheaf'],
] as const;

/** Reads the `energy` object of the payloads. */
export function readEnergy(raw: unknown): Energy {
  const energy = expect('Energy', raw);
  return {
    total: energy.v,
    components: COMPONENTS.map(([name, key]) => ({ name, value: energy[key] })),
    epsilon: energy.epsilon,
    stable: energy.stable,
  };
}

/** Resolves the workspace-relative paths of the summary's nodes to URIs. */
export type FileResolver = (pathOrUri: string) => string;

/** A resolver for a workspace root (a filesystem path), or one that keeps names as they are. */
export function fileResolver(root: string | undefined): FileResolver {
  return (name) => toFileUri(name, root);
}

/** Reads a bundle: `keel/bundleProposed`, or an item of the summary's `pendingBundles`. */
export function readBundle(raw: unknown): BundleInfo {
  const bundle = expect('BundleProposed', raw);
  return {
    bundleId: bundle.bundleId,
    nodeId: bundle.nodeId,
    title: bundle.title,
    files: [...bundle.files],
    energy: readEnergy(bundle.energy),
    sessionId: bundle.sessionId,
  };
}

function readNode(raw: unknown, resolve: FileResolver): NodeInfo {
  const node = expect('SummaryNode', raw);
  return {
    id: node.id,
    title: node.title || node.id,
    state: node.state,
    kind: node.kind || undefined,
    files: node.owns.map(resolve),
    dependsOn: [...node.dependsOn],
    energy: node.energy === null ? undefined : readEnergy(node.energy),
    attempts: node.attempts,
    ledgerEntry: node.ledgerEntry ?? undefined,
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
 * Reads the session summary. Returns undefined when there is no session (`sessionId` null and
 * nothing pending), so that the views can show their "start a task" state.
 */
export function readSummary(raw: unknown, resolve: FileResolver): SessionInfo | undefined {
  const summary = expect('SessionSummary', raw);
  const nodes = summary.nodes.map((n) => readNode(n, resolve));
  const pending = summary.pendingBundles.map(readBundle);
  if (summary.sessionId === null && nodes.length === 0 && pending.length === 0) {
    return undefined;
  }
  const derived = deriveState(nodes, pending);
  const state = summary.running
    ? derived === 'finished' || derived === 'idle'
      ? 'running'
      : derived
    : (summary.outcome ?? derived);
  return {
    sessionId: summary.sessionId ?? undefined,
    state,
    task: summary.task ?? undefined,
    nodes,
    pending,
    epsilon: summary.epsilon ?? undefined,
    sessions: summary.sessions.map((raw) => {
      const ref = expect('SessionRef', raw);
      return { sessionId: ref.sessionId, task: ref.task, running: ref.running, outcome: ref.outcome ?? undefined };
    }),
  };
}

/** Reads the result of `keel.server.diff`. */
export function readDiff(raw: unknown): DiffFile[] {
  const diff = expect('DiffResult', raw);
  return diff.files.map((item) => {
    const file = expect('DiffFile', item);
    return {
      uri: file.uri,
      before: file.before,
      after: file.after,
      unifiedDiff: file.unifiedDiff,
      created: file.change === 'create',
      deleted: file.change === 'delete',
      hunks: file.hunks.map(readHunk),
    };
  });
}

/** Reads one hunk of a diff file. */
export function readHunk(raw: unknown): Hunk {
  return expect('DiffHunk', raw);
}

/** The `bundleId` of `keel.server.reject` and `keel.server.correct`. */
export function readDecision(raw: unknown): P.DecisionResult {
  return expect('DecisionResult', raw);
}

/** Reads the result of `keel.server.ledger`: a list of entries, newest first. */
export function readLedger(raw: unknown): LedgerEntry[] {
  if (!Array.isArray(raw)) {
    throw new ProtocolError(`LedgerResult: expected a JSON array, got ${kindOf(raw)}`);
  }
  return raw.map((item) => {
    const entry = expect('LedgerEntry', item);
    return {
      entry: entry.sha,
      title: entry.title,
      node: entry.nodeId,
      session: entry.sessionId,
      date: entry.timestamp,
      energy: entry.energy,
      approvedBy: entry.approvedBy,
    };
  });
}

/** The `sessionId` of `keel.server.startSession` and `keel.server.resume`. */
export function readSessionId(raw: unknown): string {
  return expect('SessionIdResult', raw).sessionId;
}

/** The `ledgerEntry` of `keel.server.approve` (the commit) and `keel.server.rollback` (the revert). */
export function readLedgerEntry(raw: unknown): string {
  return expect('LedgerEntryResult', raw).ledgerEntry;
}

/** The Markdown of `keel.server.plan`. */
export function readPlanMarkdown(raw: unknown): string {
  return expect('PlanResult', raw).markdown;
}

/** The Markdown of `keel.server.explain`. */
export function readExplanationMarkdown(raw: unknown): string {
  return expect('ExplainResult', raw).markdown;
}

/** The sessions `keel.server.abort` cancelled. */
export function readAborted(raw: unknown): string[] {
  return [...expect('AbortResult', raw).aborted];
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
 * The V(x) to show "at a glance": the largest latest V among pending bundles, then among
 * unfinished nodes, then among all nodes.
 */
export function currentEnergy(session: SessionInfo | undefined): number | undefined {
  if (session === undefined) {
    return undefined;
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
