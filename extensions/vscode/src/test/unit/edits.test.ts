import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApprovalTracker, withoutConfirmation } from '../../common/edits';

describe('the one-approval rule', () => {
  it('clears needsConfirmation on every annotation, leaving the rest of the edit alone', () => {
    const params = {
      label: 'Keel: Greeter',
      edit: {
        documentChanges: [{ kind: 'create', uri: 'file:///a.py', annotationId: 'n2' }],
        changeAnnotations: { n2: { label: 'node-2', needsConfirmation: true, description: 'Greeter' } },
      },
    };
    const cleared = withoutConfirmation(params);
    assert.deepEqual(cleared.edit.changeAnnotations, { n2: { label: 'node-2', needsConfirmation: false, description: 'Greeter' } });
    assert.equal(cleared.edit.documentChanges, params.edit.documentChanges);
    assert.equal(params.edit.changeAnnotations.n2.needsConfirmation, true, 'the original is not modified');
    const plain = { edit: { changeAnnotations: undefined } };
    assert.equal(withoutConfirmation(plain), plain);
  });

  it('is active only while an approval runs, also when it fails', async () => {
    const tracker = new ApprovalTracker();
    assert.equal(tracker.active, false);
    let during = false;
    await tracker.track(() => { during = tracker.active; return 1; });
    assert.equal(during, true);
    assert.equal(tracker.active, false);
    await assert.rejects(tracker.track(() => Promise.reject(new Error('boom'))));
    assert.equal(tracker.active, false);
  });
});
