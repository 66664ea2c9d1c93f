/**
 * The hunk-by-hunk review, end to end (`KEEL_VSCODE_E2E_SCENARIO=hunks`; checked by
 * `test_hunk_review_in_code_server` in tests/test_vscode_e2e.py):
 *
 * start task → a bundle with two hunks in one file → its review diff, Approve hunk / Reject hunk
 * lenses over each hunk of its proposal side → screenshot → a mouse click (by the harness) on the
 * first hunk's Approve hunk → the ledger commit; the review follows the rest, a new bundle with
 * the second hunk under its same id → a click on its Reject hunk, the reason typed into the input
 * box by the harness (real keystrokes) → the review closes; the node regenerates (its request
 * carries the rejected lines and the reason) → the new bundle approved → the buffer matches the
 * disk.
 *
 * Run twice: with code-server's default auto save (no preview: the diff's right side is the
 * read-only proposal with the extension's lenses) and with `files.autoSave: off` (the proposal
 * previewed in the file, which is the right side and carries the server's lenses).
 */

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as vscode from 'vscode';
import type { KeelExtensionApi } from '../../extension';
import type { BundleInfo, DiffFile, SessionInfo } from '../../common/protocol';
import { readDiff, readLedger, ServerCommand } from '../../common/protocol';
import { fileUriToPath, sameUri } from '../../common/uris';
import type { FollowOutcome } from '../../features/hunks';
import { proposedUri } from '../../features/review';

/** What the scenario needs from the self-test's harness. */
export interface Harness {
  step<T>(name: string, work: () => Promise<T>, detail?: (value: T) => unknown): Promise<T>;
  until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined> | T | undefined, everyMs?: number): Promise<T>;
  screenshot(name: string): Promise<boolean>;
  readonly results: Record<string, unknown>;
  readonly resultsFile: string;
}

const TASK = process.env.KEEL_VSCODE_E2E_TASK ?? 'Type add and mul in calc.py';
const REASON = 'keep mul untyped: callers pass floats';

interface LensInfo {
  readonly title: string;
  readonly command: string;
  readonly line: number;
  readonly args: unknown[];
}

async function lensesOf(uri: vscode.Uri): Promise<LensInfo[]> {
  await vscode.workspace.openTextDocument(uri); // the lenses of a document VS Code has loaded
  const lenses = (await vscode.commands.executeCommand<vscode.CodeLens[] | undefined>('vscode.executeCodeLensProvider', uri)) ?? [];
  return lenses
    .filter((l) => l.command !== undefined)
    .map((l) => ({ title: l.command?.title ?? '', command: l.command?.command ?? '', line: l.range.start.line, args: (l.command?.arguments ?? []) as unknown[] }));
}

function lensFor(lenses: readonly LensInfo[], command: string, hunk: string): LensInfo | undefined {
  return lenses.find((l) => l.command === command && JSON.stringify(l.args[0]).includes(`"${hunk}"`));
}

/** Waits for the review follower's next outcome. */
function nextFollow(api: KeelExtensionApi, timeoutMs: number): Promise<FollowOutcome> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { sub.dispose(); reject(new Error(`the review did not follow within ${String(timeoutMs)} ms`)); }, timeoutMs);
    const sub = api.follower.onDidFollow((outcome) => {
      clearTimeout(timer);
      sub.dispose();
      resolve(outcome);
    });
  });
}

/** Asks the harness to click the topmost CodeLens titled `title` with the mouse; waits until it did. */
async function clickLens(h: Harness, name: string, title: string): Promise<void> {
  writeFileSync(`${h.resultsFile}.click.${name}.request`, title);
  await h.until(`the harness to click ${name}`, 40_000, () => (existsSync(`${h.resultsFile}.click.${name}.done`) ? true : undefined), 200);
}

/** Asks the harness to type `text` into the focused input and press Enter; waits until it did. */
async function typeIntoInput(h: Harness, name: string, text: string): Promise<void> {
  writeFileSync(`${h.resultsFile}.keys.${name}.request`, text);
  await h.until(`the harness to type ${name}`, 30_000, () => (existsSync(`${h.resultsFile}.keys.${name}.done`) ? true : undefined), 200);
}

function openDocument(uri: vscode.Uri): vscode.TextDocument | undefined {
  return vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
}

export async function runHunks(api: KeelExtensionApi, h: Harness): Promise<void> {
  const r = h.results;
  await h.step('server running', async () => {
    if (!(await api.server.whenRunning(90_000))) {
      throw new Error(`the Keel server is ${api.server.state}`);
    }
    return api.server.state;
  });
  r.sessionId = await h.step('start task', async () => {
    const id = await api.commands.startTask(TASK);
    if (id === undefined) {
      throw new Error('keel.startTask returned no session id');
    }
    return id;
  });

  const first = await h.step('bundle with two hunks proposed', () =>
    h.until<BundleInfo>('a pending bundle', 240_000, async () => (await api.session.refresh())?.pending[0], 1000),
  (b) => b);
  const fileUri = first.files[0];
  if (fileUri === undefined) {
    throw new Error('the bundle lists no files');
  }
  const uri = vscode.Uri.parse(fileUri);
  const diffOf = async (bundleId: string): Promise<DiffFile> => {
    const files = readDiff(await api.server.executeCommand(ServerCommand.diff, { bundleId }));
    const file = files.find((f) => sameUri(f.uri, fileUri));
    if (file === undefined) {
      throw new Error(`bundle ${bundleId} does not change ${fileUri}`);
    }
    return file;
  };
  const diff = await h.step('its hunks', () => diffOf(first.bundleId), (f) => f.hunks.map((x) => ({ id: x.id, header: x.header })));
  const [hunkA, hunkB] = diff.hunks;
  if (hunkA === undefined || hunkB === undefined || diff.hunks.length !== 2) {
    throw new Error(`expected two hunks, got ${JSON.stringify(diff.hunks)}`);
  }
  r.hunks = diff.hunks.map((x) => ({ id: x.id, header: x.header, removed: x.removed, added: x.added }));

  // The file is open (not shown): what approval applies reaches its buffer too.
  const document = await vscode.workspace.openTextDocument(uri);
  r.autoSave = vscode.workspace.getConfiguration('files').get('autoSave');

  // The review diff, with the lenses over each hunk of the proposal. With auto save on (the
  // default of code-server, as of any VS Code for the Web) the proposal is not previewed in the
  // file's buffer (it would be saved unapproved): the diff's right side is the read-only
  // proposal with the extension's lenses. With auto save off (desktop's default) the buffer
  // shows the proposal, unsaved, and approving a part of it must still work.
  // The proposal side of the review diff: the file itself when previewed (the server's lenses,
  // run through the language client), else the read-only proposal (the extension's lenses).
  const previewed = r.autoSave === 'off';
  const approveCommand = previewed ? ServerCommand.approve : 'keel.approveHunk';
  const rejectCommand = previewed ? ServerCommand.reject : 'keel.rejectHunk';
  const proposalSide = (bundleId: string): vscode.Uri => (previewed ? uri : vscode.Uri.parse(proposedUri({ bundleId, fileUri, side: 'after' })));
  await h.step('review opens', async () => {
    await api.commands.showDiff({ bundle: first }, false);
    return h.until('the review tab', 10_000, () => (api.follower.tabsOf(first.bundleId).length > 0 ? true : undefined));
  });
  const lenses = await h.step('lenses over each hunk of the proposal side', () =>
    h.until('Approve hunk and Reject hunk lenses for both hunks', 30_000, async () => {
      const all = await lensesOf(proposalSide(first.bundleId));
      const ok = [hunkA.id, hunkB.id].every((id) => lensFor(all, approveCommand, id) !== undefined && lensFor(all, rejectCommand, id) !== undefined);
      return ok ? all : undefined;
    }, 500),
  (all) => all.map((l) => ({ title: l.title, command: l.command, line: l.line, args: l.args })));
  r.bufferDirtyBeforeApproval = document.isDirty;

  // With the preview (desktop's files.autoSave off) the shot is not the README's.
  await h.step('screenshot hunks', () => h.screenshot(r.autoSave === 'off' ? 'vscode-hunks-preview' : 'vscode-hunks'), (taken) => ({ taken }));

  // Approve hunk A: a mouse click on its lens (the topmost Approve hunk) in the review diff.
  if (lensFor(lenses, approveCommand, hunkA.id)?.line !== Math.min(...lenses.map((l) => l.line))) {
    throw new Error(`hunk A's lens is not the topmost: ${JSON.stringify(lenses)}`);
  }
  const following = nextFollow(api, 240_000);
  r.hunkLedgerEntry = await h.step('approve hunk A with a click on its lens', async () => {
    await clickLens(h, 'approve', 'Keel: Approve hunk');
    // The approval's answer goes to the lens; the ledger (a fresh repository) has the commit.
    const entry = await h.until('the ledger entry of the approval', 120_000, async () =>
      readLedger(await api.server.executeCommand(ServerCommand.ledger, { limit: 5 })).find((e) => e.node === first.nodeId), 500);
    return entry.entry;
  }, (entry) => ({ ledgerEntry: entry }));
  const followed = await h.step('the review follows the rest', () => following, (o) => o);
  if (followed.kind !== 'reopened') {
    throw new Error(`the review did not reopen on the rest: ${JSON.stringify(followed)}`);
  }
  const rest = followed.next;
  r.rest = { bundleId: rest.bundleId, nodeId: rest.nodeId };
  const restDiff = await h.step('the rest keeps hunk B\'s id', () => diffOf(rest.bundleId), (f) => f.hunks.map((x) => ({ id: x.id, header: x.header })));
  r.restHunks = restDiff.hunks.map((x) => x.id);
  r.onDiskAfterApproval = readFileSync(fileUriToPath(fileUri) ?? '', 'utf8');
  r.bufferAfterApproval = { text: document.getText(), dirty: document.isDirty };

  // Reject hunk B from its lens on the rest's proposal side, with a reason typed into the box.
  await h.step('the rest\'s lens over hunk B', () =>
    h.until('the Reject hunk lens of hunk B', 30_000, async () => lensFor(await lensesOf(proposalSide(rest.bundleId)), rejectCommand, hunkB.id), 500),
  (l) => l);
  const closing = nextFollow(api, 240_000);
  r.rejected = await h.step('reject hunk B with a click on its lens and a typed reason', async () => {
    await clickLens(h, 'reject', 'Keel: Reject hunk');
    await typeIntoInput(h, 'reason', REASON);
    return true;
  });
  r.afterRejection = await h.step('the review closes: nothing remains', () => closing, (o) => o);

  // The node regenerates with the rejection in its prompt; its new bundle is approved whole.
  const regenerated = await h.step('the node proposes again', () =>
    h.until<BundleInfo>('a new bundle of the node', 240_000, async () => (await api.session.refresh())?.pending.find((b) => b.bundleId !== rest.bundleId && b.bundleId !== first.bundleId), 1000),
  (b) => b);
  r.finalLedgerEntry = await h.step('approve the regenerated bundle', () => api.commands.approve({ bundle: regenerated }, false));
  const final = await h.step('session settles', () =>
    h.until<SessionInfo>('every node committed', 120_000, async () => {
      const summary = await api.session.refresh();
      return summary !== undefined && summary.pending.length === 0 && summary.nodes.every((n) => n.state === 'committed') && summary.state !== 'running' ? summary : undefined;
    }, 1000),
  (s) => ({ state: s.state })).catch(() => undefined);
  r.finalState = final?.state;

  r.bufferMatchesDisk = await h.step('buffer matches the disk', () =>
    h.until('the buffer to show the file on disk, clean', 10_000, () => {
      const open = openDocument(uri);
      const disk = readFileSync(fileUriToPath(fileUri) ?? '', 'utf8');
      return open !== undefined && !open.isDirty && open.getText() === disk ? { open: true, disk } : undefined;
    }),
  (v) => v);
}
