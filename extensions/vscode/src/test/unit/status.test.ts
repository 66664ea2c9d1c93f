import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileResolver, readSummary } from '../../common/protocol';
import { renderStatusMarkdown, statusBarView } from '../../features/status';
import { bundle, energy, node, summary } from './payloads';

const resolve = fileResolver('/work/ws');

describe('the status bar', () => {
  it('shows the session state and the current V(x)', () => {
    const s = readSummary(summary({ nodes: [node({ id: 'n', state: 'awaiting_approval', energy: energy(0.04) })], pendingBundles: [bundle({ bundleId: 'b', nodeId: 'n', energy: energy(0.04) })] }), resolve);
    const view = statusBarView('running', s);
    assert.equal(view.text, '$(bell-dot) Keel: awaiting approval · V 0.04');
    assert.equal(view.background, 'statusBarItem.warningBackground');
    assert.match(view.tooltip, /0\/1 committed; 1 bundle pending/);
  });

  it('counts several pending bundles and spins while running', () => {
    const running = readSummary(summary({ nodes: [node({ id: 'n', state: 'running', energy: energy(2.5) })] }), resolve);
    assert.equal(statusBarView('running', running).text, '$(sync~spin) Keel: running · V 2.5');
    const waiting = readSummary(summary({ nodes: [node({ id: 'n', state: 'running', energy: energy(2.5) })], pendingBundles: [bundle({ bundleId: 'a', energy: energy(0.02) }), bundle({ bundleId: 'b', energy: energy(0.01) })] }), resolve);
    assert.equal(statusBarView('running', waiting).text, '$(bell-dot) Keel: awaiting approval · V 0.02 · 2 pending');
  });

  it('says what is wrong with the server before anything about a session', () => {
    assert.equal(statusBarView('missing', undefined).text, '$(warning) Keel: server not found');
    assert.equal(statusBarView('failed', undefined).background, 'statusBarItem.errorBackground');
    assert.equal(statusBarView('starting', undefined).text, '$(loading~spin) Keel');
    assert.equal(statusBarView('running', undefined).text, '$(circle-large-outline) Keel: no session');
  });

  it('renders the full status report', () => {
    const s = readSummary(summary({ sessionId: 's-7', running: false, outcome: 'success', task: 'Add greet', nodes: [node({ id: 'node-1', title: 'Greeter', state: 'committed', owns: ['g.py'], energy: energy(0) })] }), resolve);
    const md = renderStatusMarkdown(s, 'running', ['/work/ws']);
    assert.match(md, /- Session: `s-7`/);
    assert.match(md, /### Greeter \(`node-1`\): committed/);
    assert.match(md, /Owns: `g\.py`/);
    assert.match(md, /## Pending bundles\n\n_None\._/);
    assert.match(renderStatusMarkdown(undefined, 'missing', []), /Server: missing/);
  });
});
