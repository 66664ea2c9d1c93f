// First: the middleware's module loads vscode-languageserver-protocol, which requires `vscode`.
import './vscode-stub';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type * as vscode from 'vscode';
import { ApprovalTracker } from '../../common/edits';
import { dropStaleLenses, keelMiddleware } from '../../common/middleware';
import { fileResolver, ProtocolError, readBundle, readDiff, readHunk } from '../../common/protocol';
import { SessionStore } from '../../common/session';
import { readSettings } from '../../common/settings';
import { hunkPickItems, KeelCommands } from '../../features/commands';
import { HunkLensProvider, hunkLine, readHunkDecision, ReviewFollower } from '../../features/hunks';
import type { InfoDocuments } from '../../features/info';
import type { BundlePreview } from '../../features/preview';
import { DiffCache, proposedUri } from '../../features/review';
import { FakeApi, FakeServer, ManualTimers, memoryLogger, settle } from './fakes';
import { bundle, diffFile, hunk, summary } from './payloads';

const G = 'file:///work/ws/g.py';
const H = 'file:///work/ws/h.py';
// g.py: line 2 replaced (hunk A), line 5 deleted (hunk B); h.py: a line added at the top (hunk C).
const A = hunk({ id: 'aaaaaaaaaaaa', oldStart: 2, newStart: 2, removed: ['    return 1'], added: ['    return 2'] });
const B = hunk({ id: 'bbbbbbbbbbbb', oldStart: 5, newStart: 4, removed: ['x = 3'] });
const C = hunk({ id: 'cccccccccccc', oldStart: 0, newStart: 1, added: ['"""Helpers."""'] });
const DIFF = {
  bundleId: 'b1',
  files: [
    diffFile({ uri: G, before: 'def f():\n    return 1\n\n\nx = 3\n', after: 'def f():\n    return 2\n\n\n', hunks: [A, B] }),
    diffFile({ uri: H, before: 'y = 1\n', after: '"""Helpers."""\ny = 1\n', hunks: [C] }),
  ],
};
const p1 = bundle({ bundleId: 'b1', nodeId: 'node-1', title: 'Greeter', files: [G, H] });
const p2 = bundle({ bundleId: 'b2', nodeId: 'node-1', title: 'Greeter', files: [G] });
const pOther = bundle({ bundleId: 'b9', nodeId: 'node-9', title: 'Other', files: [H] });

function setup() {
  const server = new FakeServer();
  const fake = new FakeApi();
  const api = fake.asApi();
  const log = memoryLogger();
  const session = new SessionStore(server, () => fileResolver('/work/ws'), log);
  const diffs = new DiffCache(server, session);
  const approvals = new ApprovalTracker();
  const settled: string[] = [];
  const applied: string[][] = [];
  const order: string[] = [];
  const preview = { settle: (id: string) => { settled.push(id); order.push(`settle ${id}`); return Promise.resolve(); }, show: () => Promise.resolve([]), settleApplied: (uris: readonly string[]) => { applied.push([...uris]); return Promise.resolve(); } } as unknown as BundlePreview;
  server.onCall = (command) => { order.push(command); };
  const info = { show: () => Promise.resolve() } as unknown as InfoDocuments;
  const timers = new ManualTimers();
  const opened: string[] = [];
  const follower = new ReviewFollower({ api, session, open: (b) => { opened.push(b.bundleId); return Promise.resolve(); }, log, timeoutMs: 1000, timers });
  const outcomes: string[] = [];
  follower.onDidFollow((o) => { outcomes.push(o.kind === 'reopened' ? `reopened ${o.bundleId} -> ${o.next.bundleId}` : o.kind === 'closed' ? `closed ${o.bundleId}` : 'none'); });
  const commands = new KeelCommands({ api, server, session, diffs, info, approvals, preview, follower, settings: () => readSettings(() => undefined).settings, log });
  server.answers.set('keel.server.diff', () => DIFF);
  server.answers.set('keel.server.status', () => summary({ pendingBundles: [p1] }));
  server.notify('keel/sessionChanged', summary({ pendingBundles: [p1] }));
  return { server, fake, api, session, diffs, approvals, settled, applied, order, timers, follower, opened, outcomes, commands, log };
}

function calls(server: FakeServer, command: string): object[] {
  return server.calls.filter((c) => c.command === command).map((c) => c.argument);
}

/** A document as the lens provider reads it. */
function document(uri: string, lineCount: number): vscode.TextDocument {
  return { uri: { toString: () => uri }, lineCount } as unknown as vscode.TextDocument;
}

describe('reading hunks', () => {
  it('reads each file\'s hunks with every key the schema requires, and no other spelling', () => {
    const [g] = readDiff(DIFF);
    assert.deepEqual(g?.hunks.map((h) => [h.id, h.header]), [['aaaaaaaaaaaa', '@@ -2,1 +2,1 @@'], ['bbbbbbbbbbbb', '@@ -5,1 +4,0 @@']]);
    assert.throws(() => readHunk({ id: 'a', old_start: 1, oldLines: 1, newStart: 1, newLines: 1, header: '', removed: [], added: [] }), /DiffHunk: missing oldStart/);
    const withoutHunks: Record<string, unknown> = { ...diffFile({ uri: G }) };
    delete withoutHunks.hunks;
    assert.throws(() => readDiff({ bundleId: 'b1', files: [withoutHunks] }), (e: unknown) => e instanceof ProtocolError && /DiffFile: missing hunks/.test(e.message));
  });

  it('takes a lens argument only as a bundle id and a non-empty list of hunk ids', () => {
    assert.deepEqual(readHunkDecision({ bundleId: 'b1', hunks: ['a'] }), { bundleId: 'b1', hunks: ['a'] });
    assert.deepEqual(readHunkDecision({ bundleId: 'b1', hunks: ['a'], reason: 'no' }), { bundleId: 'b1', hunks: ['a'], reason: 'no' });
    for (const bad of [undefined, 'b1', { bundleId: 'b1' }, { bundleId: 'b1', hunks: [] }, { bundleId: 'b1', hunks: [3] }, { bundleId: 'b1', hunks: [''] }, { bundle_id: 'b1', hunks: ['a'] }, { bundleId: '', hunks: ['a'] }]) {
      assert.equal(readHunkDecision(bad), undefined, JSON.stringify(bad));
    }
  });

  it('puts a hunk\'s lens on its first new line, or after a deletion, within the document', () => {
    const [a, b, c] = [readHunk(A), readHunk(B), readHunk(C)];
    assert.equal(hunkLine(a, 4), 1);
    assert.equal(hunkLine(b, 10), 4, 'a deletion after line 4: the lens sits on the line that follows');
    assert.equal(hunkLine(b, 4), 3, 'a deletion at the end: the last line');
    assert.equal(hunkLine(c, 2), 0);
    assert.equal(hunkLine(readHunk(hunk({ id: 'd', oldStart: 1, newStart: 0, removed: ['gone'] })), 0), 0, 'an emptied file still has line 0');
  });

  it('labels hunk picks with the file, the header, the size and the first changed line', () => {
    const items = hunkPickItems(readDiff(DIFF), ['/work/ws']);
    assert.deepEqual(items.map((i) => [i.label, i.description, i.detail]), [
      ['g.py @@ -2,1 +2,1 @@', '+1 −1', 'return 2'],
      ['g.py @@ -5,1 +4,0 @@', '+0 −1', 'x = 3'],
      ['h.py @@ -0,0 +1,1 @@', '+1 −0', '"""Helpers."""'],
    ]);
  });
});

describe('CodeLens over each hunk of the review diff', () => {
  it('puts Approve hunk and Reject hunk over each hunk of the proposal side, with the hunk\'s id', async () => {
    const { api, diffs, session } = setup();
    const lenses = new HunkLensProvider(api, diffs, session);
    const after = proposedUri({ bundleId: 'b1', fileUri: G, side: 'after' });
    const shown = (await lenses.provideCodeLenses(document(after, 4))) as unknown as { range: { start: { line: number } }; command: { title: string; command: string; arguments: unknown[] } }[];
    assert.deepEqual(shown.map((l) => [l.range.start.line, l.command.title, l.command.command, l.command.arguments]), [
      [1, 'Keel: Approve hunk', 'keel.approveHunk', [{ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }]],
      [1, 'Keel: Reject hunk', 'keel.rejectHunk', [{ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }]],
      [3, 'Keel: Approve hunk', 'keel.approveHunk', [{ bundleId: 'b1', hunks: ['bbbbbbbbbbbb'] }]],
      [3, 'Keel: Reject hunk', 'keel.rejectHunk', [{ bundleId: 'b1', hunks: ['bbbbbbbbbbbb'] }]],
    ]);
    assert.deepEqual(await lenses.provideCodeLenses(document(proposedUri({ bundleId: 'b1', fileUri: G, side: 'before' }), 5)), [], 'none on the base side');
    assert.deepEqual(await lenses.provideCodeLenses(document(G, 5)), [], 'the file itself carries the server\'s lenses');
  });

  it('shows no lens for a bundle that is no longer pending, and asks VS Code again when the bundles change', async () => {
    const { api, diffs, session, server } = setup();
    const lenses = new HunkLensProvider(api, diffs, session);
    let changes = 0;
    lenses.onDidChangeCodeLenses(() => { changes += 1; });
    server.notify('keel/sessionChanged', summary({ pendingBundles: [p2] }));
    assert.ok(changes >= 1);
    assert.deepEqual(await lenses.provideCodeLenses(document(proposedUri({ bundleId: 'b1', fileUri: G, side: 'after' }), 4)), []);
    assert.equal(calls(server, 'keel.server.diff').length, 0, 'a stale review does not even ask the server');
  });

  it('drops the server\'s lenses of bundles the extension knows are gone; keeps the rest', () => {
    const lens = (bundleId: string | undefined) => ({ command: { arguments: bundleId === undefined ? [] : [{ bundleId, hunks: ['a'] }] } });
    const all = [lens('b1'), lens('b2'), lens(undefined)];
    assert.deepEqual(dropStaleLenses(all, new Set(['b2'])), [all[1], all[2]]);
    assert.deepEqual(dropStaleLenses(all, undefined), all, 'before any summary nothing is known to be stale');
    assert.deepEqual(dropStaleLenses(null, new Set()), []);
  });
});

describe('the language client middleware', () => {
  function middleware(routed: (command: string, args: readonly unknown[]) => Promise<unknown> | undefined, pending?: ReadonlySet<string>) {
    const approvals = new ApprovalTracker();
    return {
      approvals,
      m: keelMiddleware({ settings: () => readSettings(() => undefined).settings, sendNotification: () => Promise.resolve(), approvals, editorCommand: routed, pendingBundles: () => pending }),
    };
  }

  it('runs the server\'s lenses through the extension\'s flow, and sends what it leaves as it is', async () => {
    const seen: string[] = [];
    const { m, approvals } = middleware((command) => (command === 'keel.server.reject' ? Promise.resolve('ours') : undefined));
    const execute = m.executeCommand;
    assert.ok(execute !== undefined);
    const sent: string[] = [];
    const next = (command: string) => { sent.push(command); seen.push(String(approvals.active)); return Promise.resolve('client'); };
    assert.equal(await execute('keel.server.reject', [{ bundleId: 'b1', hunks: ['a'] }], next), 'ours');
    assert.equal(await execute('keel.server.approve', [{ bundleId: 'b1', files: [G] }], next), 'client');
    assert.deepEqual(sent, ['keel.server.approve']);
    assert.deepEqual(seen, ['true'], 'what the client sends itself still counts as an approval');
  });

  it('filters the server\'s lenses by the pending bundles', async () => {
    const { m } = middleware(() => undefined, new Set(['b2']));
    const provide = m.provideCodeLenses;
    assert.ok(provide !== undefined);
    const lenses = [{ command: { arguments: [{ bundleId: 'b1', hunks: ['a'] }] } }, { command: { arguments: [{ bundleId: 'b2', hunks: ['a'] }] } }] as unknown as vscode.CodeLens[];
    const kept = await provide({} as vscode.TextDocument, {} as vscode.CancellationToken, () => lenses);
    assert.deepEqual(kept, [lenses[1]]);
  });
});

describe('per-hunk commands', () => {
  it('Approve hunk from a lens sends exactly its hunk, counts as an approval, settles the previews first and returns the entry', async () => {
    const { server, commands, approvals, settled, applied, order, fake } = setup();
    let activeDuring = false;
    server.answers.set('keel.server.approve', () => { activeDuring = approvals.active; return { ledgerEntry: 'abc1234567890' }; });
    assert.equal(await commands.approveHunks({ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }), 'abc1234567890');
    assert.deepEqual(calls(server, 'keel.server.approve'), [{ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }]);
    assert.equal(activeDuring, true);
    assert.deepEqual(settled, ['b1']);
    assert.deepEqual(applied, [[G, H]], 'then the buffers that hold the disk\'s text are left clean');
    assert.deepEqual(order.filter((o) => o !== 'keel.server.diff' && o !== 'keel.server.status'), ['settle b1', 'keel.server.approve'], 'the whole proposal leaves the buffers before a part is applied');
    assert.match(fake.messages.at(-1) ?? '', /approved a hunk of "Greeter" \(ledger abc1234567\)\. The other 2 hunks are verified again/);
  });

  it('Reject hunk asks for the reason and sends it with the hunk; Escape sends nothing', async () => {
    const { server, commands, fake } = setup();
    server.answers.set('keel.server.reject', () => ({ bundleId: 'b1', decision: 'rejected' }));
    fake.inputAnswers.push('  keep the old return value  ');
    assert.equal(await commands.rejectHunks({ bundleId: 'b1', hunks: ['bbbbbbbbbbbb'] }), true);
    assert.deepEqual(calls(server, 'keel.server.reject'), [{ bundleId: 'b1', hunks: ['bbbbbbbbbbbb'], reason: 'keep the old return value' }]);
    fake.inputAnswers.push(undefined);
    assert.equal(await commands.rejectHunks({ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }), false);
    assert.equal(calls(server, 'keel.server.reject').length, 1);
    fake.inputAnswers.push('');
    await commands.rejectHunks({ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] });
    assert.deepEqual(calls(server, 'keel.server.reject')[1], { bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }, 'an empty reason is no reason');
  });

  it('refuses a lens of a bundle that is no longer pending, with a message, before the server sees it', async () => {
    const { server, commands, fake } = setup();
    server.answers.set('keel.server.status', () => summary({ pendingBundles: [p2] }));
    server.notify('keel/sessionChanged', summary({ pendingBundles: [p2] }));
    assert.equal(await commands.approveHunks({ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }), undefined);
    fake.inputAnswers.push('a reason');
    assert.equal(await commands.rejectHunks({ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }), false);
    assert.equal(calls(server, 'keel.server.approve').length + calls(server, 'keel.server.reject').length, 0);
    assert.match(fake.messages.at(-1) ?? '', /bundle b1 is no longer pending/);
    assert.deepEqual(fake.inputAnswers, ['a reason'], 'no reason was asked for');
  });

  it('from the palette: picks among the active file\'s hunks, or takes the only one', async () => {
    const { server, commands, fake } = setup();
    server.answers.set('keel.server.approve', () => ({ ledgerEntry: 'e' }));
    fake.activeUri = proposedUri({ bundleId: 'b1', fileUri: G, side: 'after' });
    fake.pickAnswers.push((items) => items[1]);
    await commands.approveHunks(undefined);
    assert.deepEqual(fake.picksShown[0]?.map((i) => i.label), ['g.py @@ -2,1 +2,1 @@', 'g.py @@ -5,1 +4,0 @@']);
    assert.deepEqual(calls(server, 'keel.server.approve').at(-1), { bundleId: 'b1', hunks: ['bbbbbbbbbbbb'] });
    fake.activeUri = H;
    await commands.approveHunks(undefined);
    assert.equal(fake.picksShown.length, 1, 'h.py has one hunk: nothing to pick');
    assert.deepEqual(calls(server, 'keel.server.approve').at(-1), { bundleId: 'b1', hunks: ['cccccccccccc'] });
    fake.activeUri = undefined;
    fake.pickAnswers.push(() => undefined);
    assert.equal(await commands.approveHunks(undefined), undefined, 'a cancelled pick decides nothing');
    assert.equal(calls(server, 'keel.server.approve').length, 2);
  });

  it('a server error reaches the caller, and the review does not move', async () => {
    const { server, commands, outcomes, fake } = setup();
    fake.tabs = [[proposedUri({ bundleId: 'b1', fileUri: G, side: 'before' })]];
    server.answers.set('keel.server.approve', () => { throw new Error('keel.server.approve: the chosen hunks are not stable: V=1.000'); });
    await assert.rejects(commands.approveHunks({ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }), /not stable: V=1\.000/);
    await settle();
    assert.deepEqual(outcomes, []);
    assert.equal(fake.tabs.length, 1);
  });
});

describe('the server\'s lenses through fromEditor', () => {
  it('routes approve and reject with hunks to the per-hunk flow: a reject lens asks for the reason first', async () => {
    const { server, commands, fake } = setup();
    server.answers.set('keel.server.reject', () => ({ bundleId: 'b1', decision: 'rejected' }));
    server.answers.set('keel.server.approve', () => ({ ledgerEntry: 'e1' }));
    fake.inputAnswers.push('too clever');
    assert.equal(await commands.fromEditor('keel.server.reject', [{ bundleId: 'b1', hunks: ['bbbbbbbbbbbb'] }]), true);
    assert.deepEqual(calls(server, 'keel.server.reject'), [{ bundleId: 'b1', hunks: ['bbbbbbbbbbbb'], reason: 'too clever' }]);
    assert.equal(await commands.fromEditor('keel.server.approve', [{ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] }]), 'e1');
    assert.equal(await commands.fromEditor('keel.server.approve', [{ bundleId: 'b1' }]), 'e1', 'a whole-bundle lens takes the palette\'s flow too');
    assert.deepEqual(calls(server, 'keel.server.approve').at(-1), { bundleId: 'b1' });
    assert.equal(commands.fromEditor('keel.server.approve', [{ bundleId: 'b1', files: [G] }]), undefined, 'per-file: the client sends it');
    assert.equal(commands.fromEditor('keel.server.status', [{}]), undefined);
    for (const hunks of [[], 'aaaaaaaaaaaa', [1], ['']]) {
      assert.equal(commands.fromEditor('keel.server.approve', [{ bundleId: 'b1', hunks }]), undefined, `hunks ${JSON.stringify(hunks)}: sent as is, never a whole approval`);
    }
    assert.equal(calls(server, 'keel.server.approve').length, 2);
  });

  it('Keel: Diff opens the review; an error is shown, not thrown into the client', async () => {
    const { server, commands, fake } = setup();
    await commands.fromEditor('keel.server.diff', [{ bundleId: 'b1' }]);
    assert.equal(fake.executed.at(-1)?.id, 'vscode.changes');
    server.answers.set('keel.server.approve', () => { throw new Error('InvalidParams: unknown hunk zzz; known: aaaaaaaaaaaa, bbbbbbbbbbbb'); });
    assert.equal(await commands.fromEditor('keel.server.approve', [{ bundleId: 'b1', hunks: ['zzz'] }]), undefined);
    assert.match(fake.messages.at(-1) ?? '', /could not approve the hunk: .*unknown hunk zzz/);
  });
});

describe('the review follows the bundle', () => {
  const review = (bundleId: string) => [proposedUri({ bundleId, fileUri: G, side: 'before' }), G];

  it('after a hunk decision: closes the old review and opens the rest\'s, once it comes back', async () => {
    const { server, commands, fake, opened, outcomes } = setup();
    fake.tabs = [review('b1'), [H]];
    server.answers.set('keel.server.approve', () => ({ ledgerEntry: 'e1' }));
    await commands.approveHunks({ bundleId: 'b1', hunks: ['aaaaaaaaaaaa'] });
    await settle();
    assert.deepEqual(outcomes, [], 'it waits for the rest');
    server.notify('keel/sessionChanged', summary({ pendingBundles: [pOther] }));
    await settle();
    assert.deepEqual(outcomes, [], 'another node\'s bundle is not the rest');
    server.notify('keel/sessionChanged', summary({ pendingBundles: [pOther, p2] }));
    await settle();
    assert.deepEqual(outcomes, ['reopened b1 -> b2']);
    assert.deepEqual(opened, ['b2']);
    assert.deepEqual(fake.closedTabs, [review('b1')]);
    assert.deepEqual(fake.tabs, [[H]], 'other tabs stay');
  });

  it('closes the review when nothing remains, or when the rest does not come back in time', async () => {
    const { follower, fake, timers, opened, session } = setup();
    const b1 = readBundle(bundle({ bundleId: 'b1', nodeId: 'node-1' }));
    fake.tabs = [review('b1')];
    assert.deepEqual(await follower.follow(b1, 0, new Set(['b1'])), { kind: 'closed', bundleId: 'b1' });
    assert.deepEqual(fake.tabs, []);
    fake.tabs = [review('b1')];
    const waiting = follower.follow(b1, 1, new Set(['b1']));
    await settle();
    timers.advance(1000);
    assert.deepEqual(await waiting, { kind: 'closed', bundleId: 'b1' });
    assert.deepEqual(fake.tabs, []);
    assert.deepEqual(opened, []);
    assert.equal(session.current?.pending.length, 1);
  });

  it('does not reopen a review the user closed while the rest was verified', async () => {
    const { follower, fake, opened, server } = setup();
    fake.tabs = [review('b1')];
    const waiting = follower.follow(readBundle(p1), 1, new Set(['b1']));
    await settle();
    fake.tabs = [];
    server.notify('keel/sessionChanged', summary({ pendingBundles: [p2] }));
    assert.deepEqual(await waiting, { kind: 'none' });
    assert.deepEqual(opened, []);
  });

  it('opens nothing when the bundle\'s review was not open; a rest already listed is taken at once', async () => {
    const { follower, fake, opened, server } = setup();
    const b1 = readBundle(p1);
    assert.deepEqual(await follower.follow(b1, 1, new Set(['b1'])), { kind: 'none' });
    server.notify('keel/sessionChanged', summary({ pendingBundles: [p2] }));
    fake.tabs = [review('b1')];
    const outcome = await follower.follow(b1, 1, new Set(['b1']));
    assert.equal(outcome.kind, 'reopened');
    assert.deepEqual(opened, ['b2']);
  });
});
