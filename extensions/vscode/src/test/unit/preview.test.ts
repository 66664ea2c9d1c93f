import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileResolver, readBundle, type DiffFile } from '../../common/protocol';
import { SessionStore } from '../../common/session';
import { BundlePreview, previewAllowed, type PreviewEditor } from '../../features/preview';
import { changesArguments, diffArguments, parseProposedUri } from '../../features/review';
import { FakeServer, memoryLogger, settle } from './fakes';
import { bundle as proposed, summary } from './payloads';

const A = 'file:///work/ws/a.py';
const NEW = 'file:///work/ws/new.py';
const files: DiffFile[] = [
  { uri: A, before: 'old\n', after: 'new\n', unifiedDiff: '', created: false, deleted: false, hunks: [] },
  { uri: NEW, before: '', after: 'x = 1\n', unifiedDiff: '', created: true, deleted: false, hunks: [] },
  { uri: 'file:///work/ws/gone.py', before: 'y\n', after: '', unifiedDiff: '', created: false, deleted: true, hunks: [] },
];

class FakeEditor implements PreviewEditor {
  readonly buffers = new Map<string, string>();
  readonly log: string[] = [];
  disk = new Map<string, string>([[A, 'old\n']]);
  documentText(uri: string): string | undefined {
    return this.buffers.get(uri);
  }
  replaceText(uri: string, text: string, create: boolean): Promise<boolean> {
    this.log.push(`replace ${uri}${create ? ' (create)' : ''}`);
    if (create) {
      this.disk.set(uri, '');
    }
    this.buffers.set(uri, text);
    return Promise.resolve(true);
  }
  revert(uri: string): Promise<void> {
    this.log.push(`revert ${uri}`);
    this.buffers.set(uri, this.disk.get(uri) ?? '');
    return Promise.resolve();
  }
  diskText(uri: string): Promise<string | undefined> {
    return Promise.resolve(this.disk.get(uri));
  }
  deleteIfEmpty(uri: string): Promise<void> {
    if (this.disk.get(uri) === '') {
      this.log.push(`delete ${uri}`);
      this.disk.delete(uri);
    }
    return Promise.resolve();
  }
}

function setup(enabled = true) {
  const server = new FakeServer();
  const session = new SessionStore(server, () => fileResolver('/work/ws'), memoryLogger());
  const editor = new FakeEditor();
  const preview = new BundlePreview(editor, session, () => enabled, memoryLogger());
  return { server, editor, preview };
}

describe('previewing a bundle in the editor', () => {
  it('puts the proposed text into the files\' buffers (creating new files empty), not deleted files', async () => {
    const { editor, preview } = setup();
    editor.buffers.set(A, 'old\n');
    assert.deepEqual(await preview.show('b1', files), [A, NEW]);
    assert.deepEqual(editor.log, [`replace ${A}`, `replace ${NEW} (create)`]);
    assert.equal(editor.buffers.get(A), 'new\n');
    assert.equal(preview.isPreviewed(A), true);
    assert.equal(preview.isPreviewed('file:///work/ws/gone.py'), false);
  });

  it('never overwrites a buffer with the user\'s own unsaved edits', async () => {
    const { editor, preview } = setup();
    editor.buffers.set(A, 'my own edit\n');
    assert.deepEqual(await preview.show('b1', files.slice(0, 1)), []);
    assert.equal(editor.buffers.get(A), 'my own edit\n');
  });

  it('does nothing when switched off', async () => {
    const { editor, preview } = setup(false);
    assert.deepEqual(await preview.show('b1', files), []);
    assert.deepEqual(editor.log, []);
  });

  it('reverts previewed buffers when the bundle is decided, deleting placeholder files never approved', async () => {
    const { editor, preview } = setup();
    await preview.show('b1', files);
    await preview.settle('b1');
    assert.deepEqual(editor.log.slice(2), [`revert ${A}`, `revert ${NEW}`, `delete ${NEW}`]);
    assert.equal(editor.buffers.get(A), 'old\n');
    assert.equal(preview.isPreviewed(A), false);
  });

  it('keeps a buffer the user edited after the preview, and an approved new file', async () => {
    const { editor, preview } = setup();
    await preview.show('b1', files);
    editor.buffers.set(A, 'new\nplus mine\n');
    editor.disk.set(NEW, 'x = 1\n'); // approved: the server wrote it
    await preview.settle('b1');
    assert.deepEqual(editor.log.slice(2), [`revert ${NEW}`]);
    assert.equal(editor.buffers.get(A), 'new\nplus mine\n');
  });

  it('settles only the files given: an approved file\'s buffer shows the disk, clean; the rest stays previewed', async () => {
    const { editor, preview } = setup();
    await preview.show('b1', files);
    editor.disk.set(A, 'new\n'); // per-file approval: the server wrote a.py only
    await preview.settle('b1', ['file:///work/ws/a%2Epy']);
    assert.deepEqual(editor.log.slice(2), [`revert ${A}`]);
    assert.equal(editor.buffers.get(A), 'new\n');
    assert.equal(preview.isPreviewed(A), false);
    assert.equal(preview.isPreviewed(NEW), true);
    assert.equal(editor.buffers.get(NEW), 'x = 1\n');
  });

  it('settles by itself when the bundle leaves the pending list', async () => {
    const { server, editor, preview } = setup();
    server.notify('keel/sessionChanged', summary({ pendingBundles: [proposed({ bundleId: 'b1' })] }));
    await preview.show('b1', files.slice(0, 1));
    server.notify('keel/sessionChanged', summary());
    await settle();
    assert.deepEqual(editor.log, [`replace ${A}`, `revert ${A}`]);
  });

  it('diffs against the file itself when it shows the preview', () => {
    const bundle = readBundle(proposed({ bundleId: 'b1', nodeId: 'n', title: 'T', files: [A, NEW] }));
    const [left, right] = diffArguments(bundle, files[0]!, ['/work/ws'], true);
    assert.equal(parseProposedUri(left)?.side, 'before');
    assert.equal(right, A);
    const [, rows] = changesArguments(bundle, files.slice(0, 2), (uri) => uri === A);
    assert.equal(rows[0]?.[2], A);
    assert.equal(parseProposedUri(rows[1]?.[2] ?? '')?.side, 'after');
  });
});

describe('when the review previews', () => {
  it('only with the setting on and auto save off: auto save would write the unapproved proposal to disk', () => {
    assert.equal(previewAllowed(true, 'off'), true);
    assert.equal(previewAllowed(true, undefined), true);
    for (const mode of ['afterDelay', 'onFocusChange', 'onWindowChange', 'always']) {
      assert.equal(previewAllowed(true, mode), false, mode);
    }
    assert.equal(previewAllowed(false, 'off'), false);
  });
});

describe('buffers after an approval', () => {
  it('reverts an open buffer that holds exactly the file on disk, so it is clean; leaves others', async () => {
    const { editor, preview } = setup();
    const B = 'file:///work/ws/b.py';
    const C = 'file:///work/ws/c.py';
    editor.disk.set(A, 'approved\n');
    editor.buffers.set(A, 'approved\n'); // the server applied the approved text to it
    editor.disk.set(B, 'approved\n');
    editor.buffers.set(B, 'approved\nmy own edit\n');
    await preview.settleApplied([A, B, C]);
    assert.deepEqual(editor.log, [`revert ${A}`]);
    assert.equal(editor.buffers.get(B), 'approved\nmy own edit\n');
  });
});
