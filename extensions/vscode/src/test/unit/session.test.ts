import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileResolver, type BundleInfo } from '../../common/protocol';
import { SessionStore } from '../../common/session';
import { FakeServer, memoryLogger, settle } from './fakes';
import { bundle, node, summary } from './payloads';

const resolve = fileResolver('/work/ws');

describe('SessionStore', () => {
  it('takes summaries from keel/sessionChanged and lists the session files', () => {
    const server = new FakeServer();
    const store = new SessionStore(server, () => resolve, memoryLogger());
    server.notify('keel/sessionChanged', summary({ nodes: [node({ id: 'n', owns: ['a.py'] })], pendingBundles: [bundle({ bundleId: 'b', files: ['file:///work/ws/b.py'] })] }));
    assert.equal(store.current?.sessionId, 's');
    assert.deepEqual(store.files(), ['file:///work/ws/a.py', 'file:///work/ws/b.py']);
  });

  it('fires proposals and refreshes the status after keel/bundleProposed', async () => {
    const server = new FakeServer();
    server.answers.set('keel.server.status', () => summary({ pendingBundles: [bundle({ bundleId: 'b1' })] }));
    const store = new SessionStore(server, () => resolve, memoryLogger());
    const proposed: BundleInfo[] = [];
    store.onDidProposeBundle((b) => proposed.push(b));
    server.notify('keel/bundleProposed', bundle({ bundleId: 'b1', title: 'T' }));
    await settle();
    assert.equal(proposed[0]?.bundleId, 'b1');
    assert.equal(store.current?.pending[0]?.bundleId, 'b1');
  });

  it('shares overlapping refreshes and asks once more for the last one', async () => {
    const server = new FakeServer();
    let n = 0;
    server.answers.set('keel.server.status', () => summary({ sessionId: `s${String(++n)}` }));
    const store = new SessionStore(server, () => resolve, memoryLogger());
    const a = store.refresh();
    const b = store.refresh();
    const c = store.refresh();
    assert.equal(a, b);
    assert.equal(b, c);
    await a;
    assert.equal(server.calls.length, 2);
    assert.equal(store.current?.sessionId, 's2');
  });

  it('refreshes when the server comes up and forgets the session when it goes away', async () => {
    const server = new FakeServer();
    server.state = 'starting';
    server.answers.set('keel.server.status', () => summary());
    const store = new SessionStore(server, () => resolve, memoryLogger());
    server.setState('running');
    await settle();
    assert.equal(store.current?.sessionId, 's');
    server.setState('failed');
    assert.equal(store.current, undefined);
  });

  it('keeps the last summary when the status request fails', async () => {
    const server = new FakeServer();
    const log = memoryLogger();
    server.answers.set('keel.server.status', () => { throw new Error('boom'); });
    const store = new SessionStore(server, () => resolve, log);
    server.notify('keel/sessionChanged', summary({ sessionId: 'kept' }));
    await store.refresh();
    assert.equal(store.current?.sessionId, 'kept');
    assert.match(log.lines.join('\n'), /Could not read the session status: boom/);
  });

  it('logs a notification that does not follow the schema, and keeps the last summary', () => {
    const server = new FakeServer();
    const log = memoryLogger();
    const store = new SessionStore(server, () => resolve, log);
    server.notify('keel/sessionChanged', summary({ sessionId: 'kept' }));
    const proposed: BundleInfo[] = [];
    store.onDidProposeBundle((b) => proposed.push(b));
    // Spellings an earlier client accepted: the server never sends them, so they are errors.
    server.deliver('keel/sessionChanged', { session_id: 's2', pending_bundles: [] });
    server.deliver('keel/bundleProposed', { bundle_id: 'b9', nodeId: 'n', title: 't', files: [], energy: {}, sessionId: 's' });
    server.deliver('keel/bundleProposed', { ...bundle({ bundleId: 'b8' }), energy: { V: 1 } });
    assert.equal(store.current?.sessionId, 'kept');
    assert.deepEqual(proposed, []);
    const errors = log.lines.filter((l) => l.startsWith('error:'));
    assert.match(errors[0] ?? '', /keel\/sessionChanged does not match the protocol: SessionSummary: missing sessionId, task, running/);
    assert.match(errors[1] ?? '', /BundleProposed: missing bundleId/);
    assert.match(errors[2] ?? '', /Energy: missing v, v_syn/);
  });
});
