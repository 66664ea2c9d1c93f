import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  currentEnergy,
  fileResolver,
  formatEnergy,
  readBundle,
  readDiff,
  readEnergy,
  readLedger,
  readString,
  readSummary,
} from '../../common/protocol';

const resolve = fileResolver('/work/ws');

describe('readEnergy', () => {
  it('reads the headless event spelling (v, v_syn, ...)', () => {
    const e = readEnergy({ v: 3, v_syn: 0, v_str: 0, v_log: 2, v_boot: 1, v_sheaf: 0, epsilon: 0.1, stable: false });
    assert.equal(e?.total, 3);
    assert.deepEqual(e?.components.map((c) => c.name), ['V_syn', 'V_str', 'V_log', 'V_boot', 'V_sheaf']);
    assert.equal(e?.components.find((c) => c.name === 'V_log')?.value, 2);
    assert.equal(e?.epsilon, 0.1);
    assert.equal(e?.stable, false);
  });

  it('reads camelCase components nested under "components" and sums them when there is no total', () => {
    const e = readEnergy({ components: { vSyn: 0.5, vLog: 1 } });
    assert.equal(e?.total, 1.5);
  });

  it('accepts a bare number and rejects junk', () => {
    assert.equal(readEnergy(0.25)?.total, 0.25);
    assert.equal(readEnergy('nope'), undefined);
    assert.equal(readEnergy({}), undefined);
  });
});

describe('readSummary', () => {
  it('returns undefined when there is no session', () => {
    assert.equal(readSummary(null, resolve), undefined);
    assert.equal(readSummary({}, resolve), undefined);
    assert.equal(readSummary({ session: null }, resolve), undefined);
  });

  it('reads a camelCase summary with top-level pending bundles', () => {
    const s = readSummary(
      {
        sessionId: 's-1',
        state: 'awaiting_approval',
        task: 'Add greet',
        nodes: [
          { id: 'node-1', title: 'Package', state: 'committed', owns: ['pyproject.toml'], dependsOn: [], energy: { V: 0 } },
          { id: 'node-2', title: 'Greeter', state: 'awaiting_approval', owns: ['src/greet.py'], dependsOn: ['node-1'], energy: { V: 0.05, V_syn: 0.05 } },
        ],
        pendingBundles: [{ bundleId: 'b-2', nodeId: 'node-2', files: ['file:///work/ws/src/greet.py'], energy: { V: 0.05 } }],
      },
      resolve,
    );
    assert.ok(s);
    assert.equal(s.sessionId, 's-1');
    assert.equal(s.state, 'awaiting_approval');
    assert.equal(s.nodes.length, 2);
    assert.deepEqual(s.nodes[0]?.files, ['file:///work/ws/pyproject.toml']);
    assert.deepEqual(s.nodes[1]?.dependsOn, ['node-1']);
    assert.equal(s.pending[0]?.title, 'Greeter', 'a bundle without a title takes its node title');
    assert.deepEqual(s.pending[0]?.files, ['file:///work/ws/src/greet.py']);
  });

  it('reads snake_case, nodes as a map, bundles nested in nodes, and derives the state', () => {
    const s = readSummary(
      {
        session: { session_id: 's-2' },
        nodes: {
          'node-1': { title: 'One', status: 'awaiting_approval', owns: ['a.py'], pending_bundle: { bundle_id: 'b-1' } },
          'node-2': 'queued',
        },
      },
      resolve,
    );
    assert.ok(s);
    assert.equal(s.sessionId, 's-2');
    assert.equal(s.state, 'awaiting_approval');
    assert.deepEqual(s.nodes.map((n) => [n.id, n.state]), [['node-1', 'awaiting_approval'], ['node-2', 'queued']]);
    assert.equal(s.pending.length, 1);
    assert.equal(s.pending[0]?.nodeId, 'node-1');
    assert.deepEqual(s.pending[0]?.files, ['file:///work/ws/a.py'], 'a nested bundle without files takes its node files');
  });

  it('reads the summary the Keel server sends (keel.lsp.scoring.summary)', () => {
    const energy = { v_syn: 1, v_str: 0, v_log: 0, v_boot: 0, v_sheaf: 0, v: 1, epsilon: 0.1, stable: false };
    const raw = {
      sessionId: 's-20261122-030444-834412',
      task: 'Give hello.py a typed greet',
      running: true,
      outcome: null,
      reason: '',
      mode: 'cautious',
      epsilon: 0.1,
      nodes: [
        { id: 'node-1', title: 'Typed greeting', kind: 'code', state: 'awaiting_approval', owns: ['hello.py'], attempts: 1, energy, ledgerEntry: null },
        { id: 'node-2', title: 'Greeting tests', kind: 'unit_test', state: 'queued', owns: ['test_hello.py'], attempts: 0, energy: null, ledgerEntry: null },
      ],
      pendingBundles: [{ bundleId: 'f68b65010a747106', nodeId: 'node-1', title: 'Typed greeting', files: ['file:///work/ws/hello.py'], energy, sessionId: 's-1' }],
      sessions: [{ sessionId: 's-0', task: 'earlier', running: false, outcome: 'success' }, { sessionId: 's-1', task: 'now', running: true, outcome: null }],
    };
    const s = readSummary(raw, resolve);
    assert.ok(s);
    assert.equal(s.state, 'awaiting_approval');
    assert.equal(s.nodes[0]?.energy?.total, 1);
    assert.equal(s.nodes[0]?.energy?.stable, false);
    assert.equal(s.nodes[1]?.energy, undefined);
    assert.equal(s.pending[0]?.energy?.components.find((c) => c.name === 'V_syn')?.value, 1);
    assert.deepEqual(s.sessions.map((x) => [x.sessionId, x.running, x.outcome]), [['s-0', false, 'success'], ['s-1', true, undefined]]);
    assert.equal(currentEnergy(s), 1);
    assert.equal(readSummary({ ...raw, running: false, outcome: 'success', pendingBundles: [], nodes: [] }, resolve)?.state, 'success');
    assert.equal(readSummary({ ...raw, pendingBundles: [], nodes: [{ id: 'n', state: 'committed' }] }, resolve)?.state, 'running');
    assert.equal(readSummary({ sessionId: null, nodes: [], pendingBundles: [], sessions: [] }, resolve), undefined);
  });

  it('does not list a bundle twice when it is both nested and top-level', () => {
    const s = readSummary({ sessionId: 's', nodes: [{ id: 'n', pendingBundles: ['b'] }], pending: [{ bundleId: 'b', nodeId: 'n' }] }, resolve);
    assert.equal(s?.pending.length, 1);
  });
});

describe('readBundle', () => {
  it('reads keel/bundleProposed', () => {
    const b = readBundle({ bundleId: 'b1', nodeId: 'node-2', title: 'Greeter', files: ['file:///work/ws/g.py'], energy: { V: 0.02 } }, resolve);
    assert.deepEqual(b, {
      bundleId: 'b1',
      nodeId: 'node-2',
      title: 'Greeter',
      files: ['file:///work/ws/g.py'],
      energy: { total: 0.02, components: [], epsilon: undefined, stable: undefined },
    });
  });

  it('rejects a bundle without an id', () => {
    assert.equal(readBundle({ title: 'x' }, resolve), undefined);
  });
});

describe('readDiff', () => {
  it('reads the files of keel.server.diff and marks created and deleted files', () => {
    const files = readDiff(
      {
        files: [
          { uri: 'file:///work/ws/a.py', before: 'x = 1\n', after: 'x = 2\n', unifiedDiff: '@@' },
          { uri: 'new.py', before: null, after: 'y = 1\n', unifiedDiff: '' },
          { uri: 'file:///work/ws/old.py', before: 'z\n', after: null },
          { before: 'no uri' },
        ],
      },
      resolve,
    );
    assert.equal(files.length, 3);
    assert.equal(files[1]?.uri, 'file:///work/ws/new.py');
    assert.equal(files[1]?.created, true);
    assert.equal(files[1]?.before, '');
    assert.equal(files[2]?.deleted, true);
    assert.equal(files[0]?.created, false);
  });
});

describe('readLedger', () => {
  it('reads a list or {entries} and skips entries without a sha', () => {
    const entries = readLedger({ entries: [{ sha: 'abc123', message: 'keel: Greeter', node: 'node-2', energy: { V: 0 } }, { message: 'no sha' }] });
    assert.equal(entries.length, 1);
    assert.equal(entries[0]?.entry, 'abc123');
    assert.equal(entries[0]?.title, 'keel: Greeter');
    assert.equal(entries[0]?.energy, 'V=0');
    assert.equal(readLedger([{ entry: 'e1', title: 't' }])[0]?.entry, 'e1');
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

  it('picks the current V: session figure, then pending, then unfinished nodes', () => {
    const base = readSummary({ sessionId: 's', nodes: [{ id: 'a', state: 'committed', energy: 0.01 }, { id: 'b', state: 'running', energy: 2 }] }, resolve);
    assert.equal(currentEnergy(base), 2);
    const pending = readSummary({ sessionId: 's', nodes: [{ id: 'b', state: 'running', energy: 2 }], pending: [{ bundleId: 'x', energy: 0.5 }] }, resolve);
    assert.equal(currentEnergy(pending), 0.5);
    const own = readSummary({ sessionId: 's', energy: { V: 7 }, nodes: [{ id: 'b', energy: 2 }] }, resolve);
    assert.equal(currentEnergy(own), 7);
    assert.equal(currentEnergy(undefined), undefined);
  });

  it('reads single-string results', () => {
    assert.equal(readString({ sessionId: 's-9' }, 'sessionId'), 's-9');
    assert.equal(readString('raw', 'x'), 'raw');
    assert.equal(readString(null, 'x'), undefined);
  });
});
