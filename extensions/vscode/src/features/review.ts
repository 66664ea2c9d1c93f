/**
 * Reviewing pending bundles in VS Code's own diff editors.
 *
 * Each pending file is served by a `TextDocumentContentProvider` for the `keel-proposed:`
 * scheme, from `keel.server.diff`: the `before` side (what the bundle was made against) and
 * the `after` side (what approval writes). Serving both sides from the server, rather than
 * diffing against the file on disk, shows exactly the change that approval applies, also for
 * created and deleted files. Show Pending Diff opens `vscode.diff` for one file or
 * `vscode.changes` (the multi-file diff editor) for a bundle; the diff editor's title bar
 * carries Approve File / Approve Bundle / Reject / Correct (package.json `menus.editor/title`,
 * `resourceScheme == keel-proposed`).
 */

import type * as vscode from 'vscode';
import type { ServerConnection } from '../common/connection';
import { Emitter, type Disposable, type Event } from '../common/events';
import type { Logger } from '../common/log';
import { readDiff, ServerCommand, type BundleInfo, type DiffFile } from '../common/protocol';
import type { SessionStore } from '../common/session';
import { baseName, relativeLabel, sameUri } from '../common/uris';
import type { EditorApi } from '../common/vscodeapi';
import type { BundlePreview } from './preview';

export const PROPOSED_SCHEME = 'keel-proposed';

export type Side = 'before' | 'after';

/** What a `keel-proposed:` URI points at. */
export interface ProposedRef {
  readonly bundleId: string;
  readonly fileUri: string;
  readonly side: Side;
}

/**
 * A `keel-proposed:` URI for one side of one file of a bundle. The path keeps the file's own
 * path, so VS Code picks the language (and the tab shows the file name); the query says which
 * bundle, file and side.
 */
export function proposedUri(ref: ProposedRef): string {
  const match = /^[a-zA-Z][\w+.-]*:(?:\/\/[^/]*)?(\/.*)?$/s.exec(ref.fileUri);
  const filePath = (match?.[1] ?? `/${baseName(ref.fileUri)}`).replace(/[?#].*$/s, '');
  const query = new URLSearchParams({ bundle: ref.bundleId, side: ref.side, file: ref.fileUri });
  return `${PROPOSED_SCHEME}:${filePath}?${query.toString()}`;
}

/** Reads a `keel-proposed:` URI (a string or a `vscode.Uri`'s `toString(true)`); undefined for others. */
export function parseProposedUri(uri: string): ProposedRef | undefined {
  if (!uri.toLowerCase().startsWith(`${PROPOSED_SCHEME}:`)) {
    return undefined;
  }
  const queryStart = uri.indexOf('?');
  if (queryStart < 0) {
    return undefined;
  }
  const params = new URLSearchParams(uri.slice(queryStart + 1).replace(/#.*$/s, ''));
  const bundleId = params.get('bundle');
  const fileUri = params.get('file');
  const side = params.get('side') === 'before' ? 'before' : 'after';
  return bundleId !== null && fileUri !== null ? { bundleId, fileUri, side } : undefined;
}

/** The diffs of pending bundles, fetched once per bundle and dropped when the session changes. */
export class DiffCache implements Disposable {
  private readonly diffs = new Map<string, Promise<DiffFile[]>>();
  private readonly changed = new Emitter<void>();
  private readonly subscription: Disposable;
  /** Fires when cached diffs were dropped: open proposed documents must be read again. */
  readonly onDidInvalidate: Event<void> = this.changed.event;

  constructor(
    private readonly server: ServerConnection,
    session: SessionStore,
  ) {
    this.subscription = session.onDidChange(() => { this.invalidate(); });
  }

  /** The files of a bundle's diff. */
  get(bundleId: string): Promise<DiffFile[]> {
    let diff = this.diffs.get(bundleId);
    if (diff === undefined) {
      diff = this.server
        .executeCommand(ServerCommand.diff, { bundleId })
        .then(readDiff);
      diff.catch(() => this.diffs.delete(bundleId));
      this.diffs.set(bundleId, diff);
    }
    return diff;
  }

  /** One file of a bundle's diff, or undefined if the bundle does not touch it. */
  async file(bundleId: string, fileUri: string): Promise<DiffFile | undefined> {
    return (await this.get(bundleId)).find((f) => sameUri(f.uri, fileUri));
  }

  invalidate(): void {
    if (this.diffs.size > 0) {
      this.diffs.clear();
      this.changed.fire();
    }
  }

  dispose(): void {
    this.subscription.dispose();
    this.changed.dispose();
  }
}

/** Serves `keel-proposed:` documents from the diff cache. */
export class ProposedContentProvider implements vscode.TextDocumentContentProvider, Disposable {
  private readonly emitter: vscode.EventEmitter<vscode.Uri>;
  private readonly served = new Map<string, vscode.Uri>();
  private readonly subscription: Disposable;
  readonly onDidChange: vscode.Event<vscode.Uri>;

  constructor(
    api: Pick<EditorApi, 'eventEmitter'>,
    private readonly cache: DiffCache,
    private readonly log: Logger,
  ) {
    this.emitter = api.eventEmitter<vscode.Uri>();
    this.onDidChange = this.emitter.event;
    this.subscription = cache.onDidInvalidate(() => {
      this.served.forEach((uri) => { this.emitter.fire(uri); });
    });
  }

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const text = uri.toString(true);
    const ref = parseProposedUri(text);
    if (ref === undefined) {
      return '';
    }
    this.served.set(text, uri);
    try {
      const file = await this.cache.file(ref.bundleId, ref.fileUri);
      if (file === undefined) {
        return `// Keel: bundle ${ref.bundleId} is no longer pending, or does not change this file.\n`;
      }
      return ref.side === 'before' ? file.before : file.after;
    } catch (error) {
      this.log.warn(`Could not read the diff of bundle ${ref.bundleId}: ${error instanceof Error ? error.message : String(error)}`);
      return `// Keel: could not read bundle ${ref.bundleId} from the server (see Keel: Show Output).\n`;
    }
  }

  dispose(): void {
    this.subscription.dispose();
    this.emitter.dispose();
  }
}

/**
 * The arguments of `vscode.diff` for one file of a bundle. The right side is the file itself when
 * it shows the proposal as a preview (so the user's language servers mark it up), else the
 * proposal served by the `keel-proposed:` provider.
 */
export function diffArguments(bundle: BundleInfo, file: DiffFile, roots: readonly string[], previewed = false): [string, string, string] {
  const left = proposedUri({ bundleId: bundle.bundleId, fileUri: file.uri, side: 'before' });
  const right = previewed ? file.uri : proposedUri({ bundleId: bundle.bundleId, fileUri: file.uri, side: 'after' });
  const what = file.created ? 'new file' : file.deleted ? 'deleted' : 'proposed';
  return [left, right, `${relativeLabel(file.uri, roots)} (Keel ${what}: ${bundle.title})`];
}

/** The resource triples of `vscode.changes` for a bundle: [label URI, original, modified]. */
export function changesArguments(bundle: BundleInfo, files: readonly DiffFile[], previewed: (uri: string) => boolean = () => false): [string, string[][]] {
  const rows = files.map((file) => [
    file.uri,
    proposedUri({ bundleId: bundle.bundleId, fileUri: file.uri, side: 'before' }),
    previewed(file.uri) ? file.uri : proposedUri({ bundleId: bundle.bundleId, fileUri: file.uri, side: 'after' }),
  ]);
  return [`Keel: ${bundle.title} (${String(files.length)} files)`, rows];
}

/**
 * Opens the review diff of a bundle, or of one of its files, after previewing the proposal in
 * the files' editors when `preview` is given (see `preview.ts`).
 */
export async function showBundleDiff(
  api: Pick<EditorApi, 'executeCommand' | 'uri' | 'workspaceRoots' | 'showInformationMessage'>,
  cache: DiffCache,
  bundle: BundleInfo,
  fileUri?: string,
  preview?: BundlePreview,
): Promise<void> {
  const files = await cache.get(bundle.bundleId);
  const chosen = fileUri === undefined ? files : files.filter((f) => sameUri(f.uri, fileUri));
  const first = chosen[0];
  if (first === undefined) {
    await api.showInformationMessage(`Keel: bundle "${bundle.title}" has no file changes to show.`);
    return;
  }
  const previewed = new Set((await preview?.show(bundle.bundleId, chosen)) ?? []);
  if (chosen.length === 1) {
    const [left, right, title] = diffArguments(bundle, first, api.workspaceRoots(), previewed.has(first.uri));
    await api.executeCommand('vscode.diff', api.uri(left), api.uri(right), title, { preview: false });
    return;
  }
  const [title, rows] = changesArguments(bundle, chosen, (uri) => previewed.has(uri));
  await api.executeCommand('vscode.changes', title, rows.map((row) => row.map((u) => api.uri(u))));
}
