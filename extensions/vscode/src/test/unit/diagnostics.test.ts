import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { fileResolver } from '../../common/protocol';
import { SessionStore } from '../../common/session';
import type { ForwardScope } from '../../common/settings';
import { DEBOUNCE_MS, DiagnosticsForwarder, inScope, isForeign, MAX_WAIT_MS, registerDiagnosticsForwarding, type EditorDiagnosticsParams } from '../../features/diagnostics';
import { diagnostic, FakeApi, FakeServer, ManualTimers, memoryLogger, settle } from './fakes';
import { bundle, summary } from './payloads';

/** The range the test converter gives every diagnostic. */
const R = { start: { line: 0, character: 0 } };
import type * as vscode from 'vscode';

const A = 'file:///work/ws/a.py';
const B = 'file:///work/ws/b.py';
const OUTSIDE = 'file:///elsewhere/c.py';

describe('forwarding scope', () => {
  const roots = ['/work/ws'];
  it('forwards only the session files once a session lists them', () => {
    assert.equal(inScope(A, 'session', [A], roots), true);
    assert.equal(inScope(B, 'session', [A], roots), false);
    assert.equal(inScope('file:///work/ws/a%2Epy', 'session', [A], roots), true, 'spelling differences do not matter');
  });
  it('forwards every workspace file when no session lists files, or in workspace scope', () => {
    assert.equal(inScope(B, 'session', undefined, roots), true);
    assert.equal(inScope(B, 'session', [], roots), true);
    assert.equal(inScope(B, 'workspace', [A], roots), true);
    assert.equal(inScope(OUTSIDE, 'workspace', undefined, roots), false);
  });
  it('forwards nothing when off, and never non-file URIs', () => {
    assert.equal(inScope(A, 'off', [A], roots), false);
    assert.equal(inScope('untitled:Untitled-1', 'workspace', undefined, roots), false);
    assert.equal(inScope('keel-proposed:/work/ws/a.py?bundle=b', 'session', undefined, roots), false);
  });
  it('recognises Keel\'s own diagnostics', () => {
    assert.equal(isForeign(diagnostic('x', 'keel')), false);
    assert.equal(isForeign(diagnostic('x', 'Pylance')), true);
    assert.equal(isForeign(diagnostic('x')), true);
  });
});

describe('DiagnosticsForwarder', () => {
  let timers: ManualTimers;
  let sent: EditorDiagnosticsParams[];
  let diags: Map<string, vscode.Diagnostic[]>;
  let versions: Map<string, number>;
  let files: string[] | undefined;
  let scope: ForwardScope;
  let running: boolean;
  let failSends: number;
  let forwarder: DiagnosticsForwarder;

  beforeEach(() => {
    timers = new ManualTimers();
    sent = [];
    diags = new Map();
    versions = new Map();
    files = [A, B];
    scope = 'session';
    running = true;
    failSends = 0;
    forwarder = new DiagnosticsForwarder({
      getDiagnostics: (uri) => diags.get(uri) ?? [],
      documentVersion: (uri) => versions.get(uri),
      workspaceRoots: () => ['/work/ws'],
      sessionFiles: () => files,
      scope: () => scope,
      ready: () => running,
      // Like KeelServer.toProtocolDiagnostics and sendNotification: they throw without a server.
      convert: (list) => {
        if (!running) {
          throw new Error('the Keel language server is not running');
        }
        return list.map((d) => ({ range: R, message: d.message, source: d.source }));
      },
      send: (method, params) => {
        assert.equal(method, 'keel/editorDiagnostics');
        if (!running || failSends > 0) {
          failSends = Math.max(0, failSends - 1);
          return Promise.reject(new Error('the Keel language server is not running'));
        }
        sent.push(params);
        return Promise.resolve();
      },
      timers,
      log: memoryLogger(),
    });
  });

  it('debounces a burst into one message per URI, 300 ms after the last change', async () => {
    diags.set(A, [diagnostic('undefined name', 'Pylance')]);
    versions.set(A, 7);
    forwarder.changed([A]);
    timers.advance(200);
    forwarder.changed([A]);
    timers.advance(DEBOUNCE_MS - 1);
    await settle();
    assert.equal(sent.length, 0);
    timers.advance(1);
    await settle();
    assert.deepEqual(sent, [{ uri: A, version: 7, diagnostics: [{ range: R, message: 'undefined name', source: 'Pylance' }] }]);
  });

  it('sends within a second even when changes never pause', async () => {
    diags.set(A, [diagnostic('e', 'ty')]);
    for (let t = 0; t < MAX_WAIT_MS; t += 100) {
      forwarder.changed([A]);
      timers.advance(100);
      await settle();
    }
    assert.equal(sent.length, 1);
  });

  it('never forwards source "keel", and omits the version of a closed file', async () => {
    diags.set(B, [diagnostic('ours', 'keel'), diagnostic('theirs', 'eslint')]);
    forwarder.changed([B]);
    timers.advance(DEBOUNCE_MS);
    await settle();
    assert.deepEqual(sent, [{ uri: B, diagnostics: [{ range: R, message: 'theirs', source: 'eslint' }] }]);
  });

  it('sends an empty list when a file\'s diagnostics are cleared, and nothing twice', async () => {
    diags.set(A, [diagnostic('e', 'ty')]);
    forwarder.changed([A]);
    timers.advance(DEBOUNCE_MS);
    await settle();
    forwarder.changed([A]);
    timers.advance(DEBOUNCE_MS);
    await settle();
    assert.equal(sent.length, 1, 'an unchanged list is not sent again');
    diags.delete(A);
    forwarder.changed([A]);
    timers.advance(DEBOUNCE_MS);
    await settle();
    assert.deepEqual(sent[1], { uri: A, diagnostics: [] });
  });

  it('ignores files outside the scope', async () => {
    forwarder.changed([OUTSIDE, 'file:///work/ws/other.py']);
    assert.equal(timers.pending, 0);
    scope = 'workspace';
    forwarder.changed(['file:///work/ws/other.py']);
    timers.advance(DEBOUNCE_MS);
    await settle();
    assert.equal(sent[0]?.uri, 'file:///work/ws/other.py');
  });

  it('sends files that join the session with their current diagnostics', async () => {
    const C = 'file:///work/ws/c.py';
    diags.set(C, [diagnostic('old error', 'ty')]);
    files = [A, B, C];
    forwarder.sessionFilesChanged([A, B], [A, B, C]);
    timers.advance(DEBOUNCE_MS);
    await settle();
    assert.deepEqual(sent.map((p) => p.uri), [C]);
  });

  it('sends everything again after a reset (a restarted server knows nothing)', async () => {
    diags.set(A, [diagnostic('e', 'ty')]);
    forwarder.changed([A]);
    await forwarder.flush();
    forwarder.reset();
    forwarder.changed([A]);
    await forwarder.flush();
    assert.equal(sent.length, 2);
  });

  it('tells observers what it sent', async () => {
    const seen: string[] = [];
    forwarder.onDidForward((p) => seen.push(p.uri));
    forwarder.changed([A]);
    await forwarder.flush();
    assert.deepEqual(seen, [A]);
  });

  it('a flush while the server is down neither rejects nor stops later flushes', async () => {
    diags.set(A, [diagnostic('x', 'Pylance')]);
    running = false;
    forwarder.changed([A]);
    timers.advance(DEBOUNCE_MS);
    await settle();
    await forwarder.flush(); // resolves: the chain is not rejected
    assert.equal(sent.length, 0);
    assert.deepEqual(forwarder.waiting, [A]);
    running = true;
    diags.set(B, [diagnostic('y', 'ty')]);
    forwarder.changed([B]);
    timers.advance(DEBOUNCE_MS);
    await settle();
    assert.deepEqual(sent.map((p) => p.uri), [B], 'later changes are still forwarded');
  });

  it('a failed send does not stop later flushes; the file waits for the next start', async () => {
    diags.set(A, [diagnostic('x', 'Pylance')]);
    failSends = 1;
    await forwarder.flush();
    forwarder.changed([A]);
    await forwarder.flush();
    assert.equal(sent.length, 0);
    assert.deepEqual(forwarder.waiting, [A]);
    forwarder.changed([A]);
    await forwarder.flush();
    assert.deepEqual(sent.map((p) => p.uri), [A], 'not recorded as sent, so sent when it changes again');
    assert.deepEqual(forwarder.waiting, []);
  });

  it('sends what waited while the server was down, with current diagnostics, and the session files, once it runs', async () => {
    running = false;
    diags.set(A, [diagnostic('old', 'Pylance')]);
    forwarder.changed([A]);
    timers.advance(DEBOUNCE_MS);
    await settle();
    diags.set(A, [diagnostic('new', 'Pylance')]);
    diags.set(B, [diagnostic('in b', 'ty')]);
    running = true;
    forwarder.serverStarted();
    timers.advance(DEBOUNCE_MS);
    await settle();
    assert.deepEqual(sent.map((p) => [p.uri, p.diagnostics]), [
      [A, [{ range: R, message: 'new', source: 'Pylance' }]],
      [B, [{ range: R, message: 'in b', source: 'ty' }]],
    ]);
    assert.deepEqual(forwarder.waiting, []);
  });

  it('on a start without session files, sends only what waited (in the workspace)', async () => {
    files = undefined;
    running = false;
    forwarder.changed(['file:///work/ws/other.py']);
    await forwarder.flush();
    running = true;
    forwarder.serverStarted();
    await forwarder.flush();
    assert.deepEqual(sent.map((p) => p.uri), ['file:///work/ws/other.py']);
  });
});

describe('registerDiagnosticsForwarding', () => {
  const G = 'file:///work/ws/g.py';
  function wire(state: 'starting' | 'running') {
    const server = new FakeServer();
    server.state = state;
    server.answers.set('keel.server.status', () => summary({ sessionId: 's-1', pendingBundles: [bundle({ bundleId: 'b1', title: 'Greeter', files: [G] })] }));
    const fake = new FakeApi();
    const log = memoryLogger();
    const session = new SessionStore(server, () => fileResolver('/work/ws'), log);
    const timers = new ManualTimers();
    const { disposables } = registerDiagnosticsForwarding({ api: fake.asApi(), server, session, scope: () => 'session', log, timers });
    const sent = () => server.notifications.filter((n) => n.method === 'keel/editorDiagnostics').map((n) => n.params as EditorDiagnosticsParams);
    return { server, fake, session, timers, sent, disposables };
  }

  it('forwards what changed during activation once the server is running', async () => {
    const { server, fake, timers, sent } = wire('starting');
    let unhandled = 0;
    const onUnhandled = (): void => { unhandled += 1; };
    process.on('unhandledRejection', onUnhandled);
    try {
      fake.diagnostics.set(G, [diagnostic('undefined name', 'Pylance')]);
      fake.diagnosticsEmitter.fire([G]);
      timers.advance(DEBOUNCE_MS);
      await settle();
      assert.equal(sent().length, 0);
      server.setState('running');
      timers.advance(DEBOUNCE_MS);
      await settle();
      await settle();
      assert.deepEqual(sent().map((p) => [p.uri, p.diagnostics.length]), [[G, 1]]);
      // ... and later changes too (the chain was not poisoned).
      fake.diagnostics.set(G, []);
      fake.diagnosticsEmitter.fire([G]);
      timers.advance(DEBOUNCE_MS);
      await settle();
      assert.deepEqual(sent().map((p) => p.diagnostics.length), [1, 0]);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(unhandled, 0);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('forwards the session files\' current diagnostics again after Restart Server', async () => {
    const { server, fake, session, timers, sent } = wire('running');
    fake.diagnostics.set(G, [diagnostic('e', 'ty')]);
    await session.refresh();
    timers.advance(DEBOUNCE_MS);
    await settle();
    assert.equal(sent().length, 1, 'a file joining the session is sent once');
    server.setState('stopped');
    fake.diagnosticsEmitter.fire([G]); // while it is down: kept for later
    timers.advance(DEBOUNCE_MS);
    await settle();
    server.setState('starting');
    server.setState('running');
    timers.advance(DEBOUNCE_MS);
    await settle();
    await settle();
    assert.equal(sent().length, 2, 'the new server is told what the old one knew');
    assert.equal(sent()[1]?.uri, G);
  });
});
