import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configurationFor, readSettings, toServerSettings } from '../../common/settings';

function getter(values: Record<string, unknown>) {
  return (key: string): unknown => values[key];
}

describe('settings', () => {
  it('maps every setting onto the keel.toml shape of docs/reference/configuration.md', () => {
    const { settings, problems } = readSettings(
      getter({
        'server.path': ' /opt/keel/bin/keel ',
        'models.default': 'openai:gpt-4.1',
        'models.architect': 'anthropic:claude-sonnet-4-5',
        'models.actuator': '',
        mode: 'cautious',
        complexityK: 4,
        energyWeights: [1, 0.5, 2, 1, 1],
        stabilityThreshold: 0.05,
        maxCost: 2.5,
        maxSteps: 40,
        maxAttempts: 2,
      }),
    );
    assert.deepEqual(problems, []);
    assert.equal(settings.serverPath, '/opt/keel/bin/keel');
    assert.deepEqual(toServerSettings(settings), {
      models: { default: 'openai:gpt-4.1', architect: 'anthropic:claude-sonnet-4-5' },
      engine: { mode: 'cautious', complexity_k: 4, energy_weights: [1, 0.5, 2, 1, 1], stability_threshold: 0.05, max_attempts: 2 },
      budget: { max_cost: 2.5, max_steps: 40 },
    });
  });

  it('sends nothing for unset settings, so keel.toml is not overridden by defaults', () => {
    const { settings } = readSettings(getter({ mode: null, complexityK: null, energyWeights: null, 'models.default': '' }));
    assert.deepEqual(toServerSettings(settings), {});
  });

  it('drops and reports invalid values', () => {
    const { settings, problems } = readSettings(
      getter({ mode: 'reckless', complexityK: 2.5, energyWeights: [1, 2], stabilityThreshold: 0, maxSteps: -1, 'models.verifier': 'gpt-4' }),
    );
    assert.deepEqual(toServerSettings(settings), {});
    assert.deepEqual(problems.map((p) => p.key).sort(), ['complexityK', 'energyWeights', 'maxSteps', 'mode', 'models.verifier', 'stabilityThreshold']);
    assert.match(problems.find((p) => p.key === 'mode')?.message ?? '', /cautious, balanced, yolo/);
  });

  it('reads the review and forwarding options with safe defaults', () => {
    assert.equal(readSettings(getter({})).settings.confirmEdits, false);
    assert.equal(readSettings(getter({})).settings.forwardDiagnostics, 'session');
    assert.equal(readSettings(getter({ 'diagnostics.forward': 'off' })).settings.forwardDiagnostics, 'off');
    assert.equal(readSettings(getter({ 'diagnostics.forward': 'bogus' })).settings.forwardDiagnostics, 'session');
  });

  it('answers workspace/configuration items for the keel section and its parts only', () => {
    const server = { engine: { mode: 'yolo' as const }, budget: { max_steps: 3 } };
    assert.deepEqual(configurationFor('keel', server), server);
    assert.deepEqual(configurationFor('keel.engine', server), { mode: 'yolo' });
    assert.equal(configurationFor('keel.engine.mode', server), 'yolo');
    assert.equal(configurationFor('keel.models', server), null);
    assert.equal(configurationFor('python', server), undefined);
    assert.equal(configurationFor('keeling', server), undefined);
    assert.equal(configurationFor(undefined, server), undefined);
  });
});
