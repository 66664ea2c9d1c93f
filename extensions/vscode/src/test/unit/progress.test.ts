import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NotificationProgressFeature, placeFor, ProgressPart, type OpenProgress, type ProgressClient } from '../../features/progress';
import { settle } from './fakes';

interface Opened {
  options: { place: string; title: string; cancellable: boolean };
  reports: { message?: string; increment?: number }[];
  cancel?: () => void;
  finished: boolean;
}

function recorder(): { open: OpenProgress; opened: Opened[] } {
  const opened: Opened[] = [];
  const open: OpenProgress = (options, run) => {
    const entry: Opened = { options, reports: [], finished: false };
    opened.push(entry);
    void run({ report: (v) => entry.reports.push(v) }, (listener) => { entry.cancel = listener; }).then(() => { entry.finished = true; });
  };
  return { open, opened };
}

describe('server progress', () => {
  it('shows cancellable work as a notification and the rest in the status bar', () => {
    assert.equal(placeFor({ kind: 'begin', title: 't', cancellable: true }, 0), 'notification');
    assert.equal(placeFor({ kind: 'begin', title: 't', cancellable: true }, 1), 'window');
    assert.equal(placeFor({ kind: 'begin', title: 't' }, 0), 'window');
  });

  it('turns absolute percentages into increments and ends the progress', async () => {
    const { open, opened } = recorder();
    let cancelled = 0;
    const part = new ProgressPart(open, () => { cancelled += 1; });
    part.handle({ kind: 'begin', title: 'Keel: session', cancellable: true, percentage: 0, message: 'planning' });
    part.handle({ kind: 'report', percentage: 40, message: 'node-1' });
    part.handle({ kind: 'report', percentage: 30 });
    part.handle({ kind: 'report', message: 'verifying' });
    part.handle({ kind: 'report', percentage: 100 });
    part.handle({ kind: 'end' });
    await settle();
    const p = opened[0]!;
    assert.deepEqual(p.options, { place: 'notification', title: 'Keel: session', cancellable: true });
    assert.deepEqual(p.reports, [{ message: 'planning', increment: 0 }, { message: 'node-1', increment: 40 }, { increment: 0 }, { message: 'verifying' }, { increment: 60 }]);
    assert.equal(p.finished, true);
    p.cancel?.();
    assert.equal(cancelled, 0, 'a finished progress does not send a cancel');
  });

  it('sends window/workDoneProgress/cancel when the user clicks Cancel', async () => {
    const { open, opened } = recorder();
    let cancelled = 0;
    const part = new ProgressPart(open, () => { cancelled += 1; });
    part.handle({ kind: 'begin', title: 'x', cancellable: true });
    await settle();
    opened[0]!.cancel?.();
    assert.equal(cancelled, 1);
  });

  it('answers window/workDoneProgress/create and follows $/progress per token', async () => {
    const { open, opened } = recorder();
    let createHandler: ((p: { token: string | number }) => void) | undefined;
    const progress = new Map<string | number, (v: unknown) => void>();
    const cancels: unknown[] = [];
    const client = {
      onRequest: (_type: unknown, handler: (p: { token: string | number }) => void) => { createHandler = handler; return { dispose: () => undefined }; },
      onProgress: (_type: unknown, token: string | number, handler: (v: unknown) => void) => { progress.set(token, handler); return { dispose: () => progress.delete(token) }; },
      sendNotification: (_type: unknown, params: unknown) => { cancels.push(params); return Promise.resolve(); },
    } as unknown as ProgressClient;
    const feature = new NotificationProgressFeature(client, open);
    const caps: { window?: { workDoneProgress?: boolean } } = {};
    feature.fillClientCapabilities(caps);
    assert.equal(caps.window?.workDoneProgress, true);
    feature.initialize();
    createHandler?.({ token: 'tok-1' });
    progress.get('tok-1')?.({ kind: 'begin', title: 'Keel: node-1', cancellable: true });
    await settle();
    opened[0]?.cancel?.();
    assert.deepEqual(cancels, [{ token: 'tok-1' }]);
    progress.get('tok-1')?.({ kind: 'end' });
    await settle();
    assert.equal(opened[0]?.finished, true);
    assert.equal(progress.has('tok-1'), false, 'the listener is released after end');
    // One notification at a time: the session's; its nodes' progress goes to the status bar.
    createHandler?.({ token: 'session' });
    createHandler?.({ token: 'node-1' });
    progress.get('session')?.({ kind: 'begin', title: 'Keel: task', cancellable: true });
    progress.get('node-1')?.({ kind: 'begin', title: 'Keel: node-1', cancellable: true });
    assert.deepEqual(opened.slice(1).map((o) => o.options.place), ['notification', 'window']);
    progress.get('session')?.({ kind: 'end' });
    createHandler?.({ token: 'node-2' });
    progress.get('node-2')?.({ kind: 'begin', title: 'Keel: node-2', cancellable: true });
    assert.equal(opened[3]?.options.place, 'notification', 'the next one gets the notification once it is free');
    feature.clear();
    assert.equal(progress.size, 0);
  });
});
