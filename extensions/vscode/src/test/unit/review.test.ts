import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type * as vscode from 'vscode';
import { fileResolver, readBundle } from '../../common/protocol';
import { SessionStore } from '../../common/session';
import { changesArguments, diffArguments, DiffCache, parseProposedUri, proposedUri, ProposedContentProvider, showBundleDiff } from '../../features/review';
import { FakeApi, FakeServer, memoryLogger } from './fakes';
import { bundle as proposed, diffFile, summary } from './payloads';

const resolve = fileResolver('/work/ws');
const bundle = readBundle(proposed({ bundleId: 'b-1', nodeId: 'node-1', title: 'Greeter', files: ['file:///work/ws/g.py', 'file:///work/ws/new.py'] }));
const diff = {
  bundleId: 'b-1',
  files: [
    diffFile({ uri: 'file:///work/ws/g.py', before: 'old\n', after: 'new\n', unifiedDiff: '@@' }),
    diffFile({ uri: 'file:///work/ws/new.py', change: 'create', before: '', after: 'x = 1\n', unifiedDiff: '@@' }),
  ],
};

describe('keel-proposed URIs', () => {
  it('round-trip bundle, file and side, keeping the file path for the language and the tab', () => {
    const uri = proposedUri({ bundleId: 'b 1&x', fileUri: 'file:///work/ws/My%20File.py', side: 'after' });
    assert.match(uri, /^keel-proposed:\/work\/ws\/My%20File\.py\?/);
    assert.deepEqual(parseProposedUri(uri), { bundleId: 'b 1&x', fileUri: 'file:///work/ws/My%20File.py', side: 'after' });
    assert.equal(parseProposedUri('file:///work/ws/a.py'), undefined);
    assert.equal(parseProposedUri('keel-proposed:/a.py'), undefined);
  });

  it('build vscode.diff and vscode.changes arguments from before/after sides', () => {
    const files = [
      { uri: 'file:///work/ws/g.py', before: 'a', after: 'b', unifiedDiff: '', created: false, deleted: false, hunks: [] },
      { uri: 'file:///work/ws/new.py', before: '', after: 'x', unifiedDiff: '', created: true, deleted: false, hunks: [] },
    ];
    const [left, right, title] = diffArguments(bundle, files[1]!, ['/work/ws']);
    assert.equal(parseProposedUri(left)?.side, 'before');
    assert.equal(parseProposedUri(right)?.side, 'after');
    assert.equal(title, 'new.py (Keel new file: Greeter)');
    const [changesTitle, rows] = changesArguments(bundle, files);
    assert.equal(changesTitle, 'Keel: Greeter (2 files)');
    assert.equal(rows[0]?.[0], 'file:///work/ws/g.py');
    assert.equal(parseProposedUri(rows[0]?.[2] ?? '')?.side, 'after');
  });
});

describe('review', () => {
  function setup() {
    const server = new FakeServer();
    server.answers.set('keel.server.diff', () => diff);
    const store = new SessionStore(server, () => resolve, memoryLogger());
    const cache = new DiffCache(server, store);
    const fake = new FakeApi();
    return { server, store, cache, fake, api: fake.asApi() };
  }
  const asUri = (value: string) => ({ toString: () => value }) as unknown as vscode.Uri;

  it('serves both sides of a file from one keel.server.diff call per bundle', async () => {
    const { server, cache, api } = setup();
    const provider = new ProposedContentProvider(api, cache, memoryLogger());
    const after = await provider.provideTextDocumentContent(asUri(proposedUri({ bundleId: 'b-1', fileUri: 'file:///work/ws/g.py', side: 'after' })));
    const before = await provider.provideTextDocumentContent(asUri(proposedUri({ bundleId: 'b-1', fileUri: 'file:///work/ws/g.py', side: 'before' })));
    assert.equal(after, 'new\n');
    assert.equal(before, 'old\n');
    assert.deepEqual(server.calls, [{ command: 'keel.server.diff', argument: { bundleId: 'b-1' } }]);
    const gone = await provider.provideTextDocumentContent(asUri(proposedUri({ bundleId: 'b-1', fileUri: 'file:///work/ws/other.py', side: 'after' })));
    assert.match(gone, /no longer pending/);
  });

  it('asks again and refreshes open documents after the session changes', async () => {
    const { server, cache, api } = setup();
    const provider = new ProposedContentProvider(api, cache, memoryLogger());
    const uri = asUri(proposedUri({ bundleId: 'b-1', fileUri: 'file:///work/ws/g.py', side: 'after' }));
    await provider.provideTextDocumentContent(uri);
    const refreshed: string[] = [];
    provider.onDidChange((u) => refreshed.push(u.toString()));
    server.notify('keel/sessionChanged', summary());
    assert.equal(refreshed.length, 1);
    await provider.provideTextDocumentContent(uri);
    assert.equal(server.calls.length, 2);
  });

  it('reports a failed diff inside the document instead of throwing', async () => {
    const { server, cache, api } = setup();
    server.answers.set('keel.server.diff', () => { throw new Error('unknown bundle'); });
    const provider = new ProposedContentProvider(api, cache, memoryLogger());
    const text = await provider.provideTextDocumentContent(asUri(proposedUri({ bundleId: 'zz', fileUri: 'file:///work/ws/g.py', side: 'after' })));
    assert.match(text, /could not read bundle zz/);
  });

  it('opens vscode.changes for a bundle and vscode.diff for one file', async () => {
    const { cache, fake, api } = setup();
    await showBundleDiff(api, cache, bundle);
    assert.equal(fake.executed[0]?.id, 'vscode.changes');
    assert.equal(fake.executed[0]?.args[0], 'Keel: Greeter (2 files)');
    await showBundleDiff(api, cache, bundle, 'file:///work/ws/g.py');
    assert.equal(fake.executed[1]?.id, 'vscode.diff');
    assert.equal(fake.executed[1]?.args[2], 'g.py (Keel proposed: Greeter)');
  });
});
