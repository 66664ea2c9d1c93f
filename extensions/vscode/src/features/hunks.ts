/**
 * Reviewing a bundle hunk by hunk (docs/reference/lsp.md, "Per-hunk review").
 *
 * `keel.server.diff` gives each file's hunks: its changed regions, with zero lines of context
 * and stable ids. In the review diff, the proposal side (a `keel-proposed:` document) carries
 * a CodeLens pair over each hunk, **Approve hunk** and **Reject hunk**, which run the palette
 * commands `keel.approveHunk` / `keel.rejectHunk` with `{bundleId, hunks: [id]}`. When the
 * preview is on, the proposal side is the file itself and the server's own lenses (the same
 * pair, `keel.server.approve` / `keel.server.reject` with `hunks`) stand there instead; the
 * language client's middleware sends those through the same commands, so both ask for a
 * rejection's reason, refuse a bundle that is no longer pending, and follow the bundle.
 *
 * After a per-hunk decision the server proposes the hunks not decided as a new bundle of the
 * same node (same hunk ids). {@link ReviewFollower} keeps an open review on the bundle: it
 * closes the decided bundle's diff tabs and opens the new bundle's diff, or just closes them
 * when nothing remains.
 */

import type * as vscode from 'vscode';
import { Emitter, type Disposable, type Event } from '../common/events';
import type { Logger } from '../common/log';
import type { BundleInfo, Hunk, SessionInfo } from '../common/protocol';
import type { SessionStore } from '../common/session';
import type { EditorApi, EditorTab } from '../common/vscodeapi';
import { parseProposedUri, type DiffCache } from './review';

/** The per-hunk palette commands (also what the proposal side's lenses run). */
export const HunkCommand = {
  approveHunk: 'keel.approveHunk',
  rejectHunk: 'keel.rejectHunk',
} as const;

/** What a per-hunk command takes: a bundle and some of its hunk ids (a lens's argument). */
export interface HunkDecision {
  readonly bundleId: string;
  readonly hunks: readonly string[];
  readonly reason?: string;
}

/**
 * `arg` as a {@link HunkDecision}, or undefined when it is not one. A `hunks` that is not a
 * non-empty list of strings is not a decision (the caller asks the user instead).
 */
export function readHunkDecision(arg: unknown): HunkDecision | undefined {
  if (typeof arg !== 'object' || arg === null) {
    return undefined;
  }
  const { bundleId, hunks, reason } = arg as { bundleId?: unknown; hunks?: unknown; reason?: unknown };
  if (typeof bundleId !== 'string' || bundleId === '' || !Array.isArray(hunks) || hunks.length === 0) {
    return undefined;
  }
  if (!hunks.every((id): id is string => typeof id === 'string' && id !== '')) {
    return undefined;
  }
  return { bundleId, hunks, ...(typeof reason === 'string' ? { reason } : {}) };
}

/**
 * The 0-based line of the proposal side where a hunk's lens goes: its first added line, or,
 * for a pure deletion, the line that follows the deleted text (the last line at the end).
 */
export function hunkLine(hunk: Hunk, lineCount: number): number {
  const line = hunk.newLines > 0 ? hunk.newStart - 1 : hunk.newStart;
  return Math.max(0, Math.min(line, lineCount - 1));
}

/** A hunk's size for labels: `+3 −2`. */
export function hunkSize(hunk: Hunk): string {
  return `+${String(hunk.added.length)} −${String(hunk.removed.length)}`;
}

/** CodeLenses over each hunk on the proposal side (`keel-proposed:`, `side=after`) of a review diff. */
export class HunkLensProvider implements vscode.CodeLensProvider, Disposable {
  private readonly emitter: vscode.EventEmitter<undefined>;
  private readonly subscriptions: Disposable[];
  readonly onDidChangeCodeLenses: vscode.Event<undefined>;

  constructor(
    private readonly api: Pick<EditorApi, 'eventEmitter' | 'codeLens'>,
    private readonly cache: DiffCache,
    private readonly session: SessionStore,
  ) {
    this.emitter = api.eventEmitter<undefined>();
    this.onDidChangeCodeLenses = this.emitter.event;
    // Pending bundles changed (the cache is dropped then too): no lens may outlive its bundle.
    this.subscriptions = [cache.onDidInvalidate(() => { this.emitter.fire(undefined); }), session.onDidChange(() => { this.emitter.fire(undefined); })];
  }

  async provideCodeLenses(document: vscode.TextDocument): Promise<vscode.CodeLens[]> {
    const ref = parseProposedUri(document.uri.toString(true));
    if (ref?.side !== 'after' || !(this.session.current?.pending ?? []).some((b) => b.bundleId === ref.bundleId)) {
      return [];
    }
    const file = await this.cache.file(ref.bundleId, ref.fileUri).catch(() => undefined);
    return (file?.hunks ?? []).flatMap((hunk) => {
      const line = hunkLine(hunk, document.lineCount);
      const args: HunkDecision[] = [{ bundleId: ref.bundleId, hunks: [hunk.id] }];
      return [
        this.api.codeLens(line, 'Keel: Approve hunk', HunkCommand.approveHunk, args, `Approve ${hunk.header} (${hunkSize(hunk)}) alone; the rest comes back as a new bundle`),
        this.api.codeLens(line, 'Keel: Reject hunk', HunkCommand.rejectHunk, args, `Reject ${hunk.header} (${hunkSize(hunk)}), with a reason the model sees`),
      ];
    });
  }

  dispose(): void {
    this.subscriptions.forEach((s) => { s.dispose(); });
    this.emitter.dispose();
  }
}

/** What became of an open review after a per-hunk decision. */
export type FollowOutcome =
  | { readonly kind: 'none' } // no review of the bundle was open
  | { readonly kind: 'closed'; readonly bundleId: string } // nothing remains (or nothing came back)
  | { readonly kind: 'reopened'; readonly bundleId: string; readonly next: BundleInfo };

export interface FollowerDeps {
  readonly api: Pick<EditorApi, 'editorTabs'>;
  readonly session: SessionStore;
  /** Opens the review of a bundle (Show Pending Diff). */
  open(bundle: BundleInfo): Promise<void>;
  readonly log: Logger;
  /** How long to wait for the rest to come back as a new bundle. */
  readonly timeoutMs?: number;
  readonly timers?: { setTimeout(callback: () => void, ms: number): unknown; clearTimeout(handle: unknown): void };
}

/** Keeps an open review on a bundle whose hunks were decided one by one. */
export class ReviewFollower implements Disposable {
  private readonly followed = new Emitter<FollowOutcome>();
  /** Fires each outcome of {@link follow}. */
  readonly onDidFollow: Event<FollowOutcome> = this.followed.event;

  constructor(private readonly d: FollowerDeps) {}

  /** The open tabs that show either side of a bundle's review. */
  tabsOf(bundleId: string): EditorTab[] {
    return this.d.api.editorTabs().filter((tab) => tab.uris.some((uri) => parseProposedUri(uri)?.bundleId === bundleId));
  }

  /**
   * After a per-hunk decision on `decided`: when its review is open, waits for the rest to come
   * back as a new bundle of the same node (one not in `before`, the pending ids at the time of
   * the decision), then shows that bundle's review instead; closes the review when `remaining`
   * is 0 or nothing came back in time. A review the user closed meanwhile is not reopened.
   */
  async follow(decided: BundleInfo, remaining: number, before: ReadonlySet<string>): Promise<FollowOutcome> {
    let outcome: FollowOutcome = { kind: 'none' };
    if (this.tabsOf(decided.bundleId).length > 0) {
      const next = remaining > 0 ? await this.next(decided, before) : undefined;
      if (this.tabsOf(decided.bundleId).length === 0) {
        // The user closed the review while the rest was verified: it stays closed.
        this.followed.fire(outcome);
        return outcome;
      }
      await this.close(decided.bundleId);
      if (next === undefined) {
        outcome = { kind: 'closed', bundleId: decided.bundleId };
      } else {
        await this.d.open(next);
        outcome = { kind: 'reopened', bundleId: decided.bundleId, next };
      }
    }
    this.followed.fire(outcome);
    return outcome;
  }

  private async close(bundleId: string): Promise<void> {
    for (const tab of this.tabsOf(bundleId)) {
      await Promise.resolve(tab.close()).catch((error: unknown) => {
        this.d.log.warn(`Could not close the review of ${bundleId}: ${error instanceof Error ? error.message : String(error)}`);
      });
    }
  }

  private next(decided: BundleInfo, before: ReadonlySet<string>): Promise<BundleInfo | undefined> {
    const find = (summary: SessionInfo | undefined): BundleInfo | undefined =>
      summary?.pending.find((b) => !before.has(b.bundleId) && b.bundleId !== decided.bundleId && (decided.nodeId === undefined || b.nodeId === decided.nodeId));
    const now = find(this.d.session.current);
    if (now !== undefined) {
      return Promise.resolve(now);
    }
    const timers = this.d.timers ?? { setTimeout: (c: () => void, ms: number): unknown => setTimeout(c, ms), clearTimeout: (h: unknown) => { clearTimeout(h as ReturnType<typeof setTimeout>); } };
    const timeoutMs = this.d.timeoutMs ?? 180_000;
    return new Promise((resolve) => {
      const done = (bundle: BundleInfo | undefined): void => {
        timers.clearTimeout(timer);
        subscription.dispose();
        resolve(bundle);
      };
      const timer = timers.setTimeout(() => {
        this.d.log.info(`Bundle ${decided.bundleId}: the rest did not come back within ${String(timeoutMs / 1000)} s; closing its review`);
        done(undefined);
      }, timeoutMs);
      const subscription = this.d.session.onDidChange((summary) => {
        const found = find(summary);
        if (found !== undefined) {
          done(found);
        }
      });
    });
  }

  dispose(): void {
    this.followed.dispose();
  }
}
