import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApprovalTracker } from '../../common/edits';
import type { PlanResult } from '../../common/payloads';
import { fileResolver, readBundle } from '../../common/protocol';
import { SessionStore } from '../../common/session';
import { readSettings } from '../../common/settings';
import { bundlePickItems, bundlesForFile, KeelCommands, ledgerPickItems, resolveBundleTarget } from '../../features/commands';
import type { InfoDocuments } from '../../features/info';
import { ReviewFollower } from '../../features/hunks';
import type { BundlePreview } from '../../features/preview';
import { DiffCache, proposedUri } from '../../features/review';
import { FakeApi, FakeServer, ManualTimers, memoryLogger, settle } from './fakes';
import { bundle, ledgerEntry, node, summary } from './payloads';

const resolve = fileResolver('/work/ws');
const G = 'file:///work/ws/g.py';
const H = 'file:///work/ws/h.py';
const p1 = bundle({ bundleId: 'b1', nodeId: 'node-1', title: 'Greeter', files: [G] });
const p2 = bundle({ bundleId: 'b2', nodeId: 'node-2', title: 'Helper', files: [G, H] });
const b1 = readBundle(p1);
const b2 = readBundle(p2);

describe('finding the bundle a command acts on', () => {
  it('takes tree items, bundles and bundle ids as given', () => {
    assert.deepEqual(resolveBundleTarget({ bundle: b2, fileUri: H }, G, [b1, b2]), { kind: 'target', target: { bundle: b2, fileUri: H } });
    assert.deepEqual(resolveBundleTarget(b1, undefined, []), { kind: 'target', target: { bundle: b1 } });
    assert.deepEqual(resolveBundleTarget({ bundleId: 'b2' }, undefined, [b1, b2]), { kind: 'target', target: { bundle: b2 } });
    assert.deepEqual(resolveBundleTarget('b1', undefined, [b1]), { kind: 'target', target: { bundle: b1 } });
  });

  it('reads the bundle and file from a keel-proposed diff editor (argument or active editor)', () => {
    const uri = proposedUri({ bundleId: 'b2', fileUri: H, side: 'after' });
    assert.deepEqual(resolveBundleTarget(undefined, uri, [b1, b2]), { kind: 'target', target: { bundle: b2, fileUri: H } });
    const asVscodeUri = { scheme: 'keel-proposed', toString: (skip?: boolean) => (skip === true ? uri : 'encoded') };
    assert.deepEqual(resolveBundleTarget(asVscodeUri, undefined, [b1, b2]), { kind: 'target', target: { bundle: b2, fileUri: H } });
  });

  it('uses the bundle whose files include the active editor\'s file', () => {
    assert.deepEqual(resolveBundleTarget(undefined, H, [b1, b2]), { kind: 'target', target: { bundle: b2, fileUri: H } });
    assert.deepEqual(resolveBundleTarget(undefined, G, [b1, b2]), { kind: 'pick', candidates: [b1, b2], fileUri: G });
    assert.deepEqual(bundlesForFile([b1, b2], 'file:///work/ws/h%2Epy'), [b2]);
  });

  it('falls back to a pick over every pending bundle, or none', () => {
    assert.deepEqual(resolveBundleTarget(undefined, 'file:///work/ws/other.py', [b1]), { kind: 'pick', candidates: [b1] });
    assert.deepEqual(resolveBundleTarget(undefined, undefined, []), { kind: 'none' });
  });

  it('labels quick-pick items with title, ids and files', () => {
    const [item] = bundlePickItems([b2], ['/work/ws']);
    assert.equal(item?.label, 'Helper');
    assert.equal(item?.description, 'b2 · node-2');
    assert.equal(item?.detail, 'g.py, h.py');
    const [entry] = ledgerPickItems([{ entry: 'abcdef1234567890', title: 'keel: Greeter', node: 'node-1', session: 's', date: '2026-11-22', energy: 'V=0', approvedBy: 'user' }]);
    assert.equal(entry?.description, 'abcdef1234 · node-1 · V=0');
  });
});

/** The argument of the last call of `command`. */
function lastCall(server: FakeServer, command: string): object | undefined {
  return server.calls.filter((c) => c.command === command).at(-1)?.argument;
}

function setup(settings: Record<string, unknown> = {}) {
  const server = new FakeServer();
  const fake = new FakeApi();
  const api = fake.asApi();
  const log = memoryLogger();
  const session = new SessionStore(server, () => resolve, log);
  const diffs = new DiffCache(server, session);
  const shown: { name: string; markdown: string }[] = [];
  const info = { show: (name: string, markdown: string) => { shown.push({ name, markdown }); return Promise.resolve(); } } as unknown as InfoDocuments;
  const approvals = new ApprovalTracker();
  const settled: string[] = [];
  const applied: string[][] = [];
  const settledFiles: (readonly string[] | undefined)[] = [];
  const preview = {
    settle: (id: string, files?: readonly string[]) => { settled.push(id); settledFiles.push(files); return Promise.resolve(); },
    show: () => Promise.resolve([]),
    settleApplied: (uris: readonly string[]) => { applied.push([...uris]); return Promise.resolve(); },
  } as unknown as BundlePreview;
  const timers = new ManualTimers();
  const opened: string[] = [];
  const follower = new ReviewFollower({ api, session, open: (b) => { opened.push(b.bundleId); return Promise.resolve(); }, log, timeoutMs: 1000, timers });
  const commands = new KeelCommands({ api, server, session, diffs, info, approvals, preview, follower, settings: () => readSettings((k) => settings[k]).settings, log });
  return { server, fake, session, commands, shown, approvals, settled, settledFiles, applied, follower, opened, timers, log };
}

describe('palette commands', () => {
  it('Start Task asks for the task and passes the mode setting', async () => {
    const { server, fake, commands } = setup({ mode: 'cautious' });
    server.answers.set('keel.server.startSession', () => ({ sessionId: 's-1' }));
    fake.inputAnswers.push('  Add a greet function  ');
    assert.equal(await commands.startTask(), 's-1');
    assert.deepEqual(server.calls[0], { command: 'keel.server.startSession', argument: { task: 'Add a greet function', mode: 'cautious' } });
  });

  it('Start Task does nothing when the input is cancelled, and explains a missing server', async () => {
    const { server, fake, commands } = setup();
    fake.inputAnswers.push(undefined);
    assert.equal(await commands.startTask(), undefined);
    server.state = 'missing';
    assert.equal(await commands.startTask('task'), undefined);
    assert.equal(server.explained, 1);
    assert.equal(server.calls.length, 0);
  });

  it('Approve Bundle uses the active file\'s bundle, counts as an approval, and returns the ledger entry', async () => {
    const { server, fake, commands, approvals } = setup();
    server.notify('keel/sessionChanged', summary({ pendingBundles: [p1, { ...p2, files: [H] }] }));
    fake.activeUri = H;
    let activeDuring = false;
    server.answers.set('keel.server.approve', () => { activeDuring = approvals.active; return { ledgerEntry: 'abc123' }; });
    assert.equal(await commands.approve(undefined, false), 'abc123');
    assert.deepEqual(server.calls.find((c) => c.command === 'keel.server.approve')?.argument, { bundleId: 'b2' });
    assert.equal(activeDuring, true);
    assert.equal(approvals.active, false);
  });

  it('Approve This File sends files: [uri] and settles only that file\'s buffer; the rest stays previewed', async () => {
    const { server, commands, settled, settledFiles, applied } = setup();
    server.answers.set('keel.server.approve', () => ({ ledgerEntry: 'def456' }));
    await commands.approve({ bundle: b2, fileUri: H }, true);
    assert.deepEqual(server.calls[0]?.argument, { bundleId: 'b2', files: [H] });
    assert.deepEqual(settled, ['b2']);
    assert.deepEqual(settledFiles, [[H]], 'the approved file is on disk: its buffer goes back to the disk, clean');
    await commands.approve({ bundle: b2 }, false);
    assert.deepEqual(settled, ['b2', 'b2']);
    assert.deepEqual(settledFiles[1], undefined, 'a decided bundle gives all its previewed buffers back to the disk');
    assert.deepEqual(applied, [[H], [G, H]], 'the approved files\' buffers that hold the disk\'s text are left clean');
  });

  it('Approve This File from a keel-proposed diff or the file\'s editor acts on that file; else asks which file', async () => {
    const { server, fake, commands } = setup();
    server.answers.set('keel.server.status', () => summary({ pendingBundles: [p1, p2] }));
    server.answers.set('keel.server.approve', () => ({ ledgerEntry: 'x' }));
    fake.activeUri = proposedUri({ bundleId: 'b2', fileUri: G, side: 'after' });
    await commands.approve(undefined, true);
    assert.deepEqual(lastCall(server, 'keel.server.approve'), { bundleId: 'b2', files: [G] });
    fake.activeUri = undefined;
    fake.pickAnswers.push((items) => items[1], (items) => items.find((i) => i.label === 'h.py'));
    await commands.approve(undefined, true);
    assert.deepEqual(lastCall(server, 'keel.server.approve'), { bundleId: 'b2', files: [H] });
    assert.deepEqual(fake.picksShown[1]?.map((i) => i.label), ['g.py', 'h.py']);
  });

  it('a refused approval keeps the preview and reports the server\'s reason', async () => {
    const { server, commands, settled } = setup();
    server.answers.set('keel.server.approve', () => { throw new Error('bundle b1 is not stable: V(x)=1.000 >= epsilon 0.1'); });
    await assert.rejects(commands.approve({ bundle: b1 }, false), /not stable/);
    assert.deepEqual(settled, []);
  });

  it('asks with a quick pick over the server\'s pending bundles when nothing else tells', async () => {
    const { server, fake, commands } = setup();
    server.answers.set('keel.server.status', () => summary({ pendingBundles: [p1, p2] }));
    server.answers.set('keel.server.approve', () => ({ ledgerEntry: 'x' }));
    fake.pickAnswers.push((items) => items[1]);
    await commands.approve(undefined, false);
    assert.deepEqual(server.calls.map((c) => c.command), ['keel.server.status', 'keel.server.approve', 'keel.server.status']);
    assert.deepEqual(server.calls[1]?.argument, { bundleId: 'b2' });
    assert.equal(fake.picksShown[0]?.length, 2);
  });

  it('says so when no bundle is pending', async () => {
    const { server, fake, commands } = setup();
    server.answers.set('keel.server.status', () => summary());
    await commands.approve(undefined, false);
    assert.match(fake.messages.join('\n'), /no bundle is waiting/);
  });

  it('Reject passes an optional reason; Escape cancels the rejection', async () => {
    const { server, fake, commands, settled } = setup();
    fake.inputAnswers.push('wrong approach');
    assert.equal(await commands.reject(b1), true);
    assert.deepEqual(settled, ['b1'], 'a rejected bundle gives its previewed buffers back');
    assert.deepEqual(server.calls[0]?.argument, { bundleId: 'b1', reason: 'wrong approach' });
    fake.inputAnswers.push('');
    await commands.reject(b1);
    assert.deepEqual(server.calls[2]?.argument, { bundleId: 'b1' });
    fake.inputAnswers.push(undefined);
    assert.equal(await commands.reject(b1), false);
  });

  it('Reject This File sends files: [uri] and the optional reason, and settles only that file', async () => {
    const { server, fake, commands, settled, settledFiles } = setup();
    server.answers.set('keel.server.reject', ({ bundleId }) => ({ bundleId, decision: 'rejected' }));
    fake.inputAnswers.push('  keep h.py as it is  ');
    assert.equal(await commands.reject({ bundle: b2, fileUri: H }, undefined, true), true);
    assert.deepEqual(lastCall(server, 'keel.server.reject'), { bundleId: 'b2', files: [H], reason: 'keep h.py as it is' });
    assert.deepEqual([settled, settledFiles], [['b2'], [[H]]]);
    fake.inputAnswers.push('');
    await commands.reject({ bundle: b2, fileUri: G }, undefined, true);
    assert.deepEqual(lastCall(server, 'keel.server.reject'), { bundleId: 'b2', files: [G] }, 'an empty reason is left out');
    await commands.reject({ bundle: b2, fileUri: G }, 'given as an argument', true);
    assert.deepEqual(lastCall(server, 'keel.server.reject'), { bundleId: 'b2', files: [G], reason: 'given as an argument' });
    fake.inputAnswers.push(undefined);
    assert.equal(await commands.reject({ bundle: b2, fileUri: G }, undefined, true), false, 'Escape cancels');
    assert.equal(server.calls.filter((c) => c.command === 'keel.server.reject').length, 3);
  });

  it('Reject This File picks the file like Approve This File: the diff, the editor, else a quick pick', async () => {
    const { server, fake, session, commands } = setup();
    server.answers.set('keel.server.status', () => summary({ pendingBundles: [p1, { ...p2, files: [H] }] }));
    await session.refresh();
    fake.activeUri = proposedUri({ bundleId: 'b2', fileUri: H, side: 'after' });
    await commands.reject(undefined, '', true);
    assert.deepEqual(lastCall(server, 'keel.server.reject'), { bundleId: 'b2', files: [H] });
    fake.activeUri = H;
    await commands.reject(undefined, '', true);
    assert.deepEqual(lastCall(server, 'keel.server.reject'), { bundleId: 'b2', files: [H] });
    fake.activeUri = undefined;
    fake.pickAnswers.push((items) => items[0]);
    await commands.reject({ bundle: b2 }, '', true); // a bundle from the tree: which of its files?
    assert.deepEqual(lastCall(server, 'keel.server.reject'), { bundleId: 'b2', files: [G] });
    fake.pickAnswers.push(() => undefined);
    assert.equal(await commands.reject({ bundle: b2 }, '', true), false, 'no file picked: nothing rejected');
    assert.equal(server.calls.filter((c) => c.command === 'keel.server.reject').length, 3);
  });

  it('a whole-bundle Reject sends no files', async () => {
    const { server, commands, settledFiles } = setup();
    await commands.reject({ bundle: b2, fileUri: H }, 'no');
    assert.deepEqual(lastCall(server, 'keel.server.reject'), { bundleId: 'b2', reason: 'no' });
    assert.deepEqual(settledFiles, [undefined]);
  });

  it('Correct requires feedback', async () => {
    const { server, fake, commands } = setup();
    fake.inputAnswers.push('use pathlib');
    assert.equal(await commands.correct(b1), true);
    assert.deepEqual(server.calls[0]?.argument, { bundleId: 'b1', feedback: 'use pathlib' });
    assert.equal(await commands.correct(b1, 'direct feedback'), true);
    fake.inputAnswers.push(undefined);
    assert.equal(await commands.correct(b1), false);
  });

  it('Roll Back picks a ledger entry, confirms, and reverts it', async () => {
    const { server, fake, commands } = setup();
    server.answers.set('keel.server.ledger', () => [ledgerEntry({ sha: 'aaa111', title: 'keel: Greeter' }), ledgerEntry({ sha: 'bbb222', title: 'keel: Helper' })]);
    server.answers.set('keel.server.rollback', () => ({ ledgerEntry: 'ccc333' }));
    fake.pickAnswers.push((items) => items[1]);
    assert.equal(await commands.rollback(), 'ccc333');
    assert.deepEqual(server.calls.find((c) => c.command === 'keel.server.rollback')?.argument, { entry: 'bbb222' });
    fake.confirmAnswer = false;
    fake.pickAnswers.push((items) => items[0]);
    assert.equal(await commands.rollback(), undefined);
  });

  it('Abort confirms first; Resume passes the session id only when given', async () => {
    const { server, fake, commands } = setup();
    fake.confirmAnswer = false;
    assert.equal(await commands.abort(), false);
    assert.equal(await commands.abort(true), true);
    fake.inputAnswers.push('');
    await commands.resume();
    await commands.resume('s-42');
    assert.deepEqual(server.calls.filter((c) => c.command !== 'keel.server.status').map((c) => [c.command, c.argument]), [
      ['keel.server.abort', {}],
      ['keel.server.resume', {}],
      ['keel.server.resume', { sessionId: 's-42' }],
    ]);
  });

  it('Resume offers the sessions the server knows', async () => {
    const { server, fake, commands } = setup();
    server.answers.set('keel.server.status', () => summary({ sessionId: 's-2', running: true, sessions: [{ sessionId: 's-1', task: 'earlier', running: false, outcome: 'partial' }, { sessionId: 's-2', task: 'now', running: true, outcome: null }] }));
    fake.pickAnswers.push((items) => items[1]);
    assert.equal(await commands.resume(), true);
    assert.deepEqual(fake.picksShown[0]?.map((i) => i.label), ['The last session', 'earlier']);
    assert.deepEqual(server.calls.find((c) => c.command === 'keel.server.resume')?.argument, { sessionId: 's-1' });
  });

  it('Restart Server asks first when a session is running', async () => {
    const { server, fake, commands } = setup();
    server.notify('keel/sessionChanged', summary({ running: true, nodes: [node({ id: 'n', state: 'running' })] }));
    fake.confirmAnswer = false;
    assert.equal(await commands.restart(), false);
    assert.equal(server.restarts, 0);
    assert.equal(await commands.restart(true), true);
    server.notify('keel/sessionChanged', summary({ running: false, outcome: 'success', nodes: [node({ id: 'n', state: 'committed' })] }));
    assert.equal(await commands.restart(), true);
    assert.equal(server.restarts, 2);
  });

  it('Show Status and Show Ledger open Markdown documents', async () => {
    const { server, commands, shown } = setup();
    server.answers.set('keel.server.status', () => summary({ sessionId: 's-5' }));
    server.answers.set('keel.server.ledger', () => [ledgerEntry({ sha: 'aaa111', title: 'keel: Greeter' })]);
    await commands.showStatus();
    await commands.showLedger();
    await settle();
    assert.deepEqual(shown.map((s) => s.name), ['/Keel Status.md', '/Keel Ledger.md']);
    assert.match(shown[0]?.markdown ?? '', /`s-5`/);
    assert.match(shown[1]?.markdown ?? '', /keel: Greeter/);
  });
});

describe('read-only modes: Plan and Explain', () => {
  it('Plan asks for the task, sends the active file and opens the plan as Markdown', async () => {
    const { server, fake, commands, shown } = setup();
    server.answers.set('keel.server.plan', ({ task }) => ({ task, plan: { nodes: [] }, invalidAttempts: [], explore: [], markdown: '# Plan: Add sub\n\n## sub: Add sub\n' }));
    fake.activeUri = G;
    fake.inputAnswers.push('  Add sub  ');
    assert.equal(await commands.plan(), '# Plan: Add sub\n\n## sub: Add sub\n');
    assert.deepEqual(server.calls, [{ command: 'keel.server.plan', argument: { task: 'Add sub', file: G } }]);
    assert.deepEqual(shown, [{ name: '/Keel Plan.md', markdown: '# Plan: Add sub\n\n## sub: Add sub\n' }]);
  });

  it('Explain takes the question as its argument, sends no file for a non-file editor, and shows the answer', async () => {
    const { server, fake, commands, shown } = setup();
    server.answers.set('keel.server.explain', ({ question }) => ({ question, answer: 'Sums.', citations: [{ path: 'g.py', line: 1, uri: G }], dropped: [], explore: [], markdown: '# add\n\nSums.\n\n## Sources\n\n- [g.py:1](file:///work/ws/g.py#L1)' }));
    fake.activeUri = proposedUri({ bundleId: 'b1', fileUri: G, side: 'after' });
    await commands.explain('add');
    assert.deepEqual(server.calls, [{ command: 'keel.server.explain', argument: { question: 'add' } }]);
    assert.equal(shown[0]?.name, '/Keel Explain.md');
    assert.match(shown[0]?.markdown ?? '', /\[g\.py:1\]\(file:\/\/\/work\/ws\/g\.py#L1\)/);
  });

  it('Plan and Explain do nothing when cancelled or empty, and explain a missing server', async () => {
    const { server, fake, commands, shown } = setup();
    fake.inputAnswers.push(undefined);
    assert.equal(await commands.plan(), undefined);
    assert.equal(await commands.explain('   ').then(() => server.calls.length), 0);
    server.state = 'missing';
    assert.equal(await commands.explain('why?'), undefined);
    assert.equal(server.explained, 1);
    assert.deepEqual(shown, []);
  });

  it('a result without the keys of the schema is an error naming them, and opens nothing', async () => {
    const { server, commands, shown } = setup();
    server.answers.set('keel.server.plan', () => ({ plan_markdown: '# x' }) as unknown as PlanResult);
    await assert.rejects(commands.plan('task'), /PlanResult: missing task, plan, invalidAttempts, explore, markdown/);
    assert.deepEqual(shown, []);
  });
});
