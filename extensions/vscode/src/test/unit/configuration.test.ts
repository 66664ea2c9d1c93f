// First: vscode-languageclient's modules require `vscode` when they load.
import { changeSetting } from './vscode-stub';
// The Node runtime layer, which vscode-languageclient/node installs in the extension.
import 'vscode-languageserver-protocol/node';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SyncConfigurationFeature } from 'vscode-languageclient/$test/common/configuration';
import { ApprovalTracker } from '../../common/edits';
import { keelMiddleware, synchronizeOptions } from '../../common/middleware';
import { PUSH_KEYS, readSettings, RESTART_KEYS } from '../../common/settings';

/** The `keel.*` settings a user has, as VS Code's configuration would answer them. */
function harness() {
  const values: Record<string, unknown> = {};
  const sent: { method: string; params: unknown }[] = [];
  const middleware = keelMiddleware({
    settings: () => readSettings((key) => values[key]).settings,
    sendNotification: (method, params) => { sent.push({ method, params }); return Promise.resolve(); },
    approvals: new ApprovalTracker(),
  });
  // The client as vscode-languageclient's configuration sync sees it (options, middleware, send).
  const client = {
    clientOptions: { synchronize: synchronizeOptions() },
    middleware,
    sendNotification: (type: { method: string }, params: unknown) => { sent.push({ method: `raw ${type.method}`, params }); return Promise.resolve(); },
    error: (message: string) => { throw new Error(message); },
  };
  const feature = new SyncConfigurationFeature(client as unknown as ConstructorParameters<typeof SyncConfigurationFeature>[0]);
  feature.initialize();
  return { values, sent, feature };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('pushing settings on change (workspace/didChangeConfiguration)', () => {
  it('tells the server the new value, in the keel.toml shape, when a keel.* engine setting changes', async () => {
    const { values, sent, feature } = harness();
    await settle();
    sent.length = 0; // the client pushes once when it starts
    values.mode = 'yolo';
    values['models.default'] = 'anthropic:claude-sonnet-4-5';
    changeSetting('keel.mode');
    await settle();
    assert.deepEqual(sent, [
      { method: 'workspace/didChangeConfiguration', params: { settings: { keel: { models: { default: 'anthropic:claude-sonnet-4-5' }, engine: { mode: 'yolo' } } } } },
    ]);
    values.maxCost = 2.5;
    changeSetting('keel.models.architect'); // below a pushed section
    changeSetting('keel.maxCost');
    await settle();
    assert.equal(sent.length, 3);
    assert.deepEqual((sent[2]?.params as { settings: { keel: unknown } }).settings.keel, {
      models: { default: 'anthropic:claude-sonnet-4-5' }, engine: { mode: 'yolo' }, budget: { max_cost: 2.5 },
    });
    feature.clear();
  });

  it('does not push for settings only the extension reads, nor for those that restart the server', async () => {
    const { sent, feature } = harness();
    await settle();
    sent.length = 0;
    for (const key of ['keel.review.previewInEditor', 'keel.diagnostics.forward', 'keel.trace.server', 'keel.server.path', 'keel.python', 'editor.fontSize']) {
      changeSetting(key);
    }
    await settle();
    assert.deepEqual(sent, []);
    feature.clear();
  });

  it('covers every contributed setting: pushed, restarting, or the extension\'s own', () => {
    const manifest = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { contributes: { configuration: { properties: Record<string, unknown> } } };
    const own = ['keel.review.', 'keel.diagnostics.', 'keel.trace.'];
    const under = (key: string, section: string) => key === section || key.startsWith(`${section}.`);
    for (const key of Object.keys(manifest.contributes.configuration.properties)) {
      const pushed = PUSH_KEYS.some((s) => under(key, s));
      const restarts = (RESTART_KEYS as readonly string[]).includes(key);
      const extensionOnly = own.some((prefix) => key.startsWith(prefix));
      assert.equal([pushed, restarts, extensionOnly].filter(Boolean).length, 1, `${key} must be exactly one of pushed, restarting, extension-only`);
    }
  });

  it('answers workspace/configuration for keel sections in the keel.toml shape, and passes others on', async () => {
    const values: Record<string, unknown> = { stabilityThreshold: 0.25 };
    const middleware = keelMiddleware({
      settings: () => readSettings((key) => values[key]).settings,
      sendNotification: () => Promise.resolve(),
      approvals: new ApprovalTracker(),
    });
    const configuration = middleware.workspace?.configuration;
    assert.ok(configuration !== undefined);
    const items = [{ section: 'keel' }, { section: 'keel.engine.stability_threshold' }, { section: 'python' }];
    const answer = await configuration({ items }, undefined as never, () => [null, null, { pythonPath: 'py' }]);
    assert.deepEqual(answer, [{ engine: { stability_threshold: 0.25 } }, 0.25, { pythonPath: 'py' }]);
  });
});
