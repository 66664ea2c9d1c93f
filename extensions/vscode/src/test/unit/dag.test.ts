import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileResolver, readSummary } from '../../common/protocol';
import { buildDagModel, DagTreeProvider, energyMarkdown, stateIcon, topologicalOrder } from '../../features/dag';
import { SessionStore } from '../../common/session';
import { FakeApi, FakeServer, memoryLogger } from './fakes';
import { bundle as proposed, energy, node, summary as payload } from './payloads';

const resolve = fileResolver('/work/ws');
const W = 'file:///work/ws/';
const summary = readSummary(
  payload({
    sessionId: 's-1',
    epsilon: 0.1,
    nodes: [
      node({ id: 'node-3', title: 'Tests', state: 'queued', owns: ['tests/test_g.py'], dependsOn: ['node-2'] }),
      node({ id: 'node-2', title: 'Greeter', state: 'awaiting_approval', owns: ['src/g.py'], dependsOn: ['node-1'], energy: energy(0.04), attempts: 2 }),
      node({ id: 'node-1', title: 'Package', state: 'committed', owns: ['pyproject.toml'], energy: energy(0) }),
    ],
    pendingBundles: [
      proposed({ bundleId: 'b-2', nodeId: 'node-2', title: 'Greeter', files: [`${W}src/g.py`, `${W}src/__init__.py`], energy: energy(0.04) }),
      proposed({ bundleId: 'b-x', nodeId: 'node-9', title: 'Orphan', files: [`${W}x.py`] }),
    ],
  }),
  resolve,
);

describe('the DAG tree model', () => {
  it('orders nodes after their dependencies', () => {
    assert.deepEqual(topologicalOrder(summary?.nodes ?? []).map((n) => n.id), ['node-1', 'node-2', 'node-3']);
  });

  it('shows state and V(x) per node, bundles as children, files below bundles', () => {
    const items = buildDagModel(summary, ['/work/ws']);
    assert.deepEqual(items.map((i) => i.label), ['Package', 'Greeter', 'Tests', 'Pending bundle b-x']);
    const greeter = items[1];
    assert.equal(greeter?.description, 'V 0.04 · awaiting approval · after node-1');
    assert.equal(greeter?.icon.id, 'bell-dot');
    assert.match(greeter?.tooltip ?? '', /V\(x\) = 0\.04\*\*, ε = 0\.1 \(stable\)/);
    assert.match(greeter?.tooltip ?? '', /Attempts: 2/);
    const bundle = greeter?.children[0];
    assert.equal(bundle?.contextValue, 'keel.bundle');
    assert.equal(bundle?.description, '2 files · V 0.04');
    assert.deepEqual(bundle?.children.map((f) => [f.label, f.contextValue]), [['src/g.py', 'keel.bundleFile'], ['src/__init__.py', 'keel.bundleFile']]);
    assert.equal(bundle?.children[0]?.command?.command, 'keel.showFileDiff');
    assert.equal(items[0]?.icon.id, 'pass-filled');
    assert.equal(items[0]?.children.length, 0);
  });

  it('is empty without a session (the welcome view shows), and shows the running session before nodes exist', () => {
    assert.deepEqual(buildDagModel(undefined, []), []);
    assert.deepEqual(buildDagModel(readSummary(payload({ sessionId: null, task: null, running: false }), resolve), []), []);
    const planning = buildDagModel(readSummary(payload({ task: 'Add greet' }), resolve), []);
    assert.equal(planning[0]?.label, 'Add greet');
    assert.equal(planning[0]?.description, 'running');
  });

  it('renders energy components as a table', () => {
    const md = energyMarkdown({ total: 3, components: [{ name: 'V_log', value: 2 }, { name: 'V_boot', value: 1 }], epsilon: 0.1, stable: false });
    assert.match(md, /\*\*V\(x\) = 3\*\*, ε = 0\.1 \(not stable\)/);
    assert.match(md, /\| V_log \| 2 \|/);
    assert.equal(energyMarkdown(undefined), '_No energy measured yet._');
    assert.equal(stateIcon('something-new').id, 'circle-outline');
  });

  it('rebuilds the tree on every session change', () => {
    const server = new FakeServer();
    const store = new SessionStore(server, () => resolve, memoryLogger());
    const provider = new DagTreeProvider(new FakeApi().asApi(), store);
    let fired = 0;
    provider.onDidChangeTreeData(() => { fired += 1; });
    server.notify('keel/sessionChanged', payload({ nodes: [node({ id: 'n', title: 'N', state: 'running' })] }));
    assert.equal(fired, 1);
    assert.equal(provider.getChildren().length, 1);
    const item = provider.getTreeItem(provider.roots[0]!);
    assert.equal(item.description, 'running');
    assert.equal(item.id, 'node:n');
    server.notify('keel/sessionChanged', payload({ nodes: [node({ id: 'n', title: 'N', state: 'awaiting_approval' })], pendingBundles: [proposed({ bundleId: 'b', nodeId: 'n', files: [`${W}x.py`] })] }));
    const parent = provider.roots[0]!;
    assert.equal(provider.getTreeItem(parent).id, 'node:n/pending', 'a new id, so it opens expanded');
    const [bundle] = provider.pendingItems();
    assert.equal(bundle?.key, 'bundle:b');
    assert.equal(provider.getParent(bundle)?.key, 'node:n/pending');
    assert.equal(provider.getParent(bundle.children[0]!)?.key, 'bundle:b');
    assert.equal(provider.getParent(parent), undefined);
  });
});
