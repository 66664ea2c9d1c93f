import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { ForwardScope } from '../../common/settings';
import { DEBOUNCE_MS, DiagnosticsForwarder, inScope, isForeign, MAX_WAIT_MS, type EditorDiagnosticsParams } from '../../features/diagnostics';
import { diagnostic, ManualTimers, memoryLogger, settle } from './fakes';
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
  let forwarder: DiagnosticsForwarder;

  beforeEach(() => {
    timers = new ManualTimers();
    sent = [];
    diags = new Map();
    versions = new Map();
    files = [A, B];
    scope = 'session';
    forwarder = new DiagnosticsForwarder({
      getDiagnostics: (uri) => diags.get(uri) ?? [],
      documentVersion: (uri) => versions.get(uri),
      workspaceRoots: () => ['/work/ws'],
      sessionFiles: () => files,
      scope: () => scope,
      convert: (list) => list.map((d) => ({ message: d.message, source: d.source })),
      send: (method, params) => {
        assert.equal(method, 'keel/editorDiagnostics');
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
    assert.deepEqual(sent, [{ uri: A, version: 7, diagnostics: [{ message: 'undefined name', source: 'Pylance' }] }]);
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
    assert.deepEqual(sent, [{ uri: B, diagnostics: [{ message: 'theirs', source: 'eslint' }] }]);
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
});
