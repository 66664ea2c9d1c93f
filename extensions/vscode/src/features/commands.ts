/**
 * The palette commands (`keel.*`): thin wrappers that collect arguments from the user and call
 * the server commands (`keel.server.*`) of docs/reference/lsp.md.
 *
 * The ids differ from the server's on purpose: vscode-languageclient registers every command the
 * server advertises under its own id, and a second registration of the same id throws. The
 * palette entries therefore never carry `keel.server.*` ids.
 *
 * Commands that act on a bundle find it from their argument (a tree item, a `keel-proposed:`
 * diff editor, a file URI), else from the active editor's file, else by a quick pick over the
 * pending bundles the server lists. Every command also accepts its text input as an argument
 * (`keel.startTask "task"`), so keybindings, other extensions and the e2e self-test can run
 * them without a prompt.
 */

import type { ServerControl } from '../common/connection';
import type { Disposable } from '../common/events';
import { describeError, type Logger } from '../common/log';
import { readDecision, readExplanationMarkdown, readLedger, readLedgerEntry, readPlanMarkdown, readSessionId, ServerCommand, type BundleInfo, type DiffFile, type Hunk, type LedgerEntry, type SessionInfo } from '../common/protocol';
import type { SessionStore } from '../common/session';
import type { KeelSettings } from '../common/settings';
import { relativeLabel, sameUri } from '../common/uris';
import type { ApprovalTracker } from '../common/edits';
import type { EditorApi, PickItem } from '../common/vscodeapi';
import type { InfoDocuments } from './info';
import { renderLedgerMarkdown } from './info';
import { HunkCommand, hunkSize, readHunkDecision, type ReviewFollower } from './hunks';
import type { BundlePreview } from './preview';
import { parseProposedUri, showBundleDiff, type DiffCache } from './review';
import { renderStatusMarkdown } from './status';

/** The palette command ids. */
export const Command = {
  startTask: 'keel.startTask',
  approveBundle: 'keel.approveBundle',
  rejectBundle: 'keel.rejectBundle',
  correctBundle: 'keel.correctBundle',
  showPendingDiff: 'keel.showPendingDiff',
  showStatus: 'keel.showStatus',
  showLedger: 'keel.showLedger',
  rollbackLedgerEntry: 'keel.rollbackLedgerEntry',
  abortSession: 'keel.abortSession',
  resumeSession: 'keel.resumeSession',
  restartServer: 'keel.restartServer',
  showOutput: 'keel.showOutput',
  approveFile: 'keel.approveFile',
  rejectFile: 'keel.rejectFile',
  showFileDiff: 'keel.showFileDiff',
  refresh: 'keel.refresh',
  plan: 'keel.plan',
  explain: 'keel.explain',
  ...HunkCommand,
} as const;

/** Some hunks of a bundle, chosen for a decision, and how many of its hunks are left out. */
export interface HunkTarget {
  readonly bundle: BundleInfo;
  readonly hunks: readonly string[];
  readonly remaining: number;
}

/** Quick-pick items for the hunks of a bundle's files: file and header, size, first changed line. */
export function hunkPickItems(files: readonly DiffFile[], roots: readonly string[]): PickItem<Hunk>[] {
  return files.flatMap((file) =>
    file.hunks.map((hunk) => ({
      label: `${relativeLabel(file.uri, roots)} ${hunk.header}`,
      description: hunkSize(hunk),
      detail: (hunk.added[0] ?? hunk.removed[0] ?? '').trim().slice(0, 120),
      value: hunk,
    })),
  );
}

/** A bundle to act on, and the one file of it when the action is per file. */
export interface BundleTarget {
  readonly bundle: BundleInfo;
  readonly fileUri?: string;
}

/** The outcome of looking for a bundle: found, ask the user among candidates, or none pending. */
export type TargetResolution =
  | { readonly kind: 'target'; readonly target: BundleTarget }
  | { readonly kind: 'pick'; readonly candidates: readonly BundleInfo[]; readonly fileUri?: string }
  | { readonly kind: 'none' };

function isBundle(value: unknown): value is BundleInfo {
  return typeof value === 'object' && value !== null && typeof (value as { bundleId?: unknown }).bundleId === 'string' && Array.isArray((value as { files?: unknown }).files);
}

/** A URI string from a `vscode.Uri` or a string argument. */
function uriOf(arg: unknown): string | undefined {
  if (typeof arg === 'string' && /^[a-zA-Z][\w+.-]+:/.test(arg)) {
    return arg;
  }
  if (typeof arg === 'object' && arg !== null && 'scheme' in arg && typeof (arg as { toString?: unknown }).toString === 'function') {
    // vscode.Uri: toString(true) keeps the query readable for keel-proposed URIs.
    return (arg as { toString(skipEncoding?: boolean): string }).toString(true);
  }
  return undefined;
}

/** The bundles that change `fileUri`. */
export function bundlesForFile(pending: readonly BundleInfo[], fileUri: string): BundleInfo[] {
  return pending.filter((b) => b.files.some((f) => sameUri(f, fileUri)));
}

/**
 * Finds the bundle a command acts on. `arg` is what VS Code passed: a tree item
 * (`{bundle, fileUri?}`), a bundle, a bundle id, or a URI (the diff editor's resource).
 */
export function resolveBundleTarget(arg: unknown, activeUri: string | undefined, pending: readonly BundleInfo[]): TargetResolution {
  const byId = (id: string): BundleInfo =>
    pending.find((b) => b.bundleId === id) ?? { bundleId: id, nodeId: undefined, title: id, files: [], energy: undefined, sessionId: undefined };
  if (typeof arg === 'object' && arg !== null && 'bundle' in arg && isBundle(arg.bundle)) {
    const item = arg as { bundle: BundleInfo; fileUri?: unknown };
    return { kind: 'target', target: { bundle: item.bundle, ...(typeof item.fileUri === 'string' ? { fileUri: item.fileUri } : {}) } };
  }
  if (isBundle(arg)) {
    return { kind: 'target', target: { bundle: arg } };
  }
  if (typeof arg === 'object' && arg !== null && typeof (arg as { bundleId?: unknown }).bundleId === 'string') {
    return { kind: 'target', target: { bundle: byId((arg as { bundleId: string }).bundleId) } };
  }
  const uri = uriOf(arg) ?? activeUri;
  if (uri !== undefined) {
    const proposed = parseProposedUri(uri);
    if (proposed !== undefined) {
      return { kind: 'target', target: { bundle: byId(proposed.bundleId), fileUri: proposed.fileUri } };
    }
    const matching = bundlesForFile(pending, uri);
    if (matching.length === 1 && matching[0] !== undefined) {
      return { kind: 'target', target: { bundle: matching[0], fileUri: uri } };
    }
    if (matching.length > 1) {
      return { kind: 'pick', candidates: matching, fileUri: uri };
    }
  }
  if (typeof arg === 'string' && arg !== '' && uriOf(arg) === undefined) {
    return { kind: 'target', target: { bundle: byId(arg) } };
  }
  return pending.length === 0 ? { kind: 'none' } : { kind: 'pick', candidates: pending };
}

/** Quick-pick items for bundles. */
export function bundlePickItems(bundles: readonly BundleInfo[], roots: readonly string[]): PickItem<BundleInfo>[] {
  return bundles.map((bundle) => ({
    label: bundle.title,
    description: `${bundle.bundleId}${bundle.nodeId === undefined ? '' : ` · ${bundle.nodeId}`}`,
    detail: bundle.files.map((f) => relativeLabel(f, roots)).join(', '),
    value: bundle,
  }));
}

/** Quick-pick items for ledger entries. */
export function ledgerPickItems(entries: readonly LedgerEntry[]): PickItem<LedgerEntry>[] {
  return entries.map((entry) => ({
    label: entry.title,
    description: [entry.entry.slice(0, 10), entry.node, entry.energy].join(' · '),
    detail: entry.date,
    value: entry,
  }));
}

/** Everything the commands use. */
export interface CommandDeps {
  readonly api: EditorApi;
  readonly server: ServerControl;
  readonly session: SessionStore;
  readonly diffs: DiffCache;
  readonly info: InfoDocuments;
  readonly approvals: ApprovalTracker;
  readonly preview: BundlePreview;
  /** Keeps an open review on a bundle after a per-hunk decision. */
  readonly follower: ReviewFollower;
  readonly settings: () => KeelSettings;
  readonly log: Logger;
}

/** The palette commands' implementations, callable directly (the self-test does). */
export class KeelCommands {
  constructor(private readonly d: CommandDeps) {}

  /** Registers every `keel.*` command. */
  register(): Disposable[] {
    const c = Command;
    const entries: [string, string, (...args: unknown[]) => Promise<unknown>][] = [
      [c.startTask, 'start a task', (task) => this.startTask(task)],
      [c.approveBundle, 'approve the bundle', (arg) => this.approve(arg, false)],
      [c.approveFile, 'approve the file', (arg) => this.approve(arg, true)],
      [c.rejectBundle, 'reject the bundle', (arg, reason) => this.reject(arg, reason)],
      [c.rejectFile, 'reject the file', (arg, reason) => this.reject(arg, reason, true)],
      [c.approveHunk, 'approve the hunk', (arg) => this.approveHunks(arg)],
      [c.rejectHunk, 'reject the hunk', (arg, reason) => this.rejectHunks(arg, reason)],
      [c.correctBundle, 'correct the bundle', (arg, feedback) => this.correct(arg, feedback)],
      [c.showPendingDiff, 'show the diff', (arg) => this.showDiff(arg, false)],
      [c.showFileDiff, 'show the diff', (arg) => this.showDiff(arg, true)],
      [c.showStatus, 'show the status', () => this.showStatus()],
      [c.showLedger, 'show the ledger', () => this.showLedger()],
      [c.rollbackLedgerEntry, 'roll back', (entry) => this.rollback(entry)],
      [c.abortSession, 'abort the session', (force) => this.abort(force)],
      [c.resumeSession, 'resume the session', (id) => this.resume(id)],
      [c.restartServer, 'restart the server', (force) => this.restart(force)],
      [c.showOutput, 'show the output', () => { this.d.server.showOutput(); return Promise.resolve(); }],
      [c.refresh, 'refresh', () => this.d.session.refresh()],
      [c.plan, 'plan', (task) => this.plan(task)],
      [c.explain, 'explain', (question) => this.explain(question)],
    ];
    return entries.map(([id, action, handler]) => this.d.api.registerCommand(id, (...args: unknown[]) => this.guard(action, () => handler(...args))));
  }

  /** Runs a command's work; an error is logged and shown (with Show Output), and answers undefined. */
  private async guard(action: string, work: () => Promise<unknown>): Promise<unknown> {
    try {
      return await work();
    } catch (error) {
      this.d.log.error(`Could not ${action}`, error);
      const choice = await this.d.api.showErrorMessage(`Keel: could not ${action}: ${describeError(error)}`, 'Show Output');
      if (choice === 'Show Output') {
        this.d.server.showOutput();
      }
      return undefined;
    }
  }

  /**
   * A `keel.server.*` command that the editor runs from one of the server's CodeLenses or a
   * hover link (the language client's `executeCommand` middleware asks here first). Approve and
   * Reject, per hunk or of a whole bundle, go through the palette commands' flow (a rejection
   * asks for its reason, a bundle no longer pending is refused, previews settle, the review
   * follows); Diff opens the review diff. Undefined when the client should send the command
   * as it is (per-file decisions, other commands).
   */
  fromEditor(command: string, args: readonly unknown[]): Promise<unknown> | undefined {
    const arg = args[0];
    const hunks = readHunkDecision(arg) !== undefined;
    const given = (key: 'files' | 'hunks'): boolean => typeof arg === 'object' && arg !== null && (arg as Record<string, unknown>)[key] !== undefined && (arg as Record<string, unknown>)[key] !== null;
    // Per file, or hunks that are not a list of ids: the server decides (and refuses what it
    // must, naming the known ids). A malformed per-hunk request never becomes a whole one.
    if (given('files') || (given('hunks') && !hunks)) {
      return undefined;
    }
    switch (command) {
      case ServerCommand.approve:
        return this.guard(hunks ? 'approve the hunk' : 'approve the bundle', () => (hunks ? this.approveHunks(arg) : this.approve(arg, false)));
      case ServerCommand.reject: {
        const reason = (arg as { reason?: unknown } | undefined)?.reason;
        return this.guard(hunks ? 'reject the hunk' : 'reject the bundle', () => (hunks ? this.rejectHunks(arg, reason) : this.reject(arg, reason)));
      }
      case ServerCommand.diff:
        return this.guard('show the diff', () => this.showDiff(arg, false));
      default:
        return undefined;
    }
  }

  /** Waits for the server; tells the user why not when it is not running. */
  private async ready(): Promise<boolean> {
    if (this.d.server.state === 'running' || (this.d.server.state === 'starting' && (await this.d.server.whenRunning(30_000)))) {
      return true;
    }
    await this.d.server.explainNotRunning();
    return false;
  }

  /** Keel: Start Task. Resolves to the new session id. */
  async startTask(taskArg?: unknown): Promise<string | undefined> {
    const task =
      typeof taskArg === 'string' && taskArg.trim() !== ''
        ? taskArg.trim()
        : await this.d.api.showInputBox({
            title: 'Keel: Start Task',
            prompt: 'Describe the change. Keel plans it, writes each part in a sandbox, verifies it and asks you to approve.',
            placeHolder: 'e.g. Add a --verbose flag to the CLI, with tests',
            ignoreFocusOut: true,
            validateInput: (value) => (value.trim() === '' ? 'Describe the task' : undefined),
          });
    if (task === undefined || task.trim() === '' || !(await this.ready())) {
      return undefined;
    }
    const mode = this.d.settings().mode;
    const result = await this.d.server.executeCommand(ServerCommand.startSession, { task: task.trim(), ...(mode === undefined ? {} : { mode }) });
    const sessionId = readSessionId(result);
    this.d.log.info(`Started session ${sessionId}: ${task.trim()}`);
    void this.d.session.refresh();
    void this.d.api.executeCommand('keel.dag.focus').then(undefined, () => undefined);
    return sessionId;
  }

  /** Finds the bundle (asking when it must); undefined when the user cancelled or none is pending. */
  private async target(arg: unknown, placeHolder: string): Promise<BundleTarget | undefined> {
    let resolution = resolveBundleTarget(arg, this.d.api.activeEditorUri(), this.d.session.current?.pending ?? []);
    if (resolution.kind !== 'target') {
      // The list may be stale: ask the server before asking the user.
      const fresh = await this.d.session.refresh();
      resolution = resolveBundleTarget(arg, this.d.api.activeEditorUri(), fresh?.pending ?? []);
    }
    switch (resolution.kind) {
      case 'target':
        return resolution.target;
      case 'none':
        await this.d.api.showInformationMessage('Keel: no bundle is waiting for review.');
        return undefined;
      case 'pick': {
        const picked = await this.d.api.showQuickPick(bundlePickItems(resolution.candidates, this.d.api.workspaceRoots()), {
          title: 'Keel: pending bundles',
          placeHolder,
          matchOnDescription: true,
          matchOnDetail: true,
        });
        return picked === undefined ? undefined : { bundle: picked.value, ...(resolution.fileUri === undefined ? {} : { fileUri: resolution.fileUri }) };
      }
    }
  }

  /**
   * The file a per-file command acts on: the target's (the diff or editor it came from), else
   * one the user picks among the bundle's files. Undefined when cancelled or none is known.
   */
  private async targetFile(target: BundleTarget, placeHolder: string): Promise<string | undefined> {
    if (target.fileUri !== undefined) {
      return target.fileUri;
    }
    const files = target.bundle.files;
    if (files.length === 1) {
      return files[0];
    }
    if (files.length === 0) {
      await this.d.api.showInformationMessage('Keel: open a file of the bundle (or its diff) to act on one file.');
      return undefined;
    }
    const roots = this.d.api.workspaceRoots();
    const picked = await this.d.api.showQuickPick(
      files.map((uri) => ({ label: relativeLabel(uri, roots), description: target.bundle.title, value: uri })),
      { title: `Keel: files of "${target.bundle.title}"`, placeHolder },
    );
    return picked?.value;
  }

  /** Keel: Approve Bundle / Approve This File. Resolves to the ledger entry. */
  async approve(arg: unknown, perFile: boolean): Promise<string | undefined> {
    if (!(await this.ready())) {
      return undefined;
    }
    const target = await this.target(arg, perFile ? 'Approve a file of which bundle?' : 'Approve which bundle?');
    if (target === undefined) {
      return undefined;
    }
    const file = perFile ? await this.targetFile(target, 'Approve which file?') : undefined;
    if (perFile && file === undefined) {
      return undefined;
    }
    const files = file === undefined ? undefined : [file];
    const result = await this.d.approvals.track(() =>
      this.d.server.executeCommand(ServerCommand.approve, { bundleId: target.bundle.bundleId, ...(files === undefined ? {} : { files }) }),
    );
    const entry = readLedgerEntry(result);
    // The approved files are on disk now: their previewed buffers go back to the (new) disk text,
    // so none stays dirty. The rest of a per-file approval stays previewed until it is re-proposed.
    await this.d.preview.settle(target.bundle.bundleId, files);
    await this.d.preview.settleApplied(files ?? target.bundle.files);
    const what = this.describeTarget(target, files);
    this.d.log.info(`Approved ${what}: ledger ${entry}`);
    void this.d.api.showInformationMessage(`Keel: approved ${what} (ledger ${entry.slice(0, 10)}).`);
    void this.d.session.refresh();
    return entry;
  }

  private describeTarget(target: BundleTarget, files: readonly string[] | undefined): string {
    return files === undefined ? `"${target.bundle.title}"` : `${relativeLabel(files[0] ?? '', this.d.api.workspaceRoots())} of "${target.bundle.title}"`;
  }

  /**
   * Keel: Reject Bundle / Reject This File, with an optional reason (the model sees it). Per file,
   * only that file's change is dropped; the server verifies the rest again and proposes it as a
   * new bundle.
   */
  async reject(arg: unknown, reasonArg?: unknown, perFile = false): Promise<boolean> {
    if (!(await this.ready())) {
      return false;
    }
    const target = await this.target(arg, perFile ? 'Reject a file of which bundle?' : 'Reject which bundle?');
    if (target === undefined) {
      return false;
    }
    const file = perFile ? await this.targetFile(target, 'Reject which file?') : undefined;
    if (perFile && file === undefined) {
      return false;
    }
    const files = file === undefined ? undefined : [file];
    const what = this.describeTarget(target, files);
    const reason =
      typeof reasonArg === 'string'
        ? reasonArg
        : await this.d.api.showInputBox({
            title: `Keel: Reject ${what}`,
            prompt: files === undefined
              ? 'Why? (optional: the model sees the reason when it regenerates; Escape cancels the rejection)'
              : 'Why? (optional: the model sees the reason; the rest of the bundle is verified again and proposed anew; Escape cancels)',
            ignoreFocusOut: true,
          });
    if (reason === undefined) {
      return false;
    }
    await this.d.server.executeCommand(ServerCommand.reject, {
      bundleId: target.bundle.bundleId,
      ...(files === undefined ? {} : { files }),
      ...(reason.trim() === '' ? {} : { reason: reason.trim() }),
    });
    await this.d.preview.settle(target.bundle.bundleId, files);
    this.d.log.info(`Rejected ${what} (${target.bundle.bundleId})`);
    void this.d.session.refresh();
    return true;
  }

  /**
   * The hunks a per-hunk command decides: the argument's (a lens's `{bundleId, hunks}`), else
   * the only hunk of the bundle, else one the user picks (among the active file's hunks when a
   * file of the bundle or its review is active). A bundle that is no longer pending is refused
   * here, with a message, before anything reaches the server: its lenses were out of date.
   */
  private async targetHunks(arg: unknown, verb: string): Promise<HunkTarget | undefined> {
    const decision = readHunkDecision(arg);
    let target: BundleTarget | undefined;
    if (decision !== undefined) {
      let bundle = this.d.session.current?.pending.find((b) => b.bundleId === decision.bundleId);
      if (bundle === undefined) {
        bundle = (await this.d.session.refresh())?.pending.find((b) => b.bundleId === decision.bundleId);
      }
      if (bundle === undefined) {
        await this.d.api.showInformationMessage(`Keel: bundle ${decision.bundleId} is no longer pending (it was decided or replaced); nothing was ${verb}d.`);
        return undefined;
      }
      target = { bundle };
    } else {
      target = await this.target(arg, `${verb === 'approve' ? 'Approve' : 'Reject'} hunks of which bundle?`);
    }
    if (target === undefined) {
      return undefined;
    }
    const files = await this.d.diffs.get(target.bundle.bundleId);
    const all = files.flatMap((f) => f.hunks.map((h) => h.id));
    if (decision !== undefined) {
      return { bundle: target.bundle, hunks: decision.hunks, remaining: all.filter((id) => !decision.hunks.includes(id)).length };
    }
    const fileUri = target.fileUri;
    const scope = fileUri === undefined ? files : files.filter((f) => sameUri(f.uri, fileUri));
    const items = hunkPickItems(scope.length > 0 ? scope : files, this.d.api.workspaceRoots());
    if (items.length === 0) {
      await this.d.api.showInformationMessage(`Keel: bundle "${target.bundle.title}" has no hunks to ${verb}.`);
      return undefined;
    }
    const picked =
      items.length === 1
        ? items[0]
        : await this.d.api.showQuickPick(items, { title: `Keel: hunks of "${target.bundle.title}"`, placeHolder: `${verb === 'approve' ? 'Approve' : 'Reject'} which hunk?`, matchOnDescription: true, matchOnDetail: true });
    return picked === undefined ? undefined : { bundle: target.bundle, hunks: [picked.value.id], remaining: all.length - 1 };
  }

  private pendingIds(): Set<string> {
    return new Set((this.d.session.current?.pending ?? []).map((b) => b.bundleId));
  }

  private describeHunks(target: HunkTarget): string {
    const count = target.hunks.length === 1 ? 'a hunk' : `${String(target.hunks.length)} hunks`;
    return `${count} of "${target.bundle.title}"`;
  }

  /** What happens to the rest of a bundle after a per-hunk decision. */
  private static rest(remaining: number): string {
    return remaining === 0 ? '' : ` The other ${remaining === 1 ? 'hunk is' : `${String(remaining)} hunks are`} verified again and come back as a new bundle.`;
  }

  /**
   * Keel: Approve Hunk. The chosen hunks alone are verified again as a bundle of their own and,
   * when stable, committed (one ledger entry); the rest comes back as a new bundle. Resolves to
   * the ledger entry.
   */
  async approveHunks(arg: unknown): Promise<string | undefined> {
    if (!(await this.ready())) {
      return undefined;
    }
    const target = await this.targetHunks(arg, 'approve');
    if (target === undefined) {
      return undefined;
    }
    const before = this.pendingIds();
    // The bundle is replaced by its parts: its previews (the whole proposal) go back to the
    // disk first, so the editor holds no text that is neither the base nor the approved part.
    await this.d.preview.settle(target.bundle.bundleId);
    const result = await this.d.approvals.track(() =>
      this.d.server.executeCommand(ServerCommand.approve, { bundleId: target.bundle.bundleId, hunks: [...target.hunks] }),
    );
    const entry = readLedgerEntry(result);
    await this.d.preview.settleApplied(target.bundle.files);
    const what = this.describeHunks(target);
    this.d.log.info(`Approved ${what} (${target.hunks.join(', ')}): ledger ${entry}`);
    void this.d.api.showInformationMessage(`Keel: approved ${what} (ledger ${entry.slice(0, 10)}).${KeelCommands.rest(target.remaining)}`);
    void this.d.follower.follow(target.bundle, target.remaining, before);
    void this.d.session.refresh();
    return entry;
  }

  /**
   * Keel: Reject Hunk, with an optional reason: the model sees the rejected lines and the reason
   * in the node's next request. The rest comes back as a new bundle (a whole rejection when
   * nothing remains). Escape in the reason box cancels.
   */
  async rejectHunks(arg: unknown, reasonArg?: unknown): Promise<boolean> {
    if (!(await this.ready())) {
      return false;
    }
    const target = await this.targetHunks(arg, 'reject');
    if (target === undefined) {
      return false;
    }
    const what = this.describeHunks(target);
    const reason =
      typeof reasonArg === 'string'
        ? reasonArg
        : await this.d.api.showInputBox({
            title: `Keel: Reject ${what}`,
            prompt: `Why? (optional: the model sees these lines and the reason when it regenerates; Escape cancels the rejection)${KeelCommands.rest(target.remaining)}`,
            ignoreFocusOut: true,
          });
    if (reason === undefined) {
      return false;
    }
    const before = this.pendingIds();
    await this.d.preview.settle(target.bundle.bundleId);
    readDecision(
      await this.d.server.executeCommand(ServerCommand.reject, {
        bundleId: target.bundle.bundleId,
        hunks: [...target.hunks],
        ...(reason.trim() === '' ? {} : { reason: reason.trim() }),
      }),
    );
    this.d.log.info(`Rejected ${what} (${target.hunks.join(', ')})`);
    void this.d.follower.follow(target.bundle, target.remaining, before);
    void this.d.session.refresh();
    return true;
  }

  /** Keel: Correct Bundle: regenerate with the user's feedback in the prompt. */
  async correct(arg: unknown, feedbackArg?: unknown): Promise<boolean> {
    if (!(await this.ready())) {
      return false;
    }
    const target = await this.target(arg, 'Correct which bundle?');
    if (target === undefined) {
      return false;
    }
    const feedback =
      typeof feedbackArg === 'string' && feedbackArg.trim() !== ''
        ? feedbackArg
        : await this.d.api.showInputBox({
            title: `Keel: Correct "${target.bundle.title}"`,
            prompt: 'What should change? The model regenerates the bundle with this in its prompt.',
            ignoreFocusOut: true,
            validateInput: (value) => (value.trim() === '' ? 'Say what should change' : undefined),
          });
    if (feedback === undefined || feedback.trim() === '') {
      return false;
    }
    await this.d.server.executeCommand(ServerCommand.correct, { bundleId: target.bundle.bundleId, feedback: feedback.trim() });
    this.d.log.info(`Asked for a correction of "${target.bundle.title}": ${feedback.trim()}`);
    void this.d.session.refresh();
    return true;
  }

  /** Keel: Show Pending Diff (a bundle), or one file's diff from the tree. */
  async showDiff(arg: unknown, perFile: boolean): Promise<void> {
    if (!(await this.ready())) {
      return;
    }
    const target = await this.target(arg, 'Show the diff of which bundle?');
    if (target !== undefined) {
      await showBundleDiff(this.d.api, this.d.diffs, target.bundle, perFile ? target.fileUri : undefined, this.d.preview);
    }
  }

  /** Keel: Show Status. */
  async showStatus(): Promise<SessionInfo | undefined> {
    const summary = this.d.server.state === 'running' ? await this.d.session.refresh() : this.d.session.current;
    if (this.d.server.state === 'missing') {
      await this.d.server.explainNotRunning();
    }
    await this.d.info.show('/Keel Status.md', renderStatusMarkdown(summary, this.d.server.state, this.d.api.workspaceRoots()));
    return summary;
  }

  private async ledger(): Promise<LedgerEntry[]> {
    return readLedger(await this.d.server.executeCommand(ServerCommand.ledger, { limit: 50 }));
  }

  /** Keel: Show Ledger. */
  async showLedger(): Promise<LedgerEntry[]> {
    if (!(await this.ready())) {
      return [];
    }
    const entries = await this.ledger();
    await this.d.info.show('/Keel Ledger.md', renderLedgerMarkdown(entries));
    return entries;
  }

  /** Keel: Roll Back Ledger Entry: a quick pick of entries, a confirmation, a revert commit. */
  async rollback(entryArg?: unknown): Promise<string | undefined> {
    if (!(await this.ready())) {
      return undefined;
    }
    let entry: string | undefined = typeof entryArg === 'string' && entryArg !== '' ? entryArg : undefined;
    if (entry === undefined) {
      const entries = await this.ledger();
      if (entries.length === 0) {
        await this.d.api.showInformationMessage('Keel: the ledger has no entries to roll back.');
        return undefined;
      }
      const picked = await this.d.api.showQuickPick(ledgerPickItems(entries), { title: 'Keel: roll back a ledger entry', placeHolder: 'The entry is reverted by a new commit; history is not rewritten', matchOnDescription: true });
      if (picked === undefined) {
        return undefined;
      }
      const ok = await this.d.api.confirm(`Roll back "${picked.value.title}"?`, `Keel makes a revert commit of ${picked.value.entry.slice(0, 10)} (itself a ledger entry). Your other changes stay as they are.`, 'Roll Back');
      if (!ok) {
        return undefined;
      }
      entry = picked.value.entry;
    }
    const result = await this.d.server.executeCommand(ServerCommand.rollback, { entry });
    const revert = readLedgerEntry(result);
    void this.d.api.showInformationMessage(`Keel: rolled back ${entry.slice(0, 10)} (revert ${revert.slice(0, 10)}).`);
    void this.d.session.refresh();
    return revert;
  }

  /** Keel: Abort Session, after a confirmation (skipped when called with `true`). */
  async abort(force?: unknown): Promise<boolean> {
    if (!(await this.ready())) {
      return false;
    }
    if (force !== true && !(await this.d.api.confirm('Abort the Keel session?', 'Running work stops; committed nodes and the ledger stay. Resume later with Keel: Resume Session.', 'Abort'))) {
      return false;
    }
    await this.d.server.executeCommand(ServerCommand.abort, {});
    void this.d.session.refresh();
    return true;
  }

  /** Keel: Restart Server; a running session would be aborted, so that needs a confirmation. */
  async restart(force?: unknown): Promise<boolean> {
    const state = this.d.session.current?.state;
    const busy = state === 'running' || state === 'planning' || state === 'verifying';
    if (busy && force !== true && !(await this.d.api.confirm('Restart the Keel server?', 'A session is running: restarting aborts it. Committed nodes stay; Keel: Resume Session continues it.', 'Restart'))) {
      return false;
    }
    await this.d.server.restart();
    return true;
  }

  /** Keel: Resume Session: the last one, or the id given. */
  async resume(idArg?: unknown): Promise<boolean> {
    if (!(await this.ready())) {
      return false;
    }
    let id = typeof idArg === 'string' ? idArg : undefined;
    if (id === undefined) {
      const known = (await this.d.session.refresh())?.sessions.filter((s) => !s.running) ?? [];
      if (known.length > 0) {
        const items: PickItem<string>[] = [
          { label: 'The last session', description: 'keel resume --last', value: '' },
          ...[...known].reverse().map((s) => ({ label: s.task || s.sessionId, description: `${s.sessionId}${s.outcome === undefined ? '' : ` · ${s.outcome}`}`, value: s.sessionId })),
        ];
        id = (await this.d.api.showQuickPick(items, { title: 'Keel: Resume Session', placeHolder: 'Which session?' }))?.value;
      } else {
        id = await this.d.api.showInputBox({ title: 'Keel: Resume Session', prompt: 'Session id to resume (empty: the last session)', ignoreFocusOut: true });
      }
    }
    if (id === undefined) {
      return false;
    }
    await this.d.server.executeCommand(ServerCommand.resume, id.trim() === '' ? {} : { sessionId: id.trim() });
    void this.d.session.refresh();
    return true;
  }

  /** The active editor's file (a `file:` URI), which the server shows the model first. */
  private activeFile(): { file?: string } {
    const uri = this.d.api.activeEditorUri();
    return uri !== undefined && uri.startsWith('file:') ? { file: uri } : {};
  }

  /** Asks for the text of a read-only mode, unless it came as the argument. */
  private async askText(arg: unknown, title: string, prompt: string, placeHolder: string): Promise<string | undefined> {
    const text =
      typeof arg === 'string' && arg.trim() !== ''
        ? arg
        : await this.d.api.showInputBox({
            title,
            prompt,
            placeHolder,
            ignoreFocusOut: true,
            validateInput: (value) => (value.trim() === '' ? 'Type something to ask' : undefined),
          });
    return text === undefined || text.trim() === '' ? undefined : text.trim();
  }

  /** Keel: Plan. Explores and plans the task like a session, changes nothing; the plan opens as Markdown. */
  async plan(taskArg?: unknown): Promise<string | undefined> {
    const task = await this.askText(taskArg, 'Keel: Plan', 'Describe the change. Keel shows the plan it would follow; nothing is changed.', 'e.g. Add a --verbose flag to the CLI, with tests');
    if (task === undefined || !(await this.ready())) {
      return undefined;
    }
    const result = await this.d.server.executeCommand(ServerCommand.plan, { task, ...this.activeFile() });
    const markdown = readPlanMarkdown(result);
    await this.d.info.show('/Keel Plan.md', markdown);
    return markdown;
  }

  /** Keel: Explain. A read-only answer citing path:line; opens as Markdown. */
  async explain(questionArg?: unknown): Promise<string | undefined> {
    const question = await this.askText(questionArg, 'Keel: Explain', 'A question about the code, or a symbol. Keel answers citing path:line; nothing is changed.', 'e.g. How does approval reach the ledger?');
    if (question === undefined || !(await this.ready())) {
      return undefined;
    }
    const result = await this.d.server.executeCommand(ServerCommand.explain, { question, ...this.activeFile() });
    const markdown = readExplanationMarkdown(result);
    await this.d.info.show('/Keel Explain.md', markdown);
    return markdown;
  }
}
