import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  currentEnergy,
  expect,
  fileResolver,
  formatEnergy,
  ProtocolError,
  readAborted,
  readBundle,
  readDiff,
  readEnergy,
  readLedger,
  readLedgerEntry,
  readSessionId,
  readSummary,
} from '../../common/protocol';
import { bundle, diffFile, energy, ledgerEntry, node, summary } from './payloads';

const resolve = fileResolver('/work/ws');

describe('readEnergy', () => {
  it('reads the energy object (v, v_syn, ..., epsilon, stable)', () => {
    const e = readEnergy({ v: 3, v_syn: 0, v_str: 0, v_log: 2, v_boot: 1, v_sheaf: 0, epsilon: 0.1, stable: false });
    assert.equal(e.total, 3);
    assert.deepEqual(e.components.map((c) => c.name), ['V_syn', 'V_str', 'V_log', 'V_boot', 'V_sheaf']);
    assert.equal(e.components.find((c) => c.name === 'V_log')?.value, 2);
    assert.equal(e.epsilon, 0.1);
    assert.equal(e.stable, false);
  });

  it('accepts no other spelling and no bare number', () => {
    assert.throws(() => readEnergy({ V: 3, V_syn: 3 }), /Energy: missing v, v_syn, v_str, v_log, v_boot, v_sheaf, epsilon, stable/);
    assert.throws(() => readEnergy({ components: { vSyn: 0.5 } }), ProtocolError);
    assert.throws(() => readEnergy(0.25), /Energy: expected a JSON object, got number/);
    assert.throws(() => readEnergy(null), /got null/);
  });
});

describe('readSummary', () => {
  it('returns undefined when there is no session', () => {
    assert.equal(readSummary(summary({ sessionId: null, task: null, running: false, mode: null, epsilon: null }), resolve), undefined);
  });

  it('reads the summary the Keel server sends (keel.lsp.scoring.summary)', () => {
    const e = energy(1);
    const raw = summary({
      sessionId: 's-20261122-030444-834412',
      task: 'Give hello.py a typed greet',
      nodes: [
        node({ id: 'node-1', title: 'Typed greeting', state: 'awaiting_approval', owns: ['hello.py'], attempts: 1, energy: e }),
        node({ id: 'node-2', title: 'Greeting tests', kind: 'unit_test', state: 'queued', owns: ['test_hello.py'], dependsOn: ['node-1'] }),
      ],
      pendingBundles: [bundle({ bundleId: 'f68b65010a747106', title: 'Typed greeting', files: ['file:///work/ws/hello.py'], energy: e })],
      sessions: [
        { sessionId: 's-0', task: 'earlier', running: false, outcome: 'success' },
        { sessionId: 's-1', task: 'now', running: true, outcome: null },
      ],
    });
    const s = readSummary(raw, resolve);
    assert.ok(s);
    assert.equal(s.state, 'awaiting_approval');
    assert.equal(s.task, 'Give hello.py a typed greet');
    assert.deepEqual(s.nodes[0]?.files, ['file:///work/ws/hello.py'], 'owned paths become URIs');
    assert.deepEqual(s.nodes[1]?.dependsOn, ['node-1']);
    assert.equal(s.nodes[0]?.energy?.total, 1);
    assert.equal(s.nodes[0]?.energy?.stable, false);
    assert.equal(s.nodes[1]?.energy, undefined, 'null energy: none measured yet');
    assert.equal(s.pending[0]?.energy?.components.find((c) => c.name === 'V_syn')?.value, 1);
    assert.deepEqual(s.pending[0]?.files, ['file:///work/ws/hello.py']);
    assert.deepEqual(s.sessions.map((x) => [x.sessionId, x.running, x.outcome]), [['s-0', false, 'success'], ['s-1', true, undefined]]);
    assert.equal(currentEnergy(s), 1);
    assert.equal(readSummary({ ...raw, running: false, outcome: 'success', pendingBundles: [], nodes: [] }, resolve)?.state, 'success');
    assert.equal(readSummary({ ...raw, pendingBundles: [], nodes: [node({ id: 'n', state: 'committed' })] }, resolve)?.state, 'running');
    assert.equal(readSummary({ ...raw, running: false, outcome: null, pendingBundles: [], nodes: [node({ id: 'n', state: 'failed' })] }, resolve)?.state, 'partial');
  });

  it('refuses the shapes an earlier client tolerated, naming what is missing', () => {
    assert.throws(() => readSummary(null, resolve), /SessionSummary: expected a JSON object, got null/);
    assert.throws(() => readSummary({}, resolve), /SessionSummary: missing sessionId, task, running, outcome, reason, mode, epsilon, nodes, pendingBundles, sessions/);
    const { pendingBundles, ...rest } = summary();
    assert.throws(() => readSummary({ ...rest, pending_bundles: pendingBundles }, resolve), /SessionSummary: missing pendingBundles$/);
    assert.throws(() => readSummary(summary({ nodes: [{ id: 'n', status: 'queued' } as never] }), resolve), /SummaryNode: missing title/);
    assert.throws(() => readSummary(summary({ pendingBundles: [{ ...bundle({ bundleId: 'b' }), energy: { V: 0 } } as never] }), resolve), /Energy: missing v/);
  });
});

describe('readBundle', () => {
  it('reads keel/bundleProposed', () => {
    const b = readBundle(bundle({ bundleId: 'b1', nodeId: 'node-2', title: 'Greeter', files: ['file:///work/ws/g.py'], energy: energy(0.02), sessionId: 's-1' }));
    assert.deepEqual(b, {
      bundleId: 'b1',
      nodeId: 'node-2',
      title: 'Greeter',
      files: ['file:///work/ws/g.py'],
      energy: { total: 0.02, components: readEnergy(energy(0.02)).components, epsilon: 0.1, stable: true },
      sessionId: 's-1',
    });
  });

  it('refuses a bundle keyed by another spelling', () => {
    for (const key of ['bundle_id', 'bundle', 'id']) {
      const { bundleId, ...rest } = bundle({ bundleId: 'b1' });
      assert.throws(() => readBundle({ ...rest, [key]: bundleId }), /BundleProposed: missing bundleId/, key);
    }
  });
});

describe('readDiff', () => {
  it('reads the files of keel.server.diff and marks created and deleted files by their change', () => {
    const files = readDiff({
      bundleId: 'b',
      files: [
        diffFile({ uri: 'file:///work/ws/a.py', before: 'x = 1\n', after: 'x = 2\n', unifiedDiff: '@@' }),
        diffFile({ uri: 'file:///work/ws/new.py', change: 'create', after: 'y = 1\n' }),
        diffFile({ uri: 'file:///work/ws/old.py', change: 'delete', before: 'z\n' }),
      ],
    });
    assert.deepEqual(files.map((f) => [f.created, f.deleted]), [[false, false], [true, false], [false, true]]);
    assert.equal(files[1]?.before, '');
    assert.equal(files[0]?.unifiedDiff, '@@');
  });

  it('refuses a file without its keys, and a bare list', () => {
    assert.throws(() => readDiff({ bundleId: 'b', files: [{ uri: 'file:///a', before: '', after: '', unified_diff: '' }] }), /DiffFile: missing path, change, unifiedDiff/);
    assert.throws(() => readDiff([diffFile({ uri: 'file:///a' })]), /DiffResult: expected a JSON object, got array/);
  });
});

describe('readLedger', () => {
  it('reads the entries of keel.server.ledger', () => {
    const entries = readLedger([ledgerEntry({ sha: 'abc123', title: 'keel: Greeter', nodeId: 'node-2', energy: 'V=0.000' })]);
    assert.deepEqual(entries, [{ entry: 'abc123', title: 'keel: Greeter', node: 'node-2', session: 's', date: '2026-12-04T00:00:00Z', energy: 'V=0.000', approvedBy: 'user' }]);
  });

  it('refuses {entries: [...]} and entries keyed by other spellings', () => {
    assert.throws(() => readLedger({ entries: [] }), /LedgerResult: expected a JSON array, got object/);
    assert.throws(() => readLedger([{ sha: 'abc', message: 'keel: Greeter' }]), /LedgerEntry: missing title, sessionId, nodeId/);
  });
});

describe('single-value results', () => {
  it('reads sessionId, ledgerEntry and aborted, and nothing else', () => {
    assert.equal(readSessionId({ sessionId: 's-9' }), 's-9');
    assert.equal(readLedgerEntry({ ledgerEntry: 'abc' }), 'abc');
    assert.deepEqual(readAborted({ aborted: ['s-1'] }), ['s-1']);
    assert.throws(() => readSessionId({ session_id: 's-9' }), /SessionIdResult: missing sessionId/);
    assert.throws(() => readLedgerEntry({ sha: 'abc' }), /LedgerEntryResult: missing ledgerEntry/);
    assert.throws(() => readSessionId('s-9'), /expected a JSON object, got string/);
    assert.throws(() => expect('AbortResult', []), /AbortResult: expected a JSON object, got array/);
  });
});

describe('formatting', () => {
  it('formats energies compactly', () => {
    assert.equal(formatEnergy(0), '0');
    assert.equal(formatEnergy(0.0423), '0.042');
    assert.equal(formatEnergy(3.5), '3.5');
    assert.equal(formatEnergy(12.34), '12.3');
    assert.equal(formatEnergy(250.2), '250');
    assert.equal(formatEnergy(0.00001234), '1.2e-5');
    assert.equal(formatEnergy(undefined), '?');
  });

  it('picks the current V: pending bundles first, then unfinished nodes, then all nodes', () => {
    const base = readSummary(summary({ nodes: [node({ id: 'a', state: 'committed', energy: energy(0.01) }), node({ id: 'b', state: 'running', energy: energy(2) })] }), resolve);
    assert.equal(currentEnergy(base), 2);
    const pending = readSummary(summary({ nodes: [node({ id: 'b', state: 'running', energy: energy(2) })], pendingBundles: [bundle({ bundleId: 'x', energy: energy(0.5) })] }), resolve);
    assert.equal(currentEnergy(pending), 0.5);
    const done = readSummary(summary({ nodes: [node({ id: 'a', state: 'committed', energy: energy(0.01) })] }), resolve);
    assert.equal(currentEnergy(done), 0.01);
    assert.equal(currentEnergy(undefined), undefined);
  });
});
