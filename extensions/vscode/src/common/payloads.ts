/* Generated from docs/reference/lsp.schema.json by scripts/protocol-schema: do not edit. */
/* eslint-disable */

/**
 * Every payload of Keel's own LSP messages (docs/reference/lsp.md): command arguments
 * and results, and the `keel/*` notifications. The client reads exactly these keys.
 */

/** `keel.server.abort`: the sessions it cancelled. */
export interface AbortResult {
  readonly aborted: readonly string[];
}

export interface ApproveArgs {
  readonly bundleId: string;
  readonly files?: readonly string[] | null;
  /** hunk ids of keel.server.diff */
  readonly hunks?: readonly string[] | null;
}

export interface BundleArgs {
  readonly bundleId: string;
}

/** A bundle waiting for the user's decision (`keel/bundleProposed`, `pendingBundles`). */
export interface BundleProposed {
  readonly bundleId: string;
  readonly nodeId: string;
  readonly title: string;
  /** file URIs the bundle touches */
  readonly files: readonly string[];
  readonly energy: Energy;
  readonly sessionId: string;
}

export interface Citation {
  readonly path: string;
  readonly line: number;
  readonly uri: string;
}

export interface CorrectArgs {
  readonly bundleId: string;
  readonly feedback: string;
}

/** `keel.server.reject` and `keel.server.correct`. */
export interface DecisionResult {
  readonly bundleId: string;
  readonly decision: 'rejected' | 'correcting';
}

/** The keys of an LSP `Diagnostic` that Keel reads (others are ignored). */
export interface Diagnostic {
  readonly range: Range;
  readonly message: string;
  readonly severity?: number | null;
  readonly source?: string | null;
  readonly code?: string | number | null;
}

/** One file of `keel.server.diff`. */
export interface DiffFile {
  readonly uri: string;
  /** workspace-relative */
  readonly path: string;
  readonly change: 'create' | 'modify' | 'delete';
  /** '' for a created file */
  readonly before: string;
  /** '' for a deleted file */
  readonly after: string;
  /** a git-style patch */
  readonly unifiedDiff: string;
  /** the changed regions; a created, deleted or binary file is one hunk */
  readonly hunks: readonly DiffHunk[];
}

/** One changed region of a file (zero lines of context), decided on its own with `hunks` on approve and reject. Starts are 1-based; with a count of 0 the start is the line after which the change sits (0: before the first line). */
export interface DiffHunk {
  /** stable: kept when other hunks are committed or dropped */
  readonly id: string;
  readonly oldStart: number;
  readonly oldLines: number;
  readonly newStart: number;
  readonly newLines: number;
  /** '@@ -oldStart,oldLines +newStart,newLines @@' */
  readonly header: string;
  /** the base's lines, without line endings */
  readonly removed: readonly string[];
  /** the proposal's lines, without line endings */
  readonly added: readonly string[];
}

/** `keel.server.diff`. */
export interface DiffResult {
  readonly bundleId: string;
  readonly files: readonly DiffFile[];
}

export interface DroppedCitation {
  readonly path: string;
  readonly line: number;
  readonly reason: string;
}

/** `keel/editorDiagnostics`: a file's diagnostics from the editor's other sources (extra keys are ignored; a malformed diagnostic is skipped, not the report). */
export interface EditorDiagnosticsParams {
  readonly uri: string;
  readonly version?: number | null;
  readonly diagnostics: readonly Diagnostic[];
}

/** An energy measurement as the editor sees it: V(x), its components, epsilon, stable. */
export interface Energy {
  /** V(x), the weighted sum of the components */
  readonly v: number;
  readonly v_syn: number;
  readonly v_str: number;
  readonly v_log: number;
  readonly v_boot: number;
  readonly v_sheaf: number;
  /** the stability threshold */
  readonly epsilon: number;
  /** V(x) < epsilon and no sensor degraded */
  readonly stable: boolean;
}

/** `keel.server.explain`: a question or a symbol, and optionally the editor's file. */
export interface ExplainArgs {
  readonly question: string;
  readonly file?: string | null;
}

/** `keel.server.explain`: the answer, its checked citations and its Markdown. */
export interface ExplainResult {
  readonly question: string;
  readonly answer: string;
  readonly citations: readonly Citation[];
  readonly dropped: readonly DroppedCitation[];
  readonly explore: readonly ExploreCall[];
  readonly markdown: string;
}

/** One read-only tool call of the architect (`keel.server.plan`/`explain`). */
export interface ExploreCall {
  readonly tool: string;
  readonly arguments: Readonly<Record<string, unknown>>;
  readonly chars: number;
  readonly refused: boolean;
  readonly reason: string;
}

export interface InvalidAttempt {
  readonly attempt: number;
  readonly errors: readonly string[];
}

export interface LedgerArgs {
  readonly limit?: number | null;
}

/** One approval commit of `keel.server.ledger`, newest first. */
export interface LedgerEntry {
  readonly sha: string;
  readonly title: string;
  readonly sessionId: string;
  readonly nodeId: string;
  readonly bundle: string;
  /** the Keel-Energy trailer, e.g. 'V=0.000' */
  readonly energy: string;
  readonly approvedBy: string;
  readonly timestamp: string;
  /** workspace-relative paths */
  readonly files: readonly string[];
  /** the entry a rollback commit reverts */
  readonly reverts: string | null;
}

/** `keel.server.approve` (the approval commit) and `keel.server.rollback` (the revert). */
export interface LedgerEntryResult {
  readonly ledgerEntry: string;
}

/** `keel.server.ledger`: a JSON array of entries. */
export type LedgerResult = readonly LedgerEntry[];

export interface NoArgs {
}

export interface NodeContract {
  /** the function, class or constant names the node's files must define at top level, e.g. ["circle_area"] for circle_area(radius); never a parameter such as radius, nor a local variable */
  readonly symbols: readonly string[];
  /** text that must not appear in the node's files (e.g. "TODO") */
  readonly forbidden: readonly string[];
}

export type NodeKind = 'command' | 'code' | 'unit_test';

/** `keel.server.plan`: the task, and optionally the editor's file (a URI), shown first. */
export interface PlanArgs {
  readonly task: string;
  readonly file?: string | null;
}

export interface PlanNode {
  /** a short unique name: letters, digits, - or _ */
  readonly id: string;
  /** one line saying what the node does */
  readonly title: string;
  /** "code" (writes source files), "unit_test" (writes test files) or "command" (project set-up checked by commands) */
  readonly kind: NodeKind;
  /** the files this node creates or edits (workspace-relative, '/' separators); every code and unit_test node owns at least one file and no file has two owners */
  readonly owns: readonly string[];
  /** files the node reads but does not write (a test node lists the files it tests) */
  readonly context: readonly string[];
  /** ids of the nodes whose files this node needs; a unit_test node depends on the nodes it tests */
  readonly depends_on: readonly string[];
  /** shell commands that check the node (e.g. "python -m pytest -q test_x.py"); they must really run the node's tests */
  readonly commands: readonly string[];
  /** what the node's files must and must not contain */
  readonly contract: NodeContract;
}

/** `keel.server.plan`: the plan (as `keel plan --json`) and its Markdown. */
export interface PlanResult {
  readonly task: string;
  readonly plan: TaskPlan;
  readonly invalidAttempts: readonly InvalidAttempt[];
  readonly explore: readonly ExploreCall[];
  readonly markdown: string;
}

export interface Position {
  readonly line: number;
  readonly character?: number;
}

export interface Range {
  readonly start: Position;
  readonly end?: Position | null;
}

export interface RejectArgs {
  readonly bundleId: string;
  readonly files?: readonly string[] | null;
  /** hunk ids of keel.server.diff */
  readonly hunks?: readonly string[] | null;
  readonly reason?: string;
}

export interface RollbackArgs {
  readonly entry: string;
}

/** Limits on the plan: at most `maxNodes` nodes, and `files` (URIs) owned by one. */
export interface ScopeArgs {
  readonly files?: readonly string[];
  readonly maxNodes?: number | null;
}

export interface SessionArgs {
  readonly sessionId?: string | null;
}

/** `keel.server.startSession` and `keel.server.resume`. */
export interface SessionIdResult {
  readonly sessionId: string;
}

/** A session the server knows (to resume it). */
export interface SessionRef {
  readonly sessionId: string;
  readonly task: string;
  readonly running: boolean;
  readonly outcome: string | null;
}

/** `keel.server.status` and `keel/sessionChanged`: the current session, its nodes, every pending bundle and the sessions this server knows. No session: `sessionId` null. */
export interface SessionSummary {
  readonly sessionId: string | null;
  readonly task: string | null;
  readonly running: boolean;
  /** null while running or before any session */
  readonly outcome: string | null;
  readonly reason: string;
  readonly mode: string | null;
  readonly epsilon: number | null;
  readonly nodes: readonly SummaryNode[];
  readonly pendingBundles: readonly BundleProposed[];
  readonly sessions: readonly SessionRef[];
}

export interface StartSessionArgs {
  readonly task: string;
  readonly mode?: 'cautious' | 'balanced' | 'yolo' | null;
  readonly scope?: ScopeArgs | null;
}

/** One node of the session summary. */
export interface SummaryNode {
  readonly id: string;
  readonly title: string;
  /** code, unit_test or command ('' before the plan says) */
  readonly kind: string;
  /** one of: queued, running, verifying, retrying, awaiting_approval, committed, failed, escalated, waiting */
  readonly state: string;
  /** workspace-relative paths the node owns */
  readonly owns: readonly string[];
  /** ids of the nodes it runs after */
  readonly dependsOn: readonly string[];
  readonly attempts: number;
  /** the latest measurement, null before one */
  readonly energy: Energy | null;
  /** the commit of a committed node */
  readonly ledgerEntry: string | null;
}

export interface TaskPlan {
  /** the steps of the plan, at least one; keep it small */
  readonly nodes: readonly PlanNode[];
}

/** The keys every payload object must have, by name: what `expect` checks. */
export const REQUIRED_KEYS = {
  AbortResult: ['aborted'],
  ApproveArgs: ['bundleId'],
  BundleArgs: ['bundleId'],
  BundleProposed: ['bundleId', 'nodeId', 'title', 'files', 'energy', 'sessionId'],
  Citation: ['path', 'line', 'uri'],
  CorrectArgs: ['bundleId', 'feedback'],
  DecisionResult: ['bundleId', 'decision'],
  Diagnostic: ['range', 'message'],
  DiffFile: ['uri', 'path', 'change', 'before', 'after', 'unifiedDiff', 'hunks'],
  DiffHunk: ['id', 'oldStart', 'oldLines', 'newStart', 'newLines', 'header', 'removed', 'added'],
  DiffResult: ['bundleId', 'files'],
  DroppedCitation: ['path', 'line', 'reason'],
  EditorDiagnosticsParams: ['uri', 'diagnostics'],
  Energy: ['v', 'v_syn', 'v_str', 'v_log', 'v_boot', 'v_sheaf', 'epsilon', 'stable'],
  ExplainArgs: ['question'],
  ExplainResult: ['question', 'answer', 'citations', 'dropped', 'explore', 'markdown'],
  ExploreCall: ['tool', 'arguments', 'chars', 'refused', 'reason'],
  InvalidAttempt: ['attempt', 'errors'],
  LedgerArgs: [],
  LedgerEntry: ['sha', 'title', 'sessionId', 'nodeId', 'bundle', 'energy', 'approvedBy', 'timestamp', 'files', 'reverts'],
  LedgerEntryResult: ['ledgerEntry'],
  NoArgs: [],
  NodeContract: ['symbols', 'forbidden'],
  PlanArgs: ['task'],
  PlanNode: ['id', 'title', 'kind', 'owns', 'context', 'depends_on', 'commands', 'contract'],
  PlanResult: ['task', 'plan', 'invalidAttempts', 'explore', 'markdown'],
  Position: ['line'],
  Range: ['start'],
  RejectArgs: ['bundleId'],
  RollbackArgs: ['entry'],
  ScopeArgs: [],
  SessionArgs: [],
  SessionIdResult: ['sessionId'],
  SessionRef: ['sessionId', 'task', 'running', 'outcome'],
  SessionSummary: ['sessionId', 'task', 'running', 'outcome', 'reason', 'mode', 'epsilon', 'nodes', 'pendingBundles', 'sessions'],
  StartSessionArgs: ['task'],
  SummaryNode: ['id', 'title', 'kind', 'state', 'owns', 'dependsOn', 'attempts', 'energy', 'ledgerEntry'],
  TaskPlan: ['nodes'],
} as const;

/** Every payload object type by its name (the keys of `REQUIRED_KEYS`). */
export interface Payloads {
  readonly AbortResult: AbortResult;
  readonly ApproveArgs: ApproveArgs;
  readonly BundleArgs: BundleArgs;
  readonly BundleProposed: BundleProposed;
  readonly Citation: Citation;
  readonly CorrectArgs: CorrectArgs;
  readonly DecisionResult: DecisionResult;
  readonly Diagnostic: Diagnostic;
  readonly DiffFile: DiffFile;
  readonly DiffHunk: DiffHunk;
  readonly DiffResult: DiffResult;
  readonly DroppedCitation: DroppedCitation;
  readonly EditorDiagnosticsParams: EditorDiagnosticsParams;
  readonly Energy: Energy;
  readonly ExplainArgs: ExplainArgs;
  readonly ExplainResult: ExplainResult;
  readonly ExploreCall: ExploreCall;
  readonly InvalidAttempt: InvalidAttempt;
  readonly LedgerArgs: LedgerArgs;
  readonly LedgerEntry: LedgerEntry;
  readonly LedgerEntryResult: LedgerEntryResult;
  readonly NoArgs: NoArgs;
  readonly NodeContract: NodeContract;
  readonly PlanArgs: PlanArgs;
  readonly PlanNode: PlanNode;
  readonly PlanResult: PlanResult;
  readonly Position: Position;
  readonly Range: Range;
  readonly RejectArgs: RejectArgs;
  readonly RollbackArgs: RollbackArgs;
  readonly ScopeArgs: ScopeArgs;
  readonly SessionArgs: SessionArgs;
  readonly SessionIdResult: SessionIdResult;
  readonly SessionRef: SessionRef;
  readonly SessionSummary: SessionSummary;
  readonly StartSessionArgs: StartSessionArgs;
  readonly SummaryNode: SummaryNode;
  readonly TaskPlan: TaskPlan;
}

/** The `keel.server.*` commands: the argument each takes and the result. */
export interface Commands {
  readonly 'keel.server.startSession': {
    readonly argument: StartSessionArgs;
    readonly result: SessionIdResult;
  };
  readonly 'keel.server.status': {
    readonly argument: NoArgs;
    readonly result: SessionSummary;
  };
  readonly 'keel.server.approve': {
    readonly argument: ApproveArgs;
    readonly result: LedgerEntryResult;
  };
  readonly 'keel.server.reject': {
    readonly argument: RejectArgs;
    readonly result: DecisionResult;
  };
  readonly 'keel.server.correct': {
    readonly argument: CorrectArgs;
    readonly result: DecisionResult;
  };
  readonly 'keel.server.diff': {
    readonly argument: BundleArgs;
    readonly result: DiffResult;
  };
  readonly 'keel.server.abort': {
    readonly argument: SessionArgs;
    readonly result: AbortResult;
  };
  readonly 'keel.server.resume': {
    readonly argument: SessionArgs;
    readonly result: SessionIdResult;
  };
  readonly 'keel.server.ledger': {
    readonly argument: LedgerArgs;
    readonly result: LedgerResult;
  };
  readonly 'keel.server.rollback': {
    readonly argument: RollbackArgs;
    readonly result: LedgerEntryResult;
  };
  readonly 'keel.server.plan': {
    readonly argument: PlanArgs;
    readonly result: PlanResult;
  };
  readonly 'keel.server.explain': {
    readonly argument: ExplainArgs;
    readonly result: ExplainResult;
  };
}

/** The `keel/*` notifications and their params. */
export interface Notifications {
  /** serverToClient: the summary changed */
  readonly 'keel/sessionChanged': SessionSummary;
  /** serverToClient: a bundle waits */
  readonly 'keel/bundleProposed': BundleProposed;
  /** clientToServer: the editor's diagnostics of a file */
  readonly 'keel/editorDiagnostics': EditorDiagnosticsParams;
}
